//! Remote mode: the server evaluates every flag for the app's context in one OFREP bulk
//! request; the answer is kept in memory and in a cache file, so that the next start serves
//! at once, with or without a network, and then revalidates with the answer's `ETag`.
//!
//! The app is one unit: what it tracks is tagged with the cohort and stage of the
//! evaluation it last read of the flag, and sent to `POST /api/v1/metrics`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use ripcord_engine::{Context, Stage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::details::{Details, ErrorCode, FlagMetadata, FlagValue, Reason};
use crate::error::{error_chain, refusal_message, Error};
use crate::report::{Reporter, Timing, Transport, MIN_FLUSH_INTERVAL};
use crate::tracking::{Bounds, MetricKind, Tag, Tracked, TrackingStatus};

/// A client that reads flags the server evaluated for one context. Cheap to clone; the
/// refresh task stops when the last clone is dropped or [`close`](Self::close)d.
#[derive(Clone)]
pub struct RemoteClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    reporting: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn stop(&self) {
        for task in [&self.task, &self.reporting] {
            if let Ok(mut task) = task.lock() {
                if let Some(task) = task.take() {
                    task.abort();
                }
            }
        }
        self.shared.reporter.flush_in_background();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    http: reqwest::Client,
    endpoint: String,
    authorization: String,
    /// Sent as `X-Ripcord-Instance`, and kept in the cache file.
    instance: String,
    reporter: Arc<Reporter>,
    /// Which key the cache file answers for (a key belongs to one environment), so that a
    /// file written for another environment is not served as this one's.
    source: String,
    context: Value,
    cache_file: Option<PathBuf>,
    evaluations: ArcSwapOption<Evaluations>,
    status: Mutex<RemoteStatus>,
    /// One refresh at a time: two would race to write the cache file.
    refreshing: tokio::sync::Mutex<()>,
    generation: watch::Sender<u64>,
}

/// Where the evaluations served came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cache file, not yet confirmed by the server.
    Cache,
    /// The server: fetched, or confirmed with a `304`.
    Server,
}

/// What a successful [`RemoteClient::refresh`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// New evaluations, now served and cached.
    Updated,
    /// The server answered `304 Not Modified`: the evaluations held are current.
    NotModified,
}

/// The state of a remote client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteStatus {
    /// Where the evaluations served came from; `None` before the first.
    pub source: Option<Source>,
    /// The `ETag` of the evaluations served.
    pub etag: Option<String>,
    /// The last refresh's failure (or the cache file's), cleared by a refresh that works.
    pub last_error: Option<Error>,
    /// What became of the observations tracked.
    pub tracking: TrackingStatus,
}

/// Builds a [`RemoteClient`].
#[derive(Debug)]
pub struct RemoteClientBuilder {
    base_url: String,
    client_key: String,
    context: Context,
    cache_file: Option<PathBuf>,
    refresh_interval: Option<Duration>,
    request_timeout: Duration,
    instance_id: Option<String>,
    timing: Timing,
    bounds: Bounds,
}

