//! API keys: who a request is, from the token it carries. Tokens are stored only as their
//! SHA-256; the index of valid keys is swapped whole, so authenticating never takes a lock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::store::{KeyRecord, Scope};

/// A key as the API shows it: everything but the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub environment: Option<String>,
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&KeyRecord> for KeyInfo {
    fn from(record: &KeyRecord) -> KeyInfo {
        KeyInfo {
            id: record.id.clone(),
            name: record.name.clone(),
            scope: record.scope,
            environment: record.environment.clone(),
            prefix: record.prefix.clone(),
            created_at: record.created_at.clone(),
            revoked_at: record.revoked_at.clone(),
        }
    }
}

/// Keys by the raw SHA-256 of the token: authenticating a request hashes the token and
/// looks it up, with no hex encoding on the way.
type KeysByHash = FxHashMap<[u8; 32], Arc<Principal>>;
/// Evaluating keys by their OFREP event-stream channel, in hex.
type KeysByChannel = FxHashMap<String, Arc<Principal>>;

/// Sets channels apart from any other use of a key's hash.
const CHANNEL_LABEL: &[u8] = b"ripcord ofrep event-stream channel v1\0";

/// The OFREP event-stream channel of the key whose token hashes to `hash`. Browsers'
/// `EventSource` cannot send headers, so the stream's URL must identify the key by itself:
/// derived from the hash, the channel names one key without being a token for any API.
fn channel_of(hash: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(CHANNEL_LABEL);
    hasher.update(hash);
    hex::encode(hasher.finalize())
}

/// The valid keys, by token hash and by event-stream channel.
pub struct Keys {
    /// Every stored key as last read, revoked ones too: what a restore of the store writes.
    records: ArcSwap<Vec<KeyRecord>>,
    by_hash: ArcSwap<KeysByHash>,
    by_channel: ArcSwap<KeysByChannel>,
    /// The hash of the bootstrap admin key from the configuration, if one was given.
    bootstrap_admin: Option<[u8; 32]>,
}

impl Keys {
    pub fn new(bootstrap_admin_key: Option<&str>) -> Keys {
        Keys {
            records: ArcSwap::default(),
            by_hash: ArcSwap::default(),
            by_channel: ArcSwap::default(),
            bootstrap_admin: bootstrap_admin_key.map(digest),
        }
    }

    /// The key with this token, if it is valid. Lock-free.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Principal>> {
        self.by_hash.load().get(&digest(token)).cloned()
    }

    /// The OFREP event-stream channel of a key's token (valid or not).
    pub fn event_channel(token: &str) -> String {
        channel_of(&digest(token))
    }

    /// Every stored key as last read, revoked ones too.
    pub fn records(&self) -> Arc<Vec<KeyRecord>> {
        self.records.load_full()
    }

    /// The key whose channel this is, while the key is valid. Lock-free.
    pub fn channel_principal(&self, channel: &str) -> Option<Arc<Principal>> {
        self.by_channel.load().get(channel).cloned()
    }

    /// Makes the keys of `records` that are not revoked, and the bootstrap admin key, the
    /// valid ones.
    pub fn install(&self, records: Vec<KeyRecord>) {
        let mut keys = KeysByHash::default();
        let mut channels = KeysByChannel::default();
        for record in &records {
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(&record.hash, &mut hash).is_err() {
                tracing::warn!(key = %record.id, "a stored key's hash is not 32 hex bytes: the key is ignored");
                continue;
            }
            if record.revoked_at.is_none() {
                let channel = channel_of(&hash);
                // Only keys that evaluate have something to be told about.
                let evaluates =
                    crate::access::allows(record.scope, crate::access::Action::Evaluate)
                        && record.environment.is_some();
                let principal = Arc::new(Principal {
                    name: record.name.clone(),
                    scope: record.scope,
                    environment: record.environment.clone(),
                    event_channel: Some(channel.clone()),
                });
                if evaluates {
                    channels.insert(channel, Arc::clone(&principal));
                }
                keys.insert(hash, principal);
            }
        }
        if let Some(hash) = self.bootstrap_admin {
            keys.insert(
                hash,
                Arc::new(Principal {
                    name: "bootstrap-admin".to_string(),
                    scope: Scope::Admin,
                    environment: None,
                    event_channel: Some(channel_of(&hash)),
                }),
            );
        }
        self.by_hash.store(Arc::new(keys));
        self.by_channel.store(Arc::new(channels));
        self.records.store(Arc::new(records));
    }
}

/// The hash a key is stored as, in hex.
pub fn hash_key(token: &str) -> String {
    hex::encode(digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new key's record, created at `time`, with its token: the token is not stored.
pub fn new_key(
    name: &str,
    scope: Scope,
    environment: Option<String>,
    time: &str,
) -> Result<(KeyRecord, String)> {
    let token = new_token(scope)?;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|error| Error::Internal(format!("no randomness: {error}")))?;
    let record = KeyRecord {
        id: hex::encode(id),
        name: name.to_string(),
        scope,
        environment,
        hash: hash_key(&token),
        prefix: token.chars().take(token.len() - 40).collect(),
        created_at: time.to_string(),
        revoked_at: None,
    };
    Ok((record, token))
}

fn new_token(scope: Scope) -> Result<String> {
    let mut random = [0u8; 24];
    getrandom::fill(&mut random)
        .map_err(|error| Error::Internal(format!("no randomness: {error}")))?;
    Ok(format!(
        "ripcord-{}-{}",
        scope.as_str(),
        hex::encode(random)
    ))
}
