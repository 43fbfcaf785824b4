//! The background task of local mode: follows the gRPC `Watch` stream, applies what it
//! brings, and reconnects with jittered exponential backoff when the stream ends.

use std::sync::Arc;
use std::time::Duration;

use ripcord_engine::{Ruleset, RulesetDelta};
use ripcord_proto::pb::ripcord::v1::ripcord_client::RipcordClient;
use ripcord_proto::pb::ripcord::v1::watch_response::Event;
use ripcord_proto::pb::ripcord::v1::WatchRequest;
use tonic::metadata::MetadataValue;
use tonic::transport::{ClientTlsConfig, Endpoint};

use crate::backoff::Backoff;
use crate::error::{error_chain, status_error, Error};
use crate::store::Store;

/// Where to connect and how.
pub(crate) struct Connection {
    pub(crate) endpoint: Endpoint,
    pub(crate) authorization: MetadataValue<tonic::metadata::Ascii>,
    pub(crate) instance: MetadataValue<tonic::metadata::Ascii>,
    stream_timeout: Duration,
    max_message_bytes: usize,
}

impl Connection {
    pub(crate) fn new(
        url: &str,
        key: &str,
        instance: &str,
        connect_timeout: Duration,
        stream_timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<Connection, Error> {
        let invalid = |error: tonic::transport::Error| Error::InvalidUrl {
            url: url.to_string(),
            reason: error_chain(&error),
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(invalid)?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        if endpoint.uri().scheme_str() == Some("https") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(invalid)?;
        }
        let authorization = format!("Bearer {key}")
            .parse()
            .map_err(|_| Error::InvalidKey)?;
        crate::instance::check(instance)?;
        let instance = instance
            .parse()
            .map_err(|_| Error::InvalidInstanceId(instance.to_string()))?;
        Ok(Connection {
            endpoint,
            authorization,
            instance,
            stream_timeout,
            max_message_bytes,
        })
    }
}

/// The first retry after a stream that worked comes this soon (before jitter), so that a
/// server restart costs clients well under a second.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// However long the server stays away, clients try at least this often.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Follows the server until the task is aborted.
pub(crate) async fn follow(store: Arc<Store>, connection: Connection) {
    // The server's ruleset, as last applied: the base for deltas. A bootstrap document is
    // never a base, so the first connection asks for the whole ruleset.
    let mut held: Option<Ruleset> = None;
    let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
    loop {
        let (progressed, error) = watch_once(&store, &connection, &mut held).await;
        store.set_connected(false);
        tracing::warn!(%error, "ripcord: the ruleset stream ended; reconnecting");
        store.set_error(error);
        if progressed {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One connection: returns whether anything was applied, and why it ended.
async fn watch_once(
    store: &Store,
    connection: &Connection,
    held: &mut Option<Ruleset>,
) -> (bool, Error) {
    let channel = match connection.endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return (false, Error::Connection(error_chain(&error))),
    };
    // tonic refuses messages over 4 MiB by default, and a whole ruleset of a large
    // environment is bigger: the stream would fail on its first message, every time.
    let mut client =
        RipcordClient::new(channel).max_decoding_message_size(connection.max_message_bytes);
    let known_revision = held.as_ref().map_or(0, |ruleset| ruleset.revision);
    let mut request = tonic::Request::new(WatchRequest { known_revision });
    request
        .metadata_mut()
        .insert("authorization", connection.authorization.clone());
    request
        .metadata_mut()
        .insert(crate::instance::HEADER, connection.instance.clone());
    let mut stream = match client.watch(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (false, status_error(&status)),
    };
    store.set_connected(true);
    let mut progressed = false;
    loop {
        let message = match tokio::time::timeout(connection.stream_timeout, stream.message()).await
        {
            Err(_) => {
                return (
                    progressed,
                    Error::Connection(format!(
                        "nothing from the server for {:?}, not even a heartbeat",
                        connection.stream_timeout
                    )),
                )
            }
            Ok(Err(status)) => return (progressed, status_error(&status)),
            Ok(Ok(None)) => {
                return (
                    progressed,
                    Error::Connection("the server closed the stream".to_string()),
                )
            }
            Ok(Ok(Some(message))) => message,
        };
        match message.event {
            Some(Event::Ruleset(json)) => {
                let ruleset = match Ruleset::from_json(&json) {
                    Ok(ruleset) => ruleset,
                    Err(error) => {
                        return (
                            progressed,
                            Error::InvalidResponse(format!("ruleset: {error}")),
                        )
                    }
                };
                match ruleset.compile() {
                    Ok(snapshot) => {
                        store.install(snapshot, &ruleset.document, true);
                        *held = Some(ruleset);
                        progressed = true;
                    }
                    // Asking again would bring the same ruleset: keep serving the last good
                    // one and retry with backoff, in case the server's changes.
                    Err(error) => return (progressed, Error::Ruleset(error.to_string())),
                }
            }
            Some(Event::Delta(json)) => {
                let delta = match RulesetDelta::from_json(&json) {
                    Ok(delta) => delta,
                    Err(error) => {
                        *held = None;
                        return (
                            progressed,
                            Error::InvalidResponse(format!("delta: {error}")),
                        );
                    }
                };
                match apply(held.as_ref(), &delta) {
                    Ok((ruleset, snapshot)) => {
                        store.install(snapshot, &ruleset.document, true);
                        *held = Some(ruleset);
                        progressed = true;
                    }
                    Err(error) => {
                        // Out of step with the server: forget the base, so that the next
                        // connection asks for the whole ruleset, and make it soon.
                        *held = None;
                        return (true, error);
                    }
                }
            }
            Some(Event::Heartbeat(_)) | None => {}
        }
    }
}

/// The ruleset after `delta`, compiled; `held` is left as it is, so a delta that fails
/// to compile changes nothing.
fn apply(
    held: Option<&Ruleset>,
    delta: &RulesetDelta,
) -> Result<(Ruleset, ripcord_engine::Snapshot), Error> {
    let Some(held) = held else {
        return Err(Error::Ruleset(
            "a delta came before any ruleset".to_string(),
        ));
    };
    let mut next = held.clone();
    next.apply(delta)
        .map_err(|error| Error::Ruleset(error.to_string()))?;
    let snapshot = next
        .compile()
        .map_err(|error| Error::Ruleset(error.to_string()))?;
    Ok((next, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
flags:
  a: { type: boolean, variants: { "on": true, "off": false }, default_variant: "off" }
"#;

    #[test]
    fn deltas_apply_in_order_and_a_gap_is_refused_without_changing_the_base() {
        let base = Ruleset {
            environment: "prod".into(),
            revision: 4,
            flag_revisions: [("a".to_string(), 4)].into(),
            document: ripcord_engine::Document::from_yaml(BASE).unwrap(),
        };
        let mut changed = base.clone();
        changed.document.flags.get_mut("a").unwrap().default_variant = "on".into();
        changed.revision = 5;
        changed.flag_revisions.insert("a".into(), 5);
        let delta = RulesetDelta::between(&base.as_ref(), &changed.as_ref());
        let (next, snapshot) = apply(Some(&base), &delta).unwrap();
        assert_eq!(next, changed);
        assert_eq!(snapshot.flag("a").unwrap().revision(), 5);

        let error = apply(Some(&next), &delta).unwrap_err();
        assert!(matches!(error, Error::Ruleset(_)), "{error}");
        assert!(apply(None, &delta).is_err(), "a delta needs a base");
    }
}
