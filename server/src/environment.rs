//! One environment as the server serves it: the compiled snapshot, the document it was
//! compiled from, and the ruleset as SDKs receive it. The service installs environments; the
//! delivery feed and every protocol read them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use ripcord_engine::{Document, RulesetRef, Snapshot};

/// One environment, ready to serve: its compiled snapshot and the document it came from.
#[derive(Debug)]
pub struct Environment {
    pub name: String,
    pub revision: u64,
    pub snapshot: Snapshot,
    pub document: Document,
    pub flag_revisions: BTreeMap<String, u64>,
    /// The ruleset as SDKs receive it, serialized on first request and shared by every
    /// request and stream after it.
    delivered: OnceLock<Delivered>,
}

/// An environment's ruleset as JSON, with an `ETag` that is the hash of that JSON.
#[derive(Debug)]
pub struct Delivered {
    pub json: Bytes,
    pub etag: String,
}

impl Environment {
    pub fn new(
        name: &str,
        revision: u64,
        snapshot: Snapshot,
        document: Document,
        flag_revisions: BTreeMap<String, u64>,
    ) -> Environment {
        Environment {
            name: name.to_string(),
            revision,
            snapshot,
            document,
            flag_revisions,
            delivered: OnceLock::new(),
        }
    }

    pub fn ruleset(&self) -> RulesetRef<'_> {
        RulesetRef {
            environment: &self.name,
            revision: self.revision,
            flag_revisions: &self.flag_revisions,
            document: &self.document,
        }
    }

    /// The ruleset's JSON and `ETag`.
    pub fn delivered(&self) -> &Delivered {
        self.delivered.get_or_init(|| {
            let json = self.ruleset().to_json();
            let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&json));
            Delivered {
                json: Bytes::from(json),
                etag,
            }
        })
    }

    /// The revision at which a flag last changed.
    pub fn flag_revision(&self, key: &str) -> u64 {
        self.flag_revisions
            .get(key)
            .copied()
            .unwrap_or(self.revision)
    }
}
