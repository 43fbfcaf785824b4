//! Local mode: the environment's ruleset held in memory and evaluated by the engine, kept
//! current by the gRPC `Watch` stream.
//!
//! Evaluation reads the ruleset from the `store` without a lock and never waits for the
//! background task: it costs what the engine costs, plus a pointer load. A client with a
//! server to report to also remembers, for flags with a ramp, each unit's cohort
//! and stage (a sharded lock, taken only for those flags), so that `track` can tag the
//! unit's observations with what it was served.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ripcord_engine::bucketing::Unit;
use ripcord_engine::context::AttributeName;
use ripcord_engine::{evaluate_typed, Context, Document, Evaluation, FlagType, Ruleset, Snapshot};
use ripcord_proto::pb::ripcord::v1::ripcord_client::RipcordClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::details::{Details, ErrorCode, FlagMetadata, FlagValue};
use crate::error::Error;
use crate::follow::{self, Connection};
use crate::report::{Reporter, Timing, Transport, MIN_FLUSH_INTERVAL};
use crate::store::{Installed, Store};
use crate::tracking::{Bounds, Tag, Tracked, TrackingStatus};

/// A client that evaluates flags in-process. Cheap to clone: clones share one ruleset and
/// one connection. The connection stops when the last clone is dropped or [`close`]d.
///
/// [`close`]: LocalClient::close
#[derive(Clone)]
pub struct LocalClient {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// With a server: tracked observations go to it.
    reporter: Option<Arc<Reporter>>,
    reporting: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn stop_reporting(&self) {
        if let Ok(mut task) = self.reporting.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
        if let Some(reporter) = &self.reporter {
            reporter.flush_in_background();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
        self.stop_reporting();
        // A subscription outliving the client would otherwise wait for ever.
        self.store.end_subscriptions();
    }
}

/// The unit's identity as text, as bucketing reads it; `None` when the context has no
/// usable value for the attribute.
fn unit_text<'a>(context: &'a Context, stickiness: &AttributeName) -> Option<Cow<'a, str>> {
    Some(match Unit::from_value(context.attribute(stickiness))? {
        Unit::Text(text) => Cow::Borrowed(text),
        Unit::Integer(number) => Cow::Owned(number.to_string()),
        Unit::Unsigned(number) => Cow::Owned(number.to_string()),
    })
}

/// Where the client's ruleset came from, and how its connection is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalStatus {
    /// The environment revision of the ruleset served; `None` before the first.
    pub revision: Option<u64>,
    /// Whether the ruleset served came from the server (not from the bootstrap document).
    pub from_server: bool,
    /// Whether the `Watch` stream is open.
    pub connected: bool,
    /// The last thing that went wrong with the stream or a ruleset; cleared when a ruleset
    /// or change is applied.
    pub last_error: Option<Error>,
    /// What became of the observations tracked (all zero without a server).
    pub tracking: TrackingStatus,
}

/// Builds a [`LocalClient`]: a server to follow, a bootstrap document, or both.
#[derive(Debug, Default)]
pub struct LocalClientBuilder {
    server: Option<(String, String)>,
    bootstrap: Option<Result<Document, Error>>,
    stream_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_message_bytes: Option<usize>,
    instance_id: Option<String>,
    timing: Timing,
    bounds: Bounds,
}

/// With the server's default heartbeat of 15 s, three missed heartbeats.
const DEFAULT_STREAM_TIMEOUT: Duration = Duration::from_secs(45);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Far above any ruleset the server's default limits let an environment reach, while still
/// bounding what a misbehaving server can make the client allocate.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// How long one `Report` call may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

impl LocalClientBuilder {
    /// Follows the environment of `server_key` on the server's gRPC endpoint, such as
    /// `http://ripcord:50051`.
    pub fn server(mut self, grpc_url: impl Into<String>, server_key: impl Into<String>) -> Self {
        self.server = Some((grpc_url.into(), server_key.into()));
        self
    }

    /// Serves this flag document (YAML or JSON) until the server's ruleset arrives, or for
    /// good without a server. Its flags are at revision 0.
    pub fn bootstrap_text(mut self, text: &str) -> Self {
        self.bootstrap =
            Some(Document::from_text(text).map_err(|error| Error::Bootstrap(error.to_string())));
        self
    }

