//! The reporter: closes a tracking window every flush interval and sends the batches, over
//! gRPC `Report` (local mode) or `POST /api/v1/metrics` (remote mode). A batch that could
//! not be delivered waits at the head of the queue and is tried again with jittered
//! exponential backoff while the server stays away; one the server refuses for good (a
//! wrong key, no ingestion) is dropped and counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use ripcord_proto::pb::ripcord::v1 as pb;
use ripcord_proto::pb::ripcord::v1::ripcord_client::RipcordClient;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::error::{error_chain, refusal_message, status_error, Error};
use crate::tracking::{
    Answer, Batch, Bounds, MetricKind, Observation, Recorder, Tag, Tracked, TrackingStatus,
};

/// How often windows close and how failed sends are retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) flush_interval: Duration,
    pub(crate) first_retry: Duration,
    pub(crate) max_retry: Duration,
}

pub(crate) const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// However short a flush interval is asked for, windows last at least this long, so that a
/// mistaken zero does not flood the server.
pub(crate) const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
        }
    }
}

/// Where batches go.
pub(crate) enum Transport {
    Grpc {
        client: RipcordClient<Channel>,
        authorization: MetadataValue<Ascii>,
        instance: MetadataValue<Ascii>,
        timeout: Duration,
    },
    Http {
        http: reqwest::Client,
        url: String,
        authorization: String,
        instance: String,
    },
}

/// Why a batch was not delivered.
enum Failure {
    /// The server could not be reached or is overloaded: try again later.
    Retry(Error),
    /// The server will never take this batch: drop it.
    Refused(Error),
    /// The batch is over the server's size limit: send it in halves.
    TooLarge(Error),
}

pub(crate) struct Reporter {
    pub(crate) recorder: Recorder,
    transport: Transport,
    timing: Timing,
    /// One send at a time, so that batches go in order; holds the backoff.
    sending: tokio::sync::Mutex<Backoff>,
    /// No background send before this, after a failure.
    retry_at: Mutex<Option<Instant>>,
    /// Wakes the background task when `retry_at` is set by a flush it did not make.
    rescheduled: tokio::sync::Notify,
}

impl Reporter {
    pub(crate) fn new(transport: Transport, bounds: Bounds, timing: Timing) -> Reporter {
        Reporter {
            recorder: Recorder::new(bounds),
            transport,
            timing,
            sending: tokio::sync::Mutex::new(Backoff::new(timing.first_retry, timing.max_retry)),
            retry_at: Mutex::new(None),
            rescheduled: tokio::sync::Notify::new(),
        }
    }

    /// Starts closing windows and sending in the background.
    pub(crate) fn start(self: &Arc<Self>, runtime: &tokio::runtime::Handle) -> JoinHandle<()> {
        runtime.spawn(Arc::clone(self).run())
    }

    async fn run(self: Arc<Self>) {
        let mut window_ends = Instant::now() + self.timing.flush_interval;
        loop {
            let retry_at = *self
                .retry_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let wake = retry_at.map_or(window_ends, |retry_at| retry_at.min(window_ends));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.rescheduled.notified() => continue,
            }
            if Instant::now() >= window_ends {
                self.recorder.close_window();
                window_ends = Instant::now() + self.timing.flush_interval;
            }
            // The error is kept in the status.
            let _ = self.send_pending(false).await;
        }
    }

    /// Closes the window now and sends everything waiting, even while backing off.
    pub(crate) async fn flush(&self) -> Result<(), Error> {
        self.recorder.close_window();
        self.send_pending(true).await
    }

    /// Starts a last flush in the background, if there is a runtime to run it: for close
    /// and drop, which cannot wait.
    pub(crate) fn flush_in_background(self: &Arc<Self>) {
        if self.recorder.status().pending == 0 {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let reporter = Arc::clone(self);
            runtime.spawn(async move {
                let _ = reporter.flush().await;
            });
        }
    }

    pub(crate) fn status(&self) -> TrackingStatus {
        self.recorder.status()
    }

    /// Records one event; the time is now.
    pub(crate) fn record(
        &self,
        flag: &str,
        unit: Option<&str>,
        tag: Option<Tag>,
        metric: &str,
        kind: MetricKind,
        value: f64,
    ) -> Tracked {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            });
        self.recorder
            .record(flag, unit, tag, metric, kind, value, now_ms)
    }

    async fn send_pending(&self, even_while_backing_off: bool) -> Result<(), Error> {
        let mut backoff = self.sending.lock().await;
        if !even_while_backing_off && self.backing_off() {
            return Ok(());
        }
        let mut result = Ok(());
        while let Some(batch) = self.recorder.take_batch() {
            match self.transport.send(&batch).await {
                Ok(answer) => {
                    self.recorder.delivered(batch.len(), &answer);
                    backoff.reset();
                    self.set_retry_at(None);
                }
                Err(Failure::Retry(error)) => {
                    tracing::warn!(%error, "ripcord: sending tracked observations failed; retrying later");
                    self.recorder.requeue(batch);
                    self.recorder.set_error(error.clone());
                    self.set_retry_at(Some(Instant::now() + backoff.next_delay()));
                    return Err(error);
                }
                Err(Failure::TooLarge(_)) if batch.len() > 1 => {
                    // The server refused the whole batch: its halves are new batches.
                    let mut first = batch.observations;
                    let second = first.split_off(first.len() / 2);
                    self.recorder.requeue(Batch::new(second));
                    self.recorder.requeue(Batch::new(first));
                }
                Err(Failure::Refused(error) | Failure::TooLarge(error)) => {
                    tracing::warn!(%error, "ripcord: the server refused tracked observations; dropped");
                    self.recorder.dropped(batch.len(), &error.to_string());
                    self.recorder.set_error(error.clone());
                    result = Err(error);
                }
            }
        }
        result
    }

    fn backing_off(&self) -> bool {
        self.retry_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|retry_at| Instant::now() < retry_at)
    }

    fn set_retry_at(&self, at: Option<Instant>) {
        *self
            .retry_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
        if at.is_some() {
            self.rescheduled.notify_one();
        }
    }
}

