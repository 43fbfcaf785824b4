//! A store that fails on demand, for tests: it passes every call to a real store until told
//! to fail writes (as a full disk does) or to hang them (as sled does after some I/O errors,
//! blocking its thread). Reads always pass: sled serves them from its cache on a full disk.

use std::sync::{Arc, Condvar, Mutex};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{
    Aggregate, AuditQuery, AuditRecord, ChangeEvent, EnvironmentRecord, EnvironmentState,
    IncidentQuery, IncidentRecord, KeyRecord, LookRecord, Mutation, RampRecord, RampWrite, Store,
    StoreError, StoreResult,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Pass,
    /// Writes answer an I/O error at once.
    Fail,
    /// Writes block their thread until the mode changes.
    Hang,
    /// Writes panic, as a bug in a backend would.
    Panic,
}

/// The switch a test holds.
#[derive(Clone)]
pub(crate) struct Fault(Arc<(Mutex<Mode>, Condvar)>);

impl Fault {
    pub(crate) fn set(&self, mode: Mode) {
        let (current, changed) = &*self.0;
        *current.lock().unwrap() = mode;
        changed.notify_all();
    }

    /// What a write does now; blocks while writes hang.
    fn write(&self) -> StoreResult<()> {
        let (current, changed) = &*self.0;
        let mut mode = current.lock().unwrap();
        while *mode == Mode::Hang {
            mode = changed.wait(mode).unwrap();
        }
        match *mode {
            Mode::Fail => Err(StoreError::Backend(
                "IO error: No space left on device (os error 28)".to_string(),
            )),
            Mode::Panic => {
                drop(mode);
                panic!("a store write panicked");
            }
            _ => Ok(()),
        }
    }

    fn mode(&self) -> Mode {
        *self.0 .0.lock().unwrap()
    }
}

pub(crate) struct Faulty {
    inner: Arc<dyn Store>,
    fault: Fault,
}

impl Faulty {
    pub(crate) fn new(inner: Arc<dyn Store>) -> (Faulty, Fault) {
        let fault = Fault(Arc::new((Mutex::new(Mode::Pass), Condvar::new())));
        (
            Faulty {
                inner,
                fault: fault.clone(),
            },
            fault,
        )
    }
}

#[async_trait]
impl Store for Faulty {
    async fn environments(&self) -> StoreResult<Vec<EnvironmentRecord>> {
        self.inner.environments().await
    }

    async fn load_environment(&self, name: &str) -> StoreResult<Option<EnvironmentState>> {
        self.inner.load_environment(name).await
    }

    async fn create_environment(
        &self,
        name: &str,
        created_at: &str,
        audit: AuditRecord,
    ) -> StoreResult<EnvironmentRecord> {
        self.fault.write()?;
        self.inner.create_environment(name, created_at, audit).await
    }

    async fn delete_environment(&self, name: &str, audit: AuditRecord) -> StoreResult<()> {
        self.fault.write()?;
        self.inner.delete_environment(name, audit).await
    }

    async fn commit(
        &self,
        environment: &str,
        base_revision: u64,
        mutations: Vec<Mutation>,
        audit: Vec<AuditRecord>,
    ) -> StoreResult<u64> {
        self.fault.write()?;
        self.inner
            .commit(environment, base_revision, mutations, audit)
            .await
    }

    async fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.inner.keys().await
    }

    async fn put_key(&self, key: KeyRecord, audit: AuditRecord) -> StoreResult<()> {
        self.fault.write()?;
        self.inner.put_key(key, audit).await
    }

    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.inner.audit(query).await
    }

    async fn ramps(&self) -> StoreResult<Vec<RampRecord>> {
        self.inner.ramps().await
    }

    async fn ramp(&self, environment: &str, flag: &str) -> StoreResult<Option<RampRecord>> {
        self.inner.ramp(environment, flag).await
    }

    async fn put_ramp(&self, write: RampWrite) -> StoreResult<u64> {
        self.fault.write()?;
        self.inner.put_ramp(write).await
    }

    async fn pending_webhooks(&self) -> StoreResult<Vec<crate::store::PendingWebhook>> {
        self.inner.pending_webhooks().await
    }

    async fn webhook_done(&self, id: &str) -> StoreResult<()> {
        self.fault.write()?;
        self.inner.webhook_done(id).await
    }

    async fn reserve_incident_id(&self) -> StoreResult<u64> {
        self.fault.write()?;
        self.inner.reserve_incident_id().await
    }

    async fn lease(&self, holder: &str, ttl: std::time::Duration) -> StoreResult<Option<u64>> {
        self.fault.write()?;
        self.inner.lease(holder, ttl).await
    }

    async fn incidents(&self, query: &IncidentQuery) -> StoreResult<Vec<IncidentRecord>> {
        self.inner.incidents(query).await
    }

    async fn incident(&self, id: u64) -> StoreResult<Option<IncidentRecord>> {
        self.inner.incident(id).await
    }

    async fn merge_batch(
        &self,
        batch_id: &str,
        deltas: Vec<Aggregate>,
        now: u64,
    ) -> StoreResult<bool> {
        self.fault.write()?;
        self.inner.merge_batch(batch_id, deltas, now).await
    }

    async fn import(&self, dump: crate::store::copy::Dump) -> StoreResult<()> {
        self.inner.import(dump).await
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.subscribe()
    }

    async fn ready(&self) -> bool {
        // A real store's readiness check writes after a failure, and so fails with it.
        self.fault.mode() != Mode::Fail && self.inner.ready().await
    }

    async fn merge_aggregates(&self, deltas: Vec<Aggregate>) -> StoreResult<()> {
        self.fault.write()?;
        self.inner.merge_aggregates(deltas).await
    }

    async fn clear_aggregates(&self, environment: &str, flag: &str) -> StoreResult<()> {
        self.fault.write()?;
        self.inner.clear_aggregates(environment, flag).await
    }

    async fn add_look(&self, look: LookRecord, keep: usize) -> StoreResult<()> {
        self.fault.write()?;
        self.inner.add_look(look, keep).await
    }

    async fn looks(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<LookRecord>> {
        self.inner.looks(environment, flag, generation).await
    }

    async fn clear_looks(&self, environment: &str, flag: &str) -> StoreResult<()> {
        self.fault.write()?;
        self.inner.clear_looks(environment, flag).await
    }

    async fn aggregates(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        self.inner.aggregates(environment, flag, generation).await
    }

    async fn unit_markers(
        &self,
        environment: &str,
        flag: &str,
        generation: u64,
    ) -> StoreResult<Vec<Aggregate>> {
        self.inner.unit_markers(environment, flag, generation).await
    }

    async fn batch_ids(&self) -> StoreResult<Vec<(String, u64)>> {
        self.inner.batch_ids().await
    }
}