    /// [`bootstrap_text`](Self::bootstrap_text) with the contents of a file.
    pub fn bootstrap_file(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => self.bootstrap_text(&text),
            Err(error) => Self {
                bootstrap: Some(Err(Error::Bootstrap(format!(
                    "reading {}: {error}",
                    path.display()
                )))),
                ..self
            },
        }
    }

    /// How long the stream may stay silent before the client deems it dead and reconnects.
    /// Keep it above the server's heartbeat interval (`RIPCORD_HEARTBEAT`, 15 s by default).
    pub fn stream_timeout(mut self, timeout: Duration) -> Self {
        self.stream_timeout = Some(timeout);
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The largest message the client accepts from the server: the whole ruleset comes in
    /// one. 256 MiB by default.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// The id this client sends as `x-ripcord-instance` with every call, so that a ramp's
    /// status can tell how many running instances have fetched a kill: 1 to 128 printable
    /// ASCII characters, such as a pod name. By default, one random id per process.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// How often tracked observations are aggregated and sent: each unit's events within one
    /// interval become one observation. 10 s by default; at least 100 ms.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.timing.flush_interval = interval.max(MIN_FLUSH_INTERVAL);
        self
    }

    /// The most units one flush window aggregates (100,000 by default); observations of
    /// further units in that window are dropped and counted.
    pub fn max_pending_units(mut self, units: usize) -> Self {
        self.bounds.max_units = units;
        self.bounds.max_tags = self.bounds.max_tags.max(units);
        self
    }

    /// The most batches (of up to 500 observations) waiting while the server cannot be
    /// reached (200 by default); beyond it the oldest are dropped and counted.
    pub fn max_pending_batches(mut self, batches: usize) -> Self {
        self.bounds.max_batches = batches.max(1);
        self
    }

    #[cfg(test)]
    pub(crate) fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Builds the client and, with a server, starts following it in the background. Must
    /// be called inside a Tokio runtime when a server is given.
    pub fn build(self) -> Result<LocalClient, Error> {
        let bootstrap = self.bootstrap.transpose()?;
        if self.server.is_none() && bootstrap.is_none() {
            return Err(Error::NothingToServe);
        }
        let instance = match self.instance_id {
            Some(id) => {
                crate::instance::check(&id)?;
                id
            }
            None => crate::instance::of_process().to_string(),
        };
        let connection = self
            .server
            .map(|(url, key)| {
                Connection::new(
                    &url,
                    &key,
                    &instance,
                    self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
                    self.stream_timeout.unwrap_or(DEFAULT_STREAM_TIMEOUT),
                    self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
                )
            })
            .transpose()?;
        let runtime = match connection {
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?),
            None => None,
        };
        let store = Arc::new(Store::new());
        if let Some(document) = bootstrap {
            let ruleset = Ruleset::from_document("bootstrap", document);
            let snapshot = ruleset
                .compile()
                .map_err(|error| Error::Bootstrap(error.to_string()))?;
            store.install(snapshot, &ruleset.document, false);
        }
        let (task, reporter, reporting) = match (connection, runtime) {
            (Some(connection), Some(runtime)) => {
                // A channel of its own, connected on first use and reconnecting by itself:
                // reports neither wait for nor disturb the ruleset stream.
                let channel = {
                    let _entered = runtime.enter();
                    connection.endpoint.connect_lazy()
                };
                let transport = Transport::Grpc {
                    client: RipcordClient::new(channel),
                    authorization: connection.authorization.clone(),
                    instance: connection.instance.clone(),
                    timeout: REPORT_TIMEOUT,
                };
                let reporter = Arc::new(Reporter::new(transport, self.bounds, self.timing));
                let reporting = reporter.start(&runtime);
                let task = runtime.spawn(follow::follow(Arc::clone(&store), connection));
                (Some(task), Some(reporter), Some(reporting))
            }
            _ => (None, None, None),
        };
        Ok(LocalClient {
            inner: Arc::new(Inner {
                store,
                task: Mutex::new(task),
                reporter,
                reporting: Mutex::new(reporting),
            }),
        })
    }
}

impl LocalClient {
    pub fn builder() -> LocalClientBuilder {
        LocalClientBuilder::default()
    }

    /// A client following the environment of `server_key` on `grpc_url`, with no bootstrap.
    pub fn connect(
        grpc_url: impl Into<String>,
        server_key: impl Into<String>,
    ) -> Result<LocalClient, Error> {
        LocalClient::builder().server(grpc_url, server_key).build()
    }

    /// Whether the client has flags to serve: a ruleset from the server or a bootstrap.
    pub fn is_ready(&self) -> bool {
        self.inner.store.installed().is_some()
    }