impl Transport {
    async fn send(&self, batch: &Batch) -> Result<Answer, Failure> {
        match self {
            Transport::Grpc {
                client,
                authorization,
                instance,
                timeout,
            } => {
                let mut request = tonic::Request::new(pb::ReportRequest {
                    observations: batch.observations.iter().map(to_pb).collect(),
                    batch_id: batch.id.clone(),
                });
                request.set_timeout(*timeout);
                let metadata = request.metadata_mut();
                metadata.insert("authorization", authorization.clone());
                metadata.insert(crate::instance::HEADER, instance.clone());
                match client.clone().report(request).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        Ok(Answer {
                            accepted: response.accepted,
                            rejected: response
                                .rejected
                                .into_iter()
                                .map(|rejection| (rejection.index, rejection.reason))
                                .collect(),
                        })
                    }
                    Err(status) => Err(grpc_failure(&status)),
                }
            }
            Transport::Http {
                http,
                url,
                authorization,
                instance,
            } => {
                let body = json!({
                    "batch_id": batch.id,
                    "observations": batch.observations.iter().map(to_json).collect::<Vec<_>>(),
                });
                let response = http
                    .post(url)
                    .header(AUTHORIZATION, authorization)
                    .header(crate::instance::HEADER, instance)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|error| Failure::Retry(Error::Connection(error_chain(&error))))?;
                let status = response.status();
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|error| Failure::Retry(Error::Connection(error_chain(&error))))?;
                if status.is_success() {
                    return parse_answer(&bytes).map_err(Failure::Refused);
                }
                let error = Error::Refused {
                    status: status.as_u16(),
                    message: refusal_message(&bytes),
                };
                Err(match status {
                    StatusCode::PAYLOAD_TOO_LARGE => Failure::TooLarge(error),
                    StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                        Failure::Retry(error)
                    }
                    status if status.is_server_error() => Failure::Retry(error),
                    _ => Failure::Refused(error),
                })
            }
        }
    }
}

fn grpc_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let error = status_error(status);
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => Failure::Retry(error),
        // What tonic answers for a message over the server's size limit.
        Code::OutOfRange => Failure::TooLarge(error),
        _ => Failure::Refused(error),
    }
}

/// The server's answer, read leniently: fields a newer server adds are ignored.
fn parse_answer(bytes: &[u8]) -> Result<Answer, Error> {
    #[derive(Deserialize)]
    struct Reply {
        accepted: u64,
        #[serde(default)]
        rejected: Vec<Rejection>,
    }
    #[derive(Deserialize)]
    struct Rejection {
        index: u32,
        #[serde(default)]
        reason: String,
    }
    let reply: Reply = serde_json::from_slice(bytes).map_err(|error| {
        Error::InvalidResponse(format!("not an answer to observations: {error}"))
    })?;
    Ok(Answer {
        accepted: reply.accepted,
        rejected: reply
            .rejected
            .into_iter()
            .map(|rejection| (rejection.index, rejection.reason))
            .collect(),
    })
}

fn to_pb(observation: &Observation) -> pb::Observation {
    pb::Observation {
        flag: observation.flag.to_string(),
        metric: observation.metric.to_string(),
        value: observation.value,
        cohort: observation.cohort.as_str().to_string(),
        stage: observation.stage.get(),
        unit: observation.unit.as_deref().unwrap_or_default().to_string(),
        timestamp_ms: Some(observation.timestamp_ms),
    }
}

fn to_json(observation: &Observation) -> Value {
    let mut fields = json!({
        "flag": observation.flag,
        "metric": observation.metric,
        "value": observation.value,
        "cohort": observation.cohort.as_str(),
        "stage": observation.stage,
    });
    if let Some(unit) = &observation.unit {
        fields["unit"] = json!(unit);
    }
    let timestamp = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(observation.timestamp_ms) * 1_000_000,
    )
    .ok()
    .and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    if let Some(timestamp) = timestamp {
        fields["timestamp"] = json!(timestamp);
    }
    fields
}
