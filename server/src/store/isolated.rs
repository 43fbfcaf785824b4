//! Keeps storage off the threads that answer requests, and bounds how long a call may take.
//!
//! sled does its I/O synchronously, and after an I/O error (a full disk) some of its calls
//! never return. Run on an HTTP worker, one such call would take every request on that
//! worker down with it: evaluations, health, metrics and the kill switch. [`Isolated`] wraps
//! any [`Store`] and runs each call on a pool of threads of its own; the caller waits at
//! most the configured bound and then gets [`StoreError::Backend`], which the API answers
//! with `503 storage_unavailable`. Evaluations never reach the store: they read the
//! in-memory snapshots, which stay as they were.
//!
//! A call still running past its bound is counted as stuck until it returns. While one is,
//! writes are refused at once rather than queued behind it (a write waiting for a stuck one
//! would otherwise take twice the bound to fail), and [`Store::ready`] answers false.

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};

use super::{
    Aggregate, AuditQuery, AuditRecord, ChangeEvent, EnvironmentRecord, EnvironmentState,
    IncidentQuery, IncidentRecord, KeyRecord, LookRecord, Mutation, RampRecord, RampWrite, Reach,
    SeenInstance, Store, StoreError, StoreResult,
};

/// The longest a readiness check waits for the store. Orchestrators give a probe one second
/// by default; a probe that times out is read as a failure with no reason given.
const READY_BOUND: Duration = Duration::from_millis(500);

/// Most threads the store may occupy at once: each call that never returns keeps one, and
/// past this the rest queue (and time out) instead of piling up threads without end.
const MAX_STORE_THREADS: usize = 64;

pub struct Isolated {
    /// `None` only while being dropped; see [`Drop`].
    running: Option<Running>,
    bound: Duration,
    stuck: Arc<AtomicUsize>,
}

struct Running {
    inner: Arc<dyn Store>,
    runtime: tokio::runtime::Runtime,
}

/// Where one call is: whether its caller still waits for it.
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl Isolated {
    /// Wraps `inner`; each call may take up to `bound` before the caller gets an error.
    pub fn new(inner: Arc<dyn Store>, bound: Duration) -> std::io::Result<Isolated> {
        // One worker drives timers and sled's completion signals; the calls themselves run
        // on blocking threads, so that one that never returns holds only its own thread.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(MAX_STORE_THREADS)
            .thread_name("ripcord-store")
            .enable_all()
            .build()?;
        Ok(Isolated {
            running: Some(Running { inner, runtime }),
            bound,
            stuck: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many calls have run past their bound and not returned yet.
    pub fn stuck(&self) -> usize {
        self.stuck.load(Ordering::SeqCst)
    }

    async fn call<T, F, Fut>(&self, kind: Kind, bound: Duration, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let stuck = self.stuck();
        if kind == Kind::Write && stuck > 0 {
            return Err(StoreError::Backend(format!(
                "the store is stuck: {stuck} call(s) have not finished within {:?}",
                self.bound
            )));
        }
        let Some(Running { inner, runtime }) = &self.running else {
            return Err(StoreError::Backend("the store is closed".to_string()));
        };
        let (reply, answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (task_state, task_stuck) = (Arc::clone(&state), Arc::clone(&self.stuck));
        let inner = Arc::clone(inner);
        let handle = runtime.handle().clone();
        runtime.spawn_blocking(move || {
            // Marks the call finished however it ends, a panic included: a call counted as
            // stuck that never uncounted itself would refuse every write until a restart.
            let finished = Finished {
                state: task_state,
                stuck: task_stuck,
            };
            // A call whose caller has given up while it queued is not started: its result
            // would reach nobody, and it may be the very write that cannot complete.
            if finished.state.load(Ordering::SeqCst) != ABANDONED {
                let result = handle.block_on(work(inner));
                let _ = reply.send(result);
            }
        });
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(result)) => result,
            // The call panicked (the runtime caught it), or the store closed under it.
            Ok(Err(_)) => Err(StoreError::Backend(
                "the store call ended without an answer".to_string(),
            )),
            Err(_) => {
                if state
                    .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.stuck.fetch_add(1, Ordering::SeqCst);
                }
                tracing::error!(
                    bound = ?bound,
                    "a store call did not finish in time; answering that the store is unavailable"
                );
                Err(StoreError::Backend(format!(
                    "the store did not answer within {bound:?}"
                )))
            }
        }
    }

    async fn read<T, F, Fut>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        self.call(Kind::Read, self.bound, work).await
    }

    async fn write<T, F, Fut>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        self.call(Kind::Write, self.bound, work).await
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let Some(Running { inner, runtime }) = self.running.take() else {
            return;
        };
        // Threads stuck in the store are left behind rather than waited for: the process
        // must be able to exit while the disk is full.
        runtime.shutdown_background();
        // Closing the backend (sled flushes when dropped, and waits for a stuck write to
        // do so) happens on a thread of its own, waited for up to the bound: a healthy
        // store closes cleanly, a stuck one does not hold the exit.
        let (closed, done) = std::sync::mpsc::channel();
        let closer = std::thread::Builder::new()
            .name("ripcord-store-close".to_string())
            .spawn(move || {
                drop(inner);
                let _ = closed.send(());
            });
        if closer.is_ok() && done.recv_timeout(self.bound).is_err() {
            tracing::error!(bound = ?self.bound, "the store did not close in time; leaving it");
        }
    }
}