    /// Waits until the client [is ready](Self::is_ready), at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let Some(mut generation) = self.inner.store.subscribe() else {
            return if self.is_ready() {
                Ok(())
            } else {
                Err(Error::Closed)
            };
        };
        let wait = async {
            loop {
                if self.is_ready() {
                    return Ok(());
                }
                if generation.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(Error::Timeout(timeout)))
    }

    /// The revision served, the connection, the last error, what became of tracking.
    pub fn status(&self) -> LocalStatus {
        let progress = self.inner.store.progress();
        LocalStatus {
            revision: progress.revision,
            from_server: progress.from_server,
            connected: progress.connected,
            last_error: progress.last_error,
            tracking: self
                .inner
                .reporter
                .as_ref()
                .map(|reporter| reporter.status())
                .unwrap_or_default(),
        }
    }

    /// Stops following the server and sending observations; what was tracked and not yet sent
    /// goes in one last flush in the background. Evaluation goes on answering from the
    /// last ruleset; subscriptions end. Observations tracked after this wait for an
    /// explicit [`flush`](Self::flush).
    pub fn close(&self) {
        if let Ok(mut task) = self.inner.task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
        self.inner.stop_reporting();
        self.inner.store.end_subscriptions();
        self.inner.store.set_connected(false);
    }

    /// The current snapshot, for callers that evaluate many flags against one revision.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner.store.snapshot()
    }

    /// Reports one event of a ramp's guard metric for the unit of `context`: the value of
    /// the flag's stickiness attribute, tagged with the cohort and stage the unit's last
    /// evaluation of the flag (by this client) put it in.
    ///
    /// The metric's kind comes from the flag's ramp guards: a `rate` metric takes 0 (did not
    /// happen) or 1 (happened), a `value` metric a finite number >= 0. Each unit's events of
    /// one flush window are sent as one observation, the mean of a value metric or, for a
    /// rate metric, 1 if it happened at all. A unit in no cohort is not reported (counted as
    /// `untagged`); a metric that is no guard of the flag's ramp, or a value that does not
    /// fit, is dropped (counted, with the reason). Never blocks on the network.
    pub fn track(&self, flag_key: &str, context: &Context, metric: &str, value: f64) -> Tracked {
        let Some(reporter) = &self.inner.reporter else {
            return Tracked::Dropped("this client has no server to report to".to_string());
        };
        let installed = self.inner.store.installed();
        let ramp = installed
            .as_deref()
            .and_then(|installed| installed.ramps.get(flag_key));
        let Some(ramp) = ramp else {
            // No unit is in a cohort of a flag without a ramp.
            reporter.recorder.untagged();
            return Tracked::Untagged;
        };
        let Some(kind) = ramp
            .guards
            .iter()
            .find(|(guard, _)| **guard == *metric)
            .map(|(_, kind)| *kind)
        else {
            let reason = format!("`{metric}` is not a guard metric of flag `{flag_key}`'s ramp");
            reporter.recorder.dropped(1, &reason);
            return Tracked::Dropped(reason);
        };
        let unit = unit_text(context, &ramp.stickiness);
        let tag = unit.as_deref().and_then(|unit| {
            let tags = &reporter.recorder.tags;
            tags.recall(tags.key(flag_key, unit))
        });
        reporter.record(flag_key, unit.as_deref(), tag, metric, kind, value)
    }

    /// Aggregates what was tracked so far and sends it, with every batch still waiting,
    /// now. An error says the server could not be reached or refused (also kept in
    /// `status().tracking.last_error`); batches that could not be sent are retried in the
    /// background. Without a server there is nothing to flush.
    pub async fn flush(&self) -> Result<(), Error> {
        match &self.inner.reporter {
            Some(reporter) => reporter.flush().await,
            None => Ok(()),
        }
    }

    /// Evaluates, and remembers the unit's cohort and stage for `track`.
    fn evaluate<'a>(
        &self,
        installed: &'a Installed,
        flag_key: &str,
        context: &Context,
        flag_type: FlagType,
    ) -> Evaluation<'a> {
        let evaluation = evaluate_typed(&installed.snapshot, flag_key, context, flag_type);
        if let Some(reporter) = &self.inner.reporter {
            if !installed.ramps.is_empty() {
                if let Some(ramp) = installed.ramps.get(flag_key) {
                    if let Some(unit) = unit_text(context, &ramp.stickiness) {
                        let tags = &reporter.recorder.tags;
                        let tag = Tag::of(evaluation.metadata.cohort, evaluation.metadata.stage);
                        tags.remember(tags.key(flag_key, &unit), tag);
                    }
                }
            }
        }
        evaluation
    }

    pub fn get_bool(&self, flag_key: &str, context: &Context, default: bool) -> bool {
        self.value(flag_key, context, default)
    }

    pub fn get_string(&self, flag_key: &str, context: &Context, default: &str) -> String {
        let installed = self.inner.store.installed();
        installed
            .as_deref()
            .and_then(|installed| {
                self.evaluate(installed, flag_key, context, String::FLAG_TYPE)
                    .value
            })
            .and_then(|value| value.as_str())
            .unwrap_or(default)
            .to_string()
    }

    pub fn get_int(&self, flag_key: &str, context: &Context, default: i64) -> i64 {
        self.value(flag_key, context, default)
    }

    pub fn get_float(&self, flag_key: &str, context: &Context, default: f64) -> f64 {
        self.value(flag_key, context, default)
    }

    /// An object flag's value.
    pub fn get_json(
        &self,
        flag_key: &str,
        context: &Context,
        default: serde_json::Value,
    ) -> serde_json::Value {
        self.value(flag_key, context, default)
    }

    pub fn get_bool_details(
        &self,
        flag_key: &str,
        context: &Context,
        default: bool,
    ) -> Details<bool> {
        self.details(flag_key, context, default)
    }

    pub fn get_string_details(
        &self,
        flag_key: &str,
        context: &Context,
        default: &str,
    ) -> Details<String> {
        self.details(flag_key, context, default.to_string())
    }

    pub fn get_int_details(&self, flag_key: &str, context: &Context, default: i64) -> Details<i64> {
        self.details(flag_key, context, default)
    }

    pub fn get_float_details(
        &self,
        flag_key: &str,
        context: &Context,
        default: f64,
    ) -> Details<f64> {
        self.details(flag_key, context, default)
    }

    pub fn get_json_details(
        &self,
        flag_key: &str,
        context: &Context,
        default: serde_json::Value,
    ) -> Details<serde_json::Value> {
        self.details(flag_key, context, default)
    }

    /// Any typed value; the getters above are this with their type.
    pub fn value<T: FlagValue>(&self, flag_key: &str, context: &Context, default: T) -> T {
        let installed = self.inner.store.installed();
        installed
            .as_deref()
            .and_then(|installed| {
                self.evaluate(installed, flag_key, context, T::FLAG_TYPE)
                    .value
            })
            .and_then(T::from_json)
            .unwrap_or(default)
    }

    /// Any typed value with why it was served.
    pub fn details<T: FlagValue>(
        &self,
        flag_key: &str,
        context: &Context,
        default: T,
    ) -> Details<T> {
        let installed = self.inner.store.installed();
        let Some(installed) = installed.as_deref() else {
            return Details::error(
                default,
                ErrorCode::ProviderNotReady,
                "no ruleset yet: the server has not answered and there is no bootstrap",
            );
        };
        let evaluation = self.evaluate(installed, flag_key, context, T::FLAG_TYPE);
        let metadata = FlagMetadata {
            revision: evaluation.metadata.revision,
            cohort: evaluation
                .metadata
                .cohort
                .map(|cohort| cohort.as_str().to_string()),
            stage: evaluation.metadata.stage,
            rule: evaluation.metadata.rule.map(str::to_string),
            unit_missing: evaluation.metadata.unit_missing.map(str::to_string),
            cache_token: evaluation.metadata.cache_token.map(str::to_string),
        };
        if let Some(code) = evaluation.error {
            let message = match code {
                ripcord_engine::ErrorCode::FlagNotFound => {
                    format!("flag `{flag_key}` was not found")
                }
                ripcord_engine::ErrorCode::TypeMismatch => format!(
                    "flag `{flag_key}` is of type {}, not {}",
                    evaluation
                        .flag_type
                        .map_or("unknown", |found| found.as_str()),
                    T::FLAG_TYPE.as_str()
                ),
                other => other.as_str().to_string(),
            };
            return Details {
                metadata,
                ..Details::error(default, code.into(), message)
            };
        }
        match evaluation.value.and_then(T::from_json) {
            Some(value) => Details {
                value,
                variant: evaluation.variant.map(str::to_string),
                reason: evaluation.reason.into(),
                error_code: None,
                error_message: None,
                metadata,
            },
            // The engine checked the type; a value that still does not convert (an
            // integer beyond i64) is a mismatch all the same.
            None => Details {
                metadata,
                ..Details::error(
                    default,
                    ErrorCode::TypeMismatch,
                    format!(
                        "flag `{flag_key}`'s value is not a {}",
                        T::FLAG_TYPE.as_str()
                    ),
                )
            },
        }
    }

    /// Every change to the ruleset from now on.
    pub fn subscribe(&self) -> Changes {
        Changes {
            store: Arc::clone(&self.inner.store),
            generation: self.inner.store.subscribe(),
            last: self.inner.store.snapshot(),
        }
    }

    /// Changes to one flag from now on: its revision changed, it appeared, or it was removed.
    pub fn subscribe_flag(&self, flag_key: impl Into<String>) -> FlagChanges {
        let key = flag_key.into();
        let last = self.inner.store.flag_revision(&key);
        FlagChanges {
            store: Arc::clone(&self.inner.store),
            generation: self.inner.store.subscribe(),
            key,
            last,
        }
    }
}