impl RemoteClientBuilder {
    /// The context the server evaluates for: the user, the device, the app version.
    pub fn context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// Keeps the last evaluations in this file, written atomically, so that the next start
    /// serves at once. A file cached for another context is not served.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// Refreshes in the background this often (after the start-up refresh); at least once
    /// a second, whatever is asked, so that a mistaken zero does not flood the server.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval.max(MIN_REFRESH_INTERVAL));
        self
    }

    /// How long one request may take, connection included. 10 s by default.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The id this app installation sends as `X-Ripcord-Instance`, so that a ramp's status
    /// can tell how many running instances have fetched a kill: 1 to 128 printable ASCII
    /// characters. By default one is generated and kept in the cache file, so that the
    /// installation keeps it across starts (without a cache file, one per start).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// How often tracked observations are aggregated and sent: the app's events of one interval
    /// become one observation per flag and metric. 10 s by default; at least 100 ms.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.timing.flush_interval = interval.max(MIN_FLUSH_INTERVAL);
        self
    }

    /// The most aggregates one flush window holds (100,000 by default); beyond it,
    /// observations are dropped and counted.
    pub fn max_pending_units(mut self, units: usize) -> Self {
        self.bounds.max_units = units;
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

    /// Serves the cache file (if any, and for this context) at once, and starts the first
    /// refresh in the background. Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<RemoteClient, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let base = self.base_url.trim_end_matches('/');
        let endpoint = format!("{base}/ofrep/v1/evaluate/flags");
        let observations_url = format!("{base}/api/v1/metrics");
        reqwest::Url::parse(&endpoint).map_err(|error| Error::InvalidUrl {
            url: self.base_url.clone(),
            reason: error.to_string(),
        })?;
        let authorization = format!("Bearer {}", self.client_key);
        reqwest::header::HeaderValue::from_str(&authorization).map_err(|_| Error::InvalidKey)?;
        if let Some(id) = &self.instance_id {
            crate::instance::check(id)?;
        }
        let http = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .build()
            .map_err(|error| Error::Connection(error.to_string()))?;
        let context = serde_json::to_value(&self.context).unwrap_or(Value::Null);
        let source = cache_source(&self.client_key);
        let cached = self.cache_file.as_deref().map(read_cache);
        // The installation's id, whatever key or context the file was written for: the
        // installation is the same when its user signs in.
        let instance = self
            .instance_id
            .or_else(|| {
                let cached = cached.as_ref()?.as_ref().ok()?.as_ref()?;
                let id = cached.instance.clone()?;
                crate::instance::check(&id).is_ok().then_some(id)
            })
            .unwrap_or_else(crate::instance::generate);
        let transport = Transport::Http {
            http: http.clone(),
            url: observations_url,
            authorization: authorization.clone(),
            instance: instance.clone(),
        };
        let reporter = Arc::new(Reporter::new(transport, self.bounds, self.timing));
        let (generation, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            http,
            endpoint,
            authorization,
            instance,
            reporter,
            source,
            context,
            cache_file: self.cache_file,
            evaluations: ArcSwapOption::empty(),
            status: Mutex::new(RemoteStatus::default()),
            refreshing: tokio::sync::Mutex::new(()),
            generation,
        });
        if let Some(cached) = cached {
            shared.load_cache(cached);
        }
        let reporting = shared.reporter.start(&runtime);
        let background = Arc::clone(&shared);
        let interval = self.refresh_interval;
        let task = runtime.spawn(async move {
            // The error is kept in the status for the app to see.
            let _ = background.refresh().await;
            let Some(interval) = interval else { return };
            loop {
                tokio::time::sleep(interval).await;
                let _ = background.refresh().await;
            }
        });
        Ok(RemoteClient {
            inner: Arc::new(Inner {
                shared,
                task: Mutex::new(Some(task)),
                reporting: Mutex::new(Some(reporting)),
            }),
        })
    }
}

impl RemoteClient {
    /// A client of the server at `base_url` (such as `https://flags.example.com`) with a
    /// client key.
    pub fn builder(
        base_url: impl Into<String>,
        client_key: impl Into<String>,
    ) -> RemoteClientBuilder {
        RemoteClientBuilder {
            base_url: base_url.into(),
            client_key: client_key.into(),
            context: Context::new(),
            cache_file: None,
            refresh_interval: None,
            request_timeout: Duration::from_secs(10),
            instance_id: None,
            timing: Timing::default(),
            bounds: Bounds::default(),
        }
    }

    /// Whether the client has evaluations to serve, from the cache or the server.
    pub fn is_ready(&self) -> bool {
        self.inner.shared.evaluations.load().is_some()
    }

    /// Waits until the client [is ready](Self::is_ready), at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut generation = self.inner.shared.generation.subscribe();
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

    /// Asks the server now, revalidating what is held. On failure the evaluations held are
    /// still served, and the error is also kept in [`status`](Self::status).
    pub async fn refresh(&self) -> Result<Refreshed, Error> {
        self.inner.shared.refresh().await
    }

    pub fn status(&self) -> RemoteStatus {
        let mut status = self
            .inner
            .shared
            .status
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default();
        status.tracking = self.inner.shared.reporter.status();
        status
    }

    /// The id this installation sends as `X-Ripcord-Instance`.
    pub fn instance_id(&self) -> &str {
        &self.inner.shared.instance
    }

    pub fn last_error(&self) -> Option<Error> {
        self.status().last_error
    }

