//! Everything a store holds, read out of one store and written into another: moving a
//! deployment from one node on sled to many on Redis (`ripcord store copy`), and putting
//! back into a Redis that lost its data what the nodes still serve.

use super::{
    Aggregate, AuditQuery, AuditRecord, EnvironmentRecord, EnvironmentState, IncidentQuery,
    IncidentRecord, KeyRecord, LookRecord, RampRecord, Store, StoreResult,
};

/// A store's contents. Audit entries and incidents keep their ids, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dump {
    pub environments: Vec<(EnvironmentRecord, EnvironmentState)>,
    pub keys: Vec<KeyRecord>,
    pub audit: Vec<AuditRecord>,
    pub ramps: Vec<RampRecord>,
    pub incidents: Vec<IncidentRecord>,
    /// The look history of each ramp's current generation (a flag keeps no other).
    pub looks: Vec<LookRecord>,
    /// The metric counts of each ramp's current generation (a ramp that starts clears the
    /// others), distinct units counted included.
    pub aggregates: Vec<Aggregate>,
    /// The markers of the units counted in `aggregates`, one
    /// [`UnitsSeen`](super::AggregateCounts::UnitsSeen) per stage and cohort: an import
    /// writes them as they are, next to the counts, so that a unit that reports again after
    /// the copy is not counted twice.
    pub unit_markers: Vec<Aggregate>,
    /// The batch ids remembered, with the time each was first merged: a batch an SDK sends
    /// again after the copy still counts once.
    pub batch_ids: Vec<(String, u64)>,
    /// Webhook deliveries not yet made: the target's nodes send them when they start, under
    /// the same ids.
    pub webhooks: Vec<super::PendingWebhook>,
}

impl Dump {
    /// What it holds, counted, for a person to check.
    pub fn summary(&self) -> String {
        format!(
            "{} environments ({} flags), {} keys, {} audit entries, {} ramps, {} incidents, \
             {} looks, {} aggregates ({} units marked), {} batch ids, {} pending webhooks",
            self.environments.len(),
            self.environments
                .iter()
                .map(|(_, state)| state.document.flags.len())
                .sum::<usize>(),
            self.keys.len(),
            self.audit.len(),
            self.ramps.len(),
            self.incidents.len(),
            self.looks.len(),
            self.aggregates.len(),
            self.unit_markers
                .iter()
                .map(|markers| match &markers.counts {
                    super::AggregateCounts::UnitsSeen(units) => units.len(),
                    _ => 0,
                })
                .sum::<usize>(),
            self.batch_ids.len(),
            self.webhooks.len()
        )
    }
}

/// Records read per page from the audit log and the incidents.
const PAGE: usize = 1000;

/// Reads everything `store` holds, through the same calls the server makes.
pub async fn export(store: &dyn Store) -> StoreResult<Dump> {
    let mut dump = Dump::default();
    for record in store.environments().await? {
        // Deleted between the listing and the load: nothing to copy.
        if let Some(state) = store.load_environment(&record.name).await? {
            dump.environments.push((record, state));
        }
    }
    dump.keys = store.keys().await?;
    let mut before = None;
    loop {
        let page = store
            .audit(&AuditQuery {
                before,
                limit: PAGE,
                ..AuditQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        dump.audit.extend(page);
    }
    dump.audit.reverse();
    let mut before = None;
    loop {
        let page = store
            .incidents(&IncidentQuery {
                before,
                limit: PAGE,
                ..IncidentQuery::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        dump.incidents.extend(page);
    }
    dump.incidents.reverse();
    dump.batch_ids = store.batch_ids().await?;
    dump.webhooks = store.pending_webhooks().await?;
    dump.ramps = store.ramps().await?;
    for ramp in &dump.ramps {
        let generation = ramp.state.generation;
        dump.looks.extend(
            store
                .looks(&ramp.environment, &ramp.flag, generation)
                .await?,
        );
        dump.aggregates.extend(
            store
                .aggregates(&ramp.environment, &ramp.flag, generation)
                .await?,
        );
        dump.unit_markers.extend(
            store
                .unit_markers(&ramp.environment, &ramp.flag, generation)
                .await?,
        );
    }
    Ok(dump)
}

/// Copies everything from `from` into `to`, which must be empty; returns what was copied.
pub async fn copy(from: &dyn Store, to: &dyn Store) -> StoreResult<Dump> {
    let dump = export(from).await?;
    to.import(dump.clone()).await?;
    Ok(dump)
}