/// One flag's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub key: String,
    /// The flag's new revision; `None` when it was removed.
    pub revision: Option<u64>,
}

/// A new ruleset: its revision and the flags whose revision changed, appeared or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: u64,
    pub flags: Vec<FlagChange>,
}

/// Every change to the ruleset; see [`LocalClient::subscribe`].
pub struct Changes {
    store: Arc<Store>,
    generation: Option<watch::Receiver<u64>>,
    last: Option<Arc<Snapshot>>,
}

impl Changes {
    /// The next change, or `None` once the client is closed or dropped. Changes that came
    /// while nobody called this are folded into one.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            self.generation.as_mut()?.changed().await.ok()?;
            let current = self.store.snapshot()?;
            let change = diff(self.last.as_deref(), &current);
            let revision_moved = self
                .last
                .as_ref()
                .is_none_or(|last| last.revision() != current.revision());
            self.last = Some(current);
            if revision_moved || !change.flags.is_empty() {
                return Some(change);
            }
        }
    }
}

/// One flag's changes; see [`LocalClient::subscribe_flag`].
pub struct FlagChanges {
    store: Arc<Store>,
    generation: Option<watch::Receiver<u64>>,
    key: String,
    last: Option<u64>,
}

impl FlagChanges {
    /// The next change to the flag, or `None` once the client is closed or dropped.
    pub async fn next(&mut self) -> Option<FlagChange> {
        loop {
            self.generation.as_mut()?.changed().await.ok()?;
            let current = self.store.flag_revision(&self.key);
            if current != self.last {
                self.last = current;
                return Some(FlagChange {
                    key: self.key.clone(),
                    revision: current,
                });
            }
        }
    }
}