/// Ends a store call: marks it finished, or, if its caller gave up on it and counted it as
/// stuck, uncounts it.
struct Finished {
    state: Arc<AtomicU8>,
    stuck: Arc<AtomicUsize>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if self
            .state
            .compare_exchange(RUNNING, FINISHED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            self.stuck.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Store for Isolated {
    async fn environments(&self) -> StoreResult<Vec<EnvironmentRecord>> {
        self.read(move |store| async move { store.environments().await })
            .await
    }

    async fn load_environment(&self, name: &str) -> StoreResult<Option<EnvironmentState>> {
        let name = name.to_string();
        self.read(move |store| async move { store.load_environment(&name).await })
            .await
    }

    async fn create_environment(
        &self,
        name: &str,
        created_at: &str,
        audit: AuditRecord,
    ) -> StoreResult<EnvironmentRecord> {
        let (name, created_at) = (name.to_string(), created_at.to_string());
        self.write(
            move |store| async move { store.create_environment(&name, &created_at, audit).await },
        )
        .await
    }

    async fn delete_environment(&self, name: &str, audit: AuditRecord) -> StoreResult<()> {
        let name = name.to_string();
        self.write(move |store| async move { store.delete_environment(&name, audit).await })
            .await
    }

    async fn commit(
        &self,
        environment: &str,
        base_revision: u64,
        mutations: Vec<Mutation>,
        audit: Vec<AuditRecord>,
    ) -> StoreResult<u64> {
        let environment = environment.to_string();
        self.write(move |store| async move {
            store
                .commit(&environment, base_revision, mutations, audit)
                .await
        })
        .await
    }

    async fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.read(move |store| async move { store.keys().await })
            .await
    }

    async fn put_key(&self, key: KeyRecord, audit: AuditRecord) -> StoreResult<()> {
        self.write(move |store| async move { store.put_key(key, audit).await })
            .await
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let query = query.clone();
        self.read(move |store| async move { store.audit(&query).await })
            .await
    }

    async fn ramps(&self) -> StoreResult<Vec<RampRecord>> {
        self.read(move |store| async move { store.ramps().await })
            .await
    }

    async fn ramp(&self, environment: &str, flag: &str) -> StoreResult<Option<RampRecord>> {
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.read(move |store| async move { store.ramp(&environment, &flag).await })
            .await
    }

    async fn put_ramp(&self, write: RampWrite) -> StoreResult<u64> {
        self.write(move |store| async move { store.put_ramp(write).await })
            .await
    }

    async fn pending_webhooks(&self) -> StoreResult<Vec<super::PendingWebhook>> {
        self.read(move |store| async move { store.pending_webhooks().await })
            .await
    }

    async fn webhook_done(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |store| async move { store.webhook_done(&id).await })
            .await
    }

    async fn reserve_incident_id(&self) -> StoreResult<u64> {
        self.write(move |store| async move { store.reserve_incident_id().await })
            .await
    }

    async fn lease(&self, holder: &str, ttl: Duration) -> StoreResult<Option<u64>> {
        let holder = holder.to_string();
        self.write(move |store| async move { store.lease(&holder, ttl).await })
            .await
    }

    async fn incidents(&self, query: &IncidentQuery) -> StoreResult<Vec<IncidentRecord>> {
        let query = query.clone();
        self.read(move |store| async move { store.incidents(&query).await })
            .await
    }

    async fn incident(&self, id: u64) -> StoreResult<Option<IncidentRecord>> {
        self.read(move |store| async move { store.incident(id).await })
            .await
    }