    /// Stops the background refreshes and sends of tracked observations; what was tracked and not yet sent
    /// goes in one last flush in the background. Evaluations held are still served.
    /// Observations tracked after this wait for an explicit [`flush`](Self::flush).
    pub fn close(&self) {
        self.inner.stop();
    }

    /// Reports whether an event of a `rate` guard metric happened (a crash, an error, a
    /// conversion) to the flag's ramp, tagged with the cohort and stage of the app's last
    /// read of the flag. Report `false` too: a unit whose window saw only `false` is a unit
    /// without the event, which the guard needs as much as the others. The events of one
    /// flush window become one observation: 1 if any happened, else 0. Not reported when
    /// the last read put the app in no cohort (counted as `untagged`). Never blocks on the
    /// network.
    pub fn track_rate(&self, flag_key: &str, metric: &str, happened: bool) -> Tracked {
        self.track(
            flag_key,
            metric,
            MetricKind::Rate,
            f64::from(u8::from(happened)),
        )
    }

    /// Reports a measurement of a `value` guard metric (a latency, a size): a finite,
    /// non-negative number. The measurements of one flush window become one observation, their mean.
    /// Otherwise as [`track_rate`](Self::track_rate).
    pub fn track_value(&self, flag_key: &str, metric: &str, value: f64) -> Tracked {
        self.track(flag_key, metric, MetricKind::Value, value)
    }

    fn track(&self, flag_key: &str, metric: &str, kind: MetricKind, value: f64) -> Tracked {
        let reporter = &self.inner.shared.reporter;
        let tags = &reporter.recorder.tags;
        let tag = tags.recall(tags.key(flag_key, ""));
        reporter.record(flag_key, None, tag, metric, kind, value)
    }

    /// Aggregates what was tracked so far and sends it, with every batch still waiting,
    /// now. An error says the server could not be reached or refused (also kept in
    /// `status().tracking.last_error`); batches that could not be sent are retried in the
    /// background.
    pub async fn flush(&self) -> Result<(), Error> {
        self.inner.shared.reporter.flush().await
    }