fn diff(old: Option<&Snapshot>, new: &Snapshot) -> Change {
    let mut flags: Vec<FlagChange> = new
        .flags()
        .filter(|flag| {
            old.and_then(|old| old.flag(flag.key()))
                .is_none_or(|before| before.revision() != flag.revision())
        })
        .map(|flag| FlagChange {
            key: flag.key().to_string(),
            revision: Some(flag.revision()),
        })
        .collect();
    if let Some(old) = old {
        flags.extend(
            old.flags()
                .filter(|flag| new.flag(flag.key()).is_none())
                .map(|flag| FlagChange {
                    key: flag.key().to_string(),
                    revision: None,
                }),
        );
    }
    flags.sort_by(|a, b| a.key.cmp(&b.key));
    Change {
        revision: new.revision(),
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::details::Reason;
    use serde_json::json;

    const FLAGS: &str = r##"
flags:
  dark-mode: { type: boolean, variants: { "on": true, "off": false }, default_variant: "off",
    rules: [{ name: staff, when: [{ attribute: email, op: ends_with, values: ["@example.com"] }], serve: { variant: "on" } }] }
  limit: { type: integer, variants: { low: 10, high: 100 }, default_variant: low }
  ratio: { type: float, variants: { half: 0.5 }, default_variant: half }
  banner: { type: string, variants: { spring: "spring" }, default_variant: spring }
  theme: { type: object, variants: { blue: { color: "#00f" } }, default_variant: blue }
"##;

    fn staff() -> Context {
        [("email", json!("ana@example.com"))].into_iter().collect()
    }

    #[test]
    fn a_bootstrap_client_is_ready_at_once_and_answers_every_type() {
        let client = LocalClient::builder()
            .bootstrap_text(FLAGS)
            .build()
            .unwrap();
        assert!(client.is_ready());
        let anyone = Context::new();
        assert!(client.get_bool("dark-mode", &staff(), false));
        assert!(!client.get_bool("dark-mode", &anyone, true));
        assert_eq!(client.get_int("limit", &anyone, 0), 10);
        assert_eq!(client.get_float("ratio", &anyone, 0.0), 0.5);
        assert_eq!(
            client.get_float("limit", &anyone, 0.0),
            10.0,
            "an integer is a float"
        );
        assert_eq!(client.get_string("banner", &anyone, "none"), "spring");
        assert_eq!(
            client.get_json("theme", &anyone, json!({})),
            json!({"color": "#00f"})
        );

        let details = client.get_bool_details("dark-mode", &staff(), false);
        assert_eq!(details.reason, Reason::TargetingMatch);
        assert_eq!(details.variant.as_deref(), Some("on"));
        assert_eq!(details.metadata.rule.as_deref(), Some("staff"));
        assert_eq!(details.metadata.revision, 0);
    }

    #[test]
    fn errors_answer_the_default_with_a_code() {
        let client = LocalClient::builder()
            .bootstrap_text(FLAGS)
            .build()
            .unwrap();
        let anyone = Context::new();
        let missing = client.get_bool_details("nope", &anyone, true);
        assert!(missing.value);
        assert_eq!(missing.reason, Reason::Error);
        assert_eq!(missing.error_code, Some(ErrorCode::FlagNotFound));
        let mismatch = client.get_int_details("banner", &anyone, 7);
        assert_eq!(mismatch.value, 7);
        assert_eq!(mismatch.error_code, Some(ErrorCode::TypeMismatch));
        assert_eq!(client.get_string("limit", &anyone, "fallback"), "fallback");
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(matches!(
            LocalClient::builder().build(),
            Err(Error::NothingToServe)
        ));
        assert!(matches!(
            LocalClient::builder().bootstrap_text("flags: [").build(),
            Err(Error::Bootstrap(_))
        ));
        assert!(matches!(
            LocalClient::builder()
                .bootstrap_file("/no/such/ripcord/file.yaml")
                .build(),
            Err(Error::Bootstrap(_))
        ));
        assert!(
            matches!(
                LocalClient::connect("http://127.0.0.1:1", "key"),
                Err(Error::NoRuntime)
            ),
            "outside a runtime"
        );
    }

    #[tokio::test]
    async fn subscriptions_see_installs_and_end_on_close() {
        let client = LocalClient::builder()
            .bootstrap_text(FLAGS)
            .build()
            .unwrap();
        let mut limit = client.subscribe_flag("limit");
        let mut ratio = client.subscribe_flag("ratio");
        let mut everything = client.subscribe();
        let mut ruleset = Ruleset::from_document("prod", Document::from_text(FLAGS).unwrap());
        ruleset.revision = 3;
        ruleset.flag_revisions.insert("limit".into(), 3);
        ruleset.document.flags.remove("ratio");
        ruleset.flag_revisions.remove("ratio");
        client
            .inner
            .store
            .install(ruleset.compile().unwrap(), &ruleset.document, true);

        assert_eq!(
            limit.next().await,
            Some(FlagChange {
                key: "limit".into(),
                revision: Some(3)
            })
        );
        assert_eq!(
            ratio.next().await,
            Some(FlagChange {
                key: "ratio".into(),
                revision: None
            })
        );
        let change = everything.next().await.unwrap();
        assert_eq!(change.revision, 3);
        assert_eq!(
            change.flags,
            [
                FlagChange {
                    key: "limit".into(),
                    revision: Some(3)
                },
                FlagChange {
                    key: "ratio".into(),
                    revision: None
                }
            ]
        );
        assert!(client.status().from_server);
        client.close();
        assert_eq!(limit.next().await, None);
        assert_eq!(everything.next().await, None);
        assert!(client.is_ready(), "a closed client still answers");
    }

    #[tokio::test]
    async fn subscriptions_end_when_the_last_clone_of_the_client_is_dropped() {
        let client = LocalClient::builder()
            .bootstrap_text(FLAGS)
            .build()
            .unwrap();
        let clone = client.clone();
        let mut limit = client.subscribe_flag("limit");
        let mut everything = client.subscribe();
        drop(client);
        let patience = Duration::from_secs(5);
        drop(clone);
        assert_eq!(tokio::time::timeout(patience, limit.next()).await, Ok(None));
        assert_eq!(
            tokio::time::timeout(patience, everything.next()).await,
            Ok(None)
        );
    }
}
