//! One environment as the server serves it: the compiled snapshot, the document it was
//! compiled from, and the ruleset as SDKs receive it. The service installs environments; the
//! delivery feed and every protocol read them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use ripcord_engine::{Document, RulesetRef, Snapshot};

use crate::answers::OfrepPieces;
use crate::telemetry::{ByPosition, Evaluations};

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
    /// The evaluation counters of this snapshot's flags by position, looked up by name once,
    /// on the first bulk evaluation, rather than once per flag of every one.
    counters: OnceLock<ByPosition>,
    /// Built on the first OFREP evaluation: a node that serves only SDKs never needs them.
    ofrep_pieces: OnceLock<OfrepPieces>,
    /// The positions of the client-visible flags: a client key's bulk evaluation visits
    /// these rather than reading every flag of the snapshot to skip most of them.
    client_visible: OnceLock<Box<[usize]>>,
    /// The whole ruleset as each kind of stream sends it.
    frames: Frames,
}

/// The ways a stream sends a ruleset or a delta.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    /// A server-sent event of `/api/v1/sdk/stream`.
    ServerSentEvent,
    /// A length-prefixed `WatchResponse` of gRPC `Watch`.
    Grpc,
}

/// One revision's message as each kind of stream sends it. Encoded by the first stream that
/// needs it and shared by every other one: thousands of streams at one revision hold one
/// copy of a ruleset, not one each.
#[derive(Debug, Default)]
pub struct Frames([OnceLock<Bytes>; 2]);

impl Frames {
    pub fn get(&self, framing: Framing, encode: impl FnOnce() -> Bytes) -> Bytes {
        self.0[framing as usize].get_or_init(encode).clone()
    }
}

/// Environments of at least this many flags are freed on a thread of their own (see the
/// `Drop` below).
const FREED_APART: usize = 1_000;

impl Drop for Environment {
    /// Freeing a large environment's snapshot, document and encodings takes milliseconds,
    /// and whoever drops the last reference does it: after an import, as often as not a
    /// request that was evaluating against the previous revision, on the thread that answers
    /// requests. A large one's parts are handed to a thread that frees them instead.
    fn drop(&mut self) {
        if self.snapshot.len() < FREED_APART {
            return;
        }
        let parts = Box::new((
            std::mem::replace(&mut self.snapshot, Snapshot::empty(self.revision)),
            std::mem::take(&mut self.document),
            std::mem::take(&mut self.flag_revisions),
            self.ofrep_pieces.take(),
            self.delivered.take(),
            std::mem::take(&mut self.frames),
        ));
        free_apart(parts);
    }
}