    /// The keys of the flags held.
    pub fn flag_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .inner
            .shared
            .evaluations
            .load()
            .as_deref()
            .map(|evaluations| evaluations.flags.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    pub fn get_bool(&self, flag_key: &str, default: bool) -> bool {
        self.details(flag_key, default).value
    }

    pub fn get_string(&self, flag_key: &str, default: &str) -> String {
        self.details(flag_key, default.to_string()).value
    }

    pub fn get_int(&self, flag_key: &str, default: i64) -> i64 {
        self.details(flag_key, default).value
    }

    pub fn get_float(&self, flag_key: &str, default: f64) -> f64 {
        self.details(flag_key, default).value
    }

    pub fn get_json(&self, flag_key: &str, default: Value) -> Value {
        self.details(flag_key, default).value
    }

    pub fn get_bool_details(&self, flag_key: &str, default: bool) -> Details<bool> {
        self.details(flag_key, default)
    }

    pub fn get_string_details(&self, flag_key: &str, default: &str) -> Details<String> {
        self.details(flag_key, default.to_string())
    }

    pub fn get_int_details(&self, flag_key: &str, default: i64) -> Details<i64> {
        self.details(flag_key, default)
    }

    pub fn get_float_details(&self, flag_key: &str, default: f64) -> Details<f64> {
        self.details(flag_key, default)
    }

    pub fn get_json_details(&self, flag_key: &str, default: Value) -> Details<Value> {
        self.details(flag_key, default)
    }

    /// Any typed value with why it was served.
    pub fn details<T: FlagValue>(&self, flag_key: &str, default: T) -> Details<T> {
        let evaluations = self.inner.shared.evaluations.load();
        let Some(evaluations) = evaluations.as_deref() else {
            return Details::error(
                default,
                ErrorCode::ProviderNotReady,
                "no evaluations yet: no cache file, and the server has not answered",
            );
        };
        let item = evaluations.flags.get(flag_key);
        // What the app read is what its observations are tagged with.
        let tag = match item {
            Some(Item::Success { tag, .. }) => *tag,
            _ => None,
        };
        let tags = &self.inner.shared.reporter.recorder.tags;
        tags.remember(tags.key(flag_key, ""), tag);
        match item {
            None => Details::error(
                default,
                ErrorCode::FlagNotFound,
                format!("flag `{flag_key}` was not found"),
            ),
            Some(Item::Failure { code, message }) => {
                Details::error(default, *code, message.clone())
            }
            Some(Item::Success {
                value,
                variant,
                reason,
                metadata,
                ..
            }) => match T::from_json(value) {
                Some(value) => Details {
                    value,
                    variant: variant.clone(),
                    reason: reason.clone(),
                    error_code: None,
                    error_message: None,
                    metadata: metadata.clone(),
                },
                None => Details {
                    metadata: metadata.clone(),
                    ..Details::error(
                        default,
                        ErrorCode::TypeMismatch,
                        format!(
                            "flag `{flag_key}`'s value is not a {}",
                            T::FLAG_TYPE.as_str()
                        ),
                    )
                },
            },
        }
    }
}

/// The evaluations of one answer, by flag key.
#[derive(Debug)]
struct Evaluations {
    flags: HashMap<String, Item>,
}

#[derive(Debug)]
enum Item {
    Success {
        value: Value,
        variant: Option<String>,
        reason: Reason,
        metadata: FlagMetadata,
        tag: Option<Tag>,
    },
    /// OFREP's per-flag error.
    Failure { code: ErrorCode, message: String },
}

/// An OFREP bulk answer, read leniently: fields a newer server adds are ignored.
#[derive(Deserialize)]
struct Bulk {
    flags: Vec<BulkItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkItem {
    key: String,
    value: Option<Value>,
    reason: Option<String>,
    variant: Option<String>,
    error_code: Option<String>,
    error_details: Option<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, Value>,
}

impl Evaluations {
    fn parse(body: &Value) -> Result<Evaluations, Error> {
        let bulk = Bulk::deserialize(body).map_err(|error| {
            Error::InvalidResponse(format!("not an OFREP bulk evaluation: {error}"))
        })?;
        let flags = bulk
            .flags
            .into_iter()
            .map(|item| {
                let parsed = match (item.error_code, item.value) {
                    (Some(code), _) => Item::Failure {
                        code: ErrorCode::parse(&code),
                        message: item.error_details.unwrap_or(code),
                    },
                    (None, None) => Item::Failure {
                        code: ErrorCode::ParseError,
                        message: "the server sent no value".to_string(),
                    },
                    (None, Some(value)) => {
                        let metadata = metadata(&item.metadata);
                        let cohort = match metadata.cohort.as_deref() {
                            Some("treatment") => Some(ripcord_engine::Cohort::Treatment),
                            Some("control") => Some(ripcord_engine::Cohort::Control),
                            _ => None,
                        };
                        Item::Success {
                            value,
                            variant: item.variant.filter(|variant| !variant.is_empty()),
                            reason: item
                                .reason
                                .as_deref()
                                .map_or(Reason::Other("UNKNOWN".to_string()), Reason::parse),
                            tag: Tag::of(cohort, metadata.stage),
                            metadata,
                        }
                    }
                };
                (item.key, parsed)
            })
            .collect();
        Ok(Evaluations { flags })
    }
}

fn metadata(fields: &serde_json::Map<String, Value>) -> FlagMetadata {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    FlagMetadata {
        revision: fields.get("revision").and_then(Value::as_u64).unwrap_or(0),
        cohort: text("cohort"),
        stage: fields
            .get("stage")
            .and_then(|stage| Stage::deserialize(stage).ok()),
        rule: text("rule"),
        unit_missing: text("unitMissing"),
        cache_token: text("cacheToken"),
    }
}

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The cache file: the last answer with its `ETag`, for the key and context it answers.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    source: String,
    context: Value,
    etag: Option<String>,
    body: Value,
    /// The installation's instance id; absent in files of older SDKs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
}

const CACHE_FORMAT: u32 = 2;

/// A digest of the key, not the key itself: the cache file may sit where the key should
/// not. The server's address is left out on purpose: it may change (a new host name, a
/// regional endpoint) while the key, and so the environment, stays.
fn cache_source(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"ripcord sdk cache\0");
    hasher.update(key.as_bytes());
    hex::encode(hasher.finalize())
}