    async fn merge_batch(
        &self,
        batch_id: &str,
        deltas: Vec<Aggregate>,
        now: u64,
    ) -> StoreResult<bool> {
        let batch_id = batch_id.to_string();
        self.write(move |store| async move { store.merge_batch(&batch_id, deltas, now).await })
            .await
    }

    async fn import(&self, dump: super::copy::Dump) -> StoreResult<()> {
        self.write(move |store| async move { store.import(dump).await })
            .await
    }

    fn shared(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| running.inner.shared())
    }

    async fn merge_reach(&self, environment: &str, seen: Vec<SeenInstance>) -> StoreResult<()> {
        let environment = environment.to_string();
        // Counts, not a change anyone waits on: never refused for a stuck write.
        self.read(move |store| async move { store.merge_reach(&environment, seen).await })
            .await
    }

    async fn reach(
        &self,
        environment: &str,
        since_revision: u64,
        active_after: u64,
    ) -> StoreResult<Reach> {
        let environment = environment.to_string();
        self.read(move |store| async move {
            store
                .reach(&environment, since_revision, active_after)
                .await
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        match &self.running {
            Some(running) => running.inner.subscribe(),
            // Closed: a feed that has ended.
            None => broadcast::channel(1).1,
        }
    }

    async fn ready(&self) -> bool {
        if self.stuck() > 0 {
            return false;
        }
        self.call(
            Kind::Read,
            READY_BOUND.min(self.bound),
            move |store| async move { Ok(store.ready().await) },
        )
        .await
        .unwrap_or(false)
    }

    async fn merge_aggregates(&self, deltas: Vec<Aggregate>) -> StoreResult<()> {
        self.write(move |store| async move { store.merge_aggregates(deltas).await })
            .await
    }

    async fn clear_aggregates(&self, environment: &str, flag: &str) -> StoreResult<()> {
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.write(move |store| async move { store.clear_aggregates(&environment, &flag).await })
            .await
    }

    async fn add_look(&self, look: LookRecord, keep: usize) -> StoreResult<()> {
        self.write(move |store| async move { store.add_look(look, keep).await })
            .await
    }

    async fn looks(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<LookRecord>> {
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.read(move |store| async move { store.looks(&environment, &flag, generation).await })
            .await
    }

    async fn clear_looks(&self, environment: &str, flag: &str) -> StoreResult<()> {
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.write(move |store| async move { store.clear_looks(&environment, &flag).await })
            .await
    }

    async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.read(
            move |store| async move { store.aggregates(&environment, &flag, generation).await },
        )
        .await
    }

    async fn batch_ids(&self) -> StoreResult<Vec<(String, u64)>> {
        self.read(move |store| async move { store.batch_ids().await })
            .await
    }

    async fn unit_markers(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        let (environment, flag) = (environment.to_string(), flag.to_string());
        self.read(
            move |store| async move { store.unit_markers(&environment, &flag, generation).await },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use ripcord_engine::{evaluate_flag, Document, Flag, Limits};
    use serde_json::json;

    use super::Isolated;
    use crate::error::Error;
    use crate::principal::Principal;
    use crate::service::{Change, Service};
    use crate::store::faulty::{Fault, Faulty, Mode};
    use crate::store::{Scope, Store};

    /// `checkout` serves `true` to everyone while it is on, `false` once killed.
    const DOCUMENT: &str = r#"
flags:
  checkout:
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    rules:
      - when: [{attribute: userId, op: starts_with, values: ["u-"]}]
        serve: {variant: "on"}
"#;

    /// Short, so that the tests are quick; the server's default is five seconds.
    const BOUND: Duration = Duration::from_millis(400);

    /// How much later than the bound an answer may come: scheduling on a loaded machine.
    const SLACK: Duration = Duration::from_millis(1500);

    fn admin() -> Principal {
        Principal {
            name: "test".to_string(),
            scope: Scope::Admin,
            environment: None,
            event_channel: None,
        }
    }

    struct Serving {
        _directory: tempfile::TempDir,
        _follower: tokio::task::JoinHandle<()>,
        service: Arc<Service>,
        store: Arc<Isolated>,
        fault: Fault,
    }

    /// A service on sled behind the fault switch and the isolation, serving `checkout` on.
    async fn serving() -> Serving {
        let directory = tempfile::tempdir().unwrap();
        let sled = crate::store::sled::SledStore::open(directory.path()).unwrap();
        let (faulty, fault) = Faulty::new(Arc::new(sled));
        let store = Arc::new(Isolated::new(Arc::new(faulty), BOUND).unwrap());
        let service = Service::open(
            Arc::clone(&store) as Arc<dyn Store>,
            Limits::default(),
            None,
        )
        .await
        .unwrap();
        // As the server does: commits that land late reach the snapshot through the feed.
        let follower = service.follow_changes();
        service
            .create_environment("default", &admin())
            .await
            .unwrap();
        let document = Document::from_text(DOCUMENT).unwrap();
        service
            .change(change(&admin(), "import"), |current| {
                *current = document.clone();
                Ok(())
            })
            .await
            .unwrap();
        Serving {
            _directory: directory,
            _follower: follower,
            service,
            store,
            fault,
        }
    }

    /// Waits until no store call is stuck, failing with `why` after the bound and its slack.
    async fn until_unstuck(serving: &Serving, why: &str) {
        let deadline = Instant::now() + BOUND + SLACK;
        while serving.store.stuck() > 0 {
            assert!(Instant::now() < deadline, "{why}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn change<'a>(actor: &'a Principal, operation: &'static str) -> Change<'a> {
        Change {
            environment: "default",
            actor,
            operation,
            reason: None,
        }
    }

    async fn kill_switch(service: &Service, enabled: bool) -> crate::error::Result<Flag> {
        let actor = admin();
        service
            .edit_item::<Flag>(change(&actor, "kill_switch"), "checkout", |flag| {
                flag.enabled = Some(enabled);
                Ok(())
            })
            .await
    }

    /// What an evaluation of `checkout` serves now, from the snapshot.
    fn serves(service: &Service) -> serde_json::Value {
        let environment = service.environment("default").unwrap();
        let flag = environment.snapshot.flag("checkout").unwrap();
        let mut attributes = serde_json::Map::new();
        attributes.insert("userId".to_string(), json!("u-1"));
        let context = crate::context::build(attributes, 100, 100).unwrap();
        evaluate_flag(flag, &context).value.unwrap().clone()
    }

    /// Kills (or revives) `checkout` as a task of its own, and waits for the answer at most
    /// `limit`. A write still unanswered then is let go, so that the runtime can stop, and the
    /// test fails: without the isolation, the hung write holds the thread that polls it.
    async fn kill_switch_within(
        serving: &Serving,
        enabled: bool,
        limit: Duration,
    ) -> crate::error::Result<Flag> {
        let service = Arc::clone(&serving.service);
        let task = tokio::spawn(async move { kill_switch(&service, enabled).await });
        match tokio::time::timeout(limit, task).await {
            Ok(answer) => answer.unwrap(),
            Err(_) => {
                serving.fault.set(Mode::Pass);
                panic!("the write was not answered within {limit:?}");
            }
        }
    }

    fn is_storage_unavailable(result: &crate::error::Result<Flag>) -> bool {
        matches!(result, Err(Error::Store(_)))
    }

    /// The wrapper hands every call through unchanged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_behind_the_isolation_passes_the_store_conformance_suite() {
        let directory = tempfile::tempdir().unwrap();
        let sled = crate::store::sled::SledStore::open(directory.path()).unwrap();
        let store = Isolated::new(Arc::new(sled), Duration::from_secs(30)).unwrap();
        crate::store::conformance::run(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_hangs_is_answered_within_the_bound_while_evaluation_goes_on() {
        let serving = serving().await;
        assert_eq!(serves(&serving.service), json!(true));
        serving.fault.set(Mode::Hang);
        let started = Instant::now();
        let hung = kill_switch_within(&serving, false, BOUND + SLACK).await;
        assert!(is_storage_unavailable(&hung), "{:?}", hung.map(drop));
        assert!(started.elapsed() >= BOUND, "{:?}", started.elapsed());
        // Evaluation reads the snapshot, which the failed write left as it was.
        assert_eq!(serves(&serving.service), json!(true));

        // While the write is stuck: not ready, and the next write fails at once rather than
        // waiting a whole bound behind it.
        assert!(!serving.service.ready().await);
        let started = Instant::now();
        let refused = kill_switch_within(&serving, false, BOUND + SLACK).await;
        assert!(is_storage_unavailable(&refused));
        assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
        assert_eq!(serves(&serving.service), json!(true));

        // The store comes back: the stuck write finishes (and, like any write that timed
        // out, may land after all), and writes work again.
        serving.fault.set(Mode::Pass);
        until_unstuck(&serving, "the stuck call never finished").await;
        assert!(serving.service.ready().await);
        let revived = kill_switch(&serving.service, true).await;
        assert!(revived.is_ok(), "{:?}", revived.map(drop));
        assert_eq!(serves(&serving.service), json!(true));
        let killed = kill_switch(&serving.service, false).await;
        assert!(killed.is_ok(), "{:?}", killed.map(drop));
        assert_eq!(serves(&serving.service), json!(false));
    }

    /// A write that timed out and then landed leaves the store a revision ahead of the
    /// node. Without the change follower to catch up (it may lag under load), the next write
    /// must still go through: the node reads the environment again before it, instead of
    /// refusing it as stale.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_after_one_that_landed_late_reads_the_store_again() {
        let serving = serving().await;
        serving._follower.abort();
        serving.fault.set(Mode::Hang);
        let hung = kill_switch_within(&serving, false, BOUND + SLACK).await;
        assert!(is_storage_unavailable(&hung), "{:?}", hung.map(drop));
        serving.fault.set(Mode::Pass);
        until_unstuck(&serving, "the stuck call never finished").await;
        // The late write turned the flag off in the store; the node still serves it on.
        assert_eq!(serves(&serving.service), json!(true));
        let revived = kill_switch(&serving.service, true).await;
        assert!(revived.is_ok(), "{:?}", revived.map(drop));
        assert_eq!(serves(&serving.service), json!(true));
        let killed = kill_switch(&serving.service, false).await;
        assert!(killed.is_ok(), "{:?}", killed.map(drop));
        assert_eq!(serves(&serving.service), json!(false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_write_that_then_panics_does_not_leave_the_store_stuck() {
        let serving = serving().await;
        serving.fault.set(Mode::Hang);
        let hung = kill_switch_within(&serving, false, BOUND + SLACK).await;
        assert!(is_storage_unavailable(&hung), "{:?}", hung.map(drop));
        assert!(serving.store.stuck() > 0);
        // The stuck call ends in a panic rather than an answer.
        serving.fault.set(Mode::Panic);
        until_unstuck(
            &serving,
            "a call that panicked is still counted as stuck, and every write is refused",
        )
        .await;
        serving.fault.set(Mode::Pass);
        assert!(serving.service.ready().await);
        let killed = kill_switch(&serving.service, false).await;
        assert!(killed.is_ok(), "{:?}", killed.map(drop));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_store_is_not_ready_until_it_takes_writes_again() {
        let serving = serving().await;
        assert!(serving.service.ready().await);
        serving.fault.set(Mode::Fail);
        let failed = kill_switch(&serving.service, false).await;
        assert!(is_storage_unavailable(&failed), "{:?}", failed.map(drop));
        assert!(!serving.service.ready().await);
        assert_eq!(serves(&serving.service), json!(true));

        serving.fault.set(Mode::Pass);
        assert!(serving.service.ready().await);
        let written = kill_switch(&serving.service, false).await;
        assert!(written.is_ok(), "{:?}", written.map(drop));
        assert_eq!(serves(&serving.service), json!(false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_is_answered_at_once_while_a_background_write_is_stuck() {
        let serving = serving().await;
        serving.fault.set(Mode::Hang);
        // Nobody waits for this one, as for a metrics batch or a ramp tick.
        let service = Arc::clone(&serving.service);
        let background = tokio::spawn(async move { kill_switch(&service, false).await });
        tokio::time::sleep(BOUND + Duration::from_millis(100)).await;
        let started = Instant::now();
        let ready = tokio::time::timeout(BOUND, serving.service.ready()).await;
        let took = started.elapsed();
        serving.fault.set(Mode::Pass);
        let _ = background.await;
        assert!(matches!(ready, Ok(false)), "{ready:?} after {took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_store_does_not_wait_for_a_stuck_call() {
        let serving = serving().await;
        serving.fault.set(Mode::Hang);
        let hung = kill_switch_within(&serving, false, BOUND + SLACK).await;
        assert!(is_storage_unavailable(&hung));
        let Serving {
            service,
            store,
            fault,
            _directory,
            _follower,
        } = serving;
        _follower.abort();
        let started = Instant::now();
        drop(service);
        drop(store);
        assert!(
            started.elapsed() < BOUND + SLACK,
            "closing took {:?}",
            started.elapsed()
        );
        fault.set(Mode::Pass);
    }
}