/// Drops `parts` on the freeing thread, or here if it cannot be had.
fn free_apart(parts: Box<dyn Send>) {
    static FREEING: OnceLock<Option<Freeing>> = OnceLock::new();
    let sender = FREEING.get_or_init(|| {
        let (sender, parts) = std::sync::mpsc::channel::<Box<dyn Send>>();
        std::thread::Builder::new()
            .name("ripcord-free".to_string())
            .spawn(move || {
                for freed in parts {
                    drop(freed);
                    FREED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .ok()
            .map(|_| std::sync::Mutex::new(sender))
    });
    if let Some(sender) = sender {
        let sender = sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A send fails only if the thread is gone: the parts come back and drop here.
        let _ = sender.send(parts);
    }
}

/// Where parts to free are sent; `None` if the thread could not be started.
type Freeing = std::sync::Mutex<std::sync::mpsc::Sender<Box<dyn Send>>>;

/// How many environments the freeing thread has freed, for tests.
static FREED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
            counters: OnceLock::new(),
            ofrep_pieces: OnceLock::new(),
            client_visible: OnceLock::new(),
            frames: Frames::default(),
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

    /// The whole ruleset as a stream of `framing` sends it, encoded by `encode` once.
    pub fn frame(&self, framing: Framing, encode: impl FnOnce() -> Bytes) -> Bytes {
        self.frames.get(framing, encode)
    }

    /// The counters of this snapshot's flags in `evaluations`, by position in
    /// [`Snapshot::flags`].
    pub fn counters(&self, evaluations: &Evaluations) -> std::borrow::Cow<'_, ByPosition> {
        let by_position = || {
            let flags: Vec<&str> = self.snapshot.flags().map(|flag| flag.key()).collect();
            evaluations.by_position(&self.name, &flags)
        };
        let kept = self.counters.get_or_init(by_position);
        // A server has one set of counters; a second one, which only a test might make,
        // is counted into correctly, only not as cheaply.
        if kept.belong_to(evaluations) {
            std::borrow::Cow::Borrowed(kept)
        } else {
            std::borrow::Cow::Owned(by_position())
        }
    }

    /// Each flag's OFREP answer pieces, encoded once for this snapshot.
    pub fn ofrep_pieces(&self) -> &OfrepPieces {
        self.ofrep_pieces
            .get_or_init(|| OfrepPieces::new(&self.snapshot))
    }

    /// The positions in [`Snapshot::flags`] of the client-visible flags, in order.
    pub fn client_visible(&self) -> &[usize] {
        self.client_visible.get_or_init(|| {
            self.snapshot
                .flags()
                .enumerate()
                .filter(|(_, flag)| flag.is_client_visible())
                .map(|(position, _)| position)
                .collect()
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

#[cfg(test)]
mod tests {
    use ripcord_engine::{Limits, Reason};

    use super::*;
    use crate::telemetry::Metrics;

    fn environment(revision: u64, flags: &[&str]) -> Environment {
        let yaml: String = std::iter::once("flags:\n".to_string())
            .chain(flags.iter().map(|key| {
                format!(
                    "  {key}:\n    type: boolean\n    variants: {{on: true, off: false}}\n    default_variant: \"on\"\n"
                )
            }))
            .collect();
        let document = Document::from_yaml(&yaml).expect("a valid document");
        let snapshot = Snapshot::compile(&document, revision, |_| revision, &Limits::default())
            .expect("it compiles");
        Environment::new("production", revision, snapshot, document, BTreeMap::new())
    }

    fn series(metrics: &Metrics, flag: &str) -> Option<String> {
        metrics
            .render()
            .lines()
            .find(|line| line.contains(&format!("flag=\"{flag}\"")))
            .map(str::to_string)
    }

    /// Every stream at a revision sends the one frame the first of them encoded.
    #[test]
    fn a_revision_is_encoded_once_for_every_stream() {
        let environment = environment(3, &["banner"]);
        let mut encoded = 0;
        let frames: Vec<Bytes> = (0..3)
            .map(|_| {
                environment.frame(Framing::ServerSentEvent, || {
                    encoded += 1;
                    Bytes::from(environment.delivered().json.to_vec())
                })
            })
            .collect();
        assert_eq!(encoded, 1);
        assert!(frames
            .iter()
            .all(|frame| frame.as_ptr() == frames[0].as_ptr()));
        // Each framing has its own.
        let grpc = environment.frame(Framing::Grpc, || Bytes::from_static(b"grpc"));
        assert_eq!(grpc, &b"grpc"[..]);
        assert_eq!(frames[0], environment.delivered().json);
    }

    #[test]
    fn a_large_environment_is_freed_on_the_freeing_thread() {
        let keys: Vec<String> = (0..FREED_APART)
            .map(|index| format!("flag-{index}"))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let large = environment(1, &keys);
        assert!(large.ofrep_pieces().around_reason(0, 0).is_some());
        let before = FREED.load(std::sync::atomic::Ordering::Relaxed);
        drop(large);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while FREED.load(std::sync::atomic::Ordering::Relaxed) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the environment was not handed to the freeing thread"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // A small one is freed where it is dropped.
        drop(environment(1, &["banner"]));
    }

    #[test]
    fn a_new_snapshot_counts_on_from_the_counts_of_the_last() {
        let metrics = Metrics::new();
        let first = environment(1, &["banner", "checkout"]);
        first
            .counters(&metrics.evaluations)
            .record(1, Reason::Static);
        // `aaa` sorts first, so `checkout` moves from position 1 to 2.
        let second = environment(2, &["aaa", "banner", "checkout"]);
        let counters = second.counters(&metrics.evaluations);
        counters.record(2, Reason::Static);
        counters.record(2, Reason::Static);
        assert_eq!(
            series(&metrics, "checkout").as_deref(),
            Some(
                "ripcord_evaluations_total{environment=\"production\",flag=\"checkout\",reason=\"STATIC\"} 3"
            )
        );
        assert_eq!(series(&metrics, "banner"), None);

        // Counters of another set are not the ones kept for the snapshot.
        let other = Metrics::new();
        second
            .counters(&other.evaluations)
            .record(0, Reason::Static);
        assert!(series(&other, "aaa").is_some());
        assert_eq!(series(&metrics, "aaa"), None);
    }
}