impl Shared {
    fn install(&self, evaluations: Evaluations, source: Source, etag: Option<String>) {
        self.evaluations.store(Some(Arc::new(evaluations)));
        if let Ok(mut status) = self.status.lock() {
            status.source = Some(source);
            status.etag = etag;
        }
        self.generation.send_modify(|generation| *generation += 1);
    }

    fn set_error(&self, error: &Error) {
        if let Ok(mut status) = self.status.lock() {
            status.last_error = Some(error.clone());
        }
    }

    fn load_cache(&self, cached: Result<Option<CacheFile>, Error>) {
        let cached = match cached {
            Ok(Some(cached)) => cached,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "ripcord: ignoring the cache file");
                self.set_error(&error);
                return;
            }
        };
        if cached.source != self.source || cached.context != self.context {
            return;
        }
        match Evaluations::parse(&cached.body) {
            Ok(evaluations) => self.install(evaluations, Source::Cache, cached.etag),
            Err(error) => self.set_error(&Error::Cache(error.to_string())),
        }
    }

    async fn refresh(&self) -> Result<Refreshed, Error> {
        let _one_at_a_time = self.refreshing.lock().await;
        let result = self.fetch().await;
        if let Ok(mut status) = self.status.lock() {
            match &result {
                Ok(_) => status.last_error = None,
                Err(error) => status.last_error = Some(error.clone()),
            }
        }
        result
    }

    async fn fetch(&self) -> Result<Refreshed, Error> {
        let held_etag = self
            .evaluations
            .load()
            .as_ref()
            .and_then(|_| self.status.lock().ok()?.etag.clone());
        let mut request = self
            .http
            .post(&self.endpoint)
            .header(AUTHORIZATION, &self.authorization)
            .header(crate::instance::HEADER, &self.instance)
            .json(&serde_json::json!({ "context": self.context }));
        if let Some(etag) = &held_etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(|error| Error::Connection(error_chain(&error)))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && held_etag.is_some() {
            if let Ok(mut status) = self.status.lock() {
                status.source = Some(Source::Server);
            }
            return Ok(Refreshed::NotModified);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|etag| etag.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .map_err(|error| Error::Connection(error_chain(&error)))?;
        if !status.is_success() {
            return Err(Error::Refused {
                status: status.as_u16(),
                message: refusal_message(&bytes),
            });
        }
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|error| Error::InvalidResponse(format!("not JSON: {error}")))?;
        let evaluations = Evaluations::parse(&body)?;
        // Cached before it is served, so that an app that saw the new values (or became
        // ready with them) finds them in the file on its next start.
        let mut cached = Ok(());
        if let Some(path) = &self.cache_file {
            let file = CacheFile {
                format: CACHE_FORMAT,
                source: self.source.clone(),
                context: self.context.clone(),
                etag: etag.clone(),
                body,
                instance: Some(self.instance.clone()),
            };
            cached = write_cache(path, &file);
        }
        self.install(evaluations, Source::Server, etag);
        // The evaluations are served either way; a cache that cannot be written only costs
        // the next start its head start, so it is reported, not fatal.
        if let Err(error) = cached {
            tracing::warn!(%error, "ripcord: the cache file could not be written");
            return Err(error);
        }
        Ok(Refreshed::Updated)
    }
}

fn read_cache(path: &Path) -> Result<Option<CacheFile>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::Cache(format!("reading {}: {error}", path.display()))),
    };
    let cached: CacheFile = serde_json::from_slice(&bytes).map_err(|error| {
        Error::Cache(format!("{} is not a cache file: {error}", path.display()))
    })?;
    if cached.format != CACHE_FORMAT {
        return Ok(None);
    }
    Ok(Some(cached))
}

/// Writes the file whole or not at all: a temporary file in the same directory, flushed,
/// then renamed over the old one, so that a crash mid-write leaves the previous cache.
fn write_cache(path: &Path, cached: &CacheFile) -> Result<(), Error> {
    use std::io::Write;
    let failed = |what: &str, error: std::io::Error| {
        Error::Cache(format!("{what} {}: {error}", path.display()))
    };
    let bytes = serde_json::to_vec(cached).map_err(|error| Error::Cache(error.to_string()))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)
        .map_err(|error| failed("creating a temporary file for", error))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| failed("writing", error))?;
    std::fs::rename(&temporary, path).map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        failed("replacing", error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bulk() -> Value {
        json!({"flags": [
            {"key": "banner", "value": "spring", "reason": "TARGETING_MATCH", "variant": "spring",
             "metadata": {"revision": 7, "rule": "spring-sale"}},
            {"key": "ratio", "value": 2, "reason": "STATIC", "variant": "two", "metadata": {"revision": 3}},
            {"key": "broken", "errorCode": "PARSE_ERROR", "errorDetails": "bad"},
            {"key": "future", "value": true, "reason": "SOMETHING_NEW", "variant": "on",
             "metadata": {"revision": 1, "cohort": "treatment", "extra": [1]}}
        ]})
    }

    #[test]
    fn the_cache_file_round_trips_and_replaces_the_old_one_whole() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("flags.json");
        assert!(read_cache(&path).unwrap().is_none(), "no file is no cache");
        for etag in ["\"one\"", "\"two\""] {
            write_cache(
                &path,
                &CacheFile {
                    format: CACHE_FORMAT,
                    source: cache_source("key"),
                    context: json!({"targetingKey": "u1"}),
                    etag: Some(etag.to_string()),
                    body: bulk(),
                    instance: None,
                },
            )
            .unwrap();
        }
        let cached = read_cache(&path).unwrap().unwrap();
        assert_eq!(cached.etag.as_deref(), Some("\"two\""));
        assert_eq!(cached.body, bulk());
        assert_eq!(
            std::fs::read_dir(directory.path()).unwrap().count(),
            1,
            "no temporary file is left behind"
        );
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(read_cache(&path), Err(Error::Cache(_))));
    }

    #[tokio::test]
    async fn a_cache_file_is_served_only_to_the_key_and_context_it_was_written_for() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("flags.json");
        // Nothing listens on the discard port: every client here starts offline.
        let url = "http://127.0.0.1:9";
        let context: Context = [("targetingKey", json!("u1"))].into_iter().collect();
        write_cache(
            &path,
            &CacheFile {
                format: CACHE_FORMAT,
                source: cache_source("key-of-prod"),
                context: json!({"targetingKey": "u1"}),
                etag: None,
                body: bulk(),
                instance: None,
            },
        )
        .unwrap();
        let start = |url: &str, key: &str, context: Context| {
            RemoteClient::builder(url, key)
                .context(context)
                .cache_file(&path)
                .build()
                .unwrap()
        };
        let same = start(url, "key-of-prod", context.clone());
        assert!(same.is_ready(), "the same key and context: served");
        assert!(same.get_bool("future", false));
        let other_key = start(url, "key-of-staging", context.clone());
        assert!(!other_key.is_ready(), "another key's flags are not served");
        let moved = start("http://127.0.0.1:10", "key-of-prod", context);
        assert!(
            moved.is_ready(),
            "the same key at a new address: still its environment"
        );
        let other_context: Context = [("targetingKey", json!("u2"))].into_iter().collect();
        assert!(!start(url, "key-of-prod", other_context).is_ready());
    }

    #[test]
    fn bulk_answers_keep_per_flag_errors_and_unknown_reasons() {
        let evaluations = Evaluations::parse(&bulk()).unwrap();
        match &evaluations.flags["banner"] {
            Item::Success {
                reason, metadata, ..
            } => {
                assert_eq!(*reason, Reason::TargetingMatch);
                assert_eq!(metadata.revision, 7);
                assert_eq!(metadata.rule.as_deref(), Some("spring-sale"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            evaluations.flags["broken"],
            Item::Failure {
                code: ErrorCode::ParseError,
                ..
            }
        ));
        match &evaluations.flags["future"] {
            Item::Success {
                reason, metadata, ..
            } => {
                assert_eq!(*reason, Reason::Other("SOMETHING_NEW".into()));
                assert_eq!(metadata.cohort.as_deref(), Some("treatment"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Evaluations::parse(&json!({"flags": "no"})).is_err());
        assert!(Evaluations::parse(&json!([1, 2])).is_err());
    }
}
