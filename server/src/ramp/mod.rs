//! The ramp controller: walks each flag's ramp on a tick, advancing on evidence and pulling
//! the ripcord on a regression.
//!
//! The decisions are the engine's ([`ripcord_engine::ramp`], pure, with a virtual clock);
//! this module owns what they cost in the world: the persisted [`RampRecord`], the flag's
//! rollout and kill switch (changed through [`Service::change`], so every snapshot and stream
//! sees them), the audit log, incidents, webhooks, and telling metric ingestion which stage
//! counts. Manual operations go through the same path as the tick, one at a time.
//!
//! A decision that changes the flag is written ahead: the ramp record with the flag's
//! expected rollout (`pending`) is stored first, then the flag is changed, then `pending` is
//! cleared. A crash in between leaves a record that [`Controller::restore`] finishes, so
//! a kill the controller decided is never lost, and a person's later change to the flag is
//! never undone by a stale one.

pub mod events;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ripcord_engine::document::{Guard, Ramp};
use ripcord_engine::ramp::{
    self, Decision, GuardReport, RampError, RampState, Seconds, Settings, Status, Step,
};
use ripcord_engine::snapshot::parse_duration;
use ripcord_engine::Stage;
use serde::Serialize;

use crate::clock::{rfc3339, unix_now};
use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::service::{Change, Service};
use crate::store::{
    AuditRecord, FlagEffect, IncidentRecord, KillRecord, LookGuard, LookRecord, PendingWebhook,
    RampRecord, RampWrite, Scope, Store, StoreError,
};
use webhook::{WebhookEvent, Webhooks};

/// This process's name to the controller's lease: its id and a random part, so that a
/// restarted process (same id) is a new holder.
fn lease_holder() -> String {
    let mut random = [0u8; 8];
    // Without randomness the process id alone still tells live processes apart.
    let _ = getrandom::fill(&mut random);
    format!("{}-{}", std::process::id(), hex::encode(random))
}

/// The actor of every decision the controller takes on its own.
pub const CONTROLLER: &str = "ramp-controller";

pub use crate::ingest::{ActiveStage, Aggregates};

/// What the controller needs from metric ingestion ([`crate::ingest::Ingest`]; tests give
/// it observations of their own).
#[async_trait]
pub trait Evidence: Send + Sync + 'static {
    /// From now on, observations for this flag count for `active` (none: they are refused).
    fn activate(&self, environment: &str, flag: &str, active: Option<ActiveStage>);

    /// Every aggregate of `generation` of the flag's ramp.
    async fn collect(&self, environment: &str, flag: &str, generation: u64) -> Result<Aggregates>;

    /// The (environment, flag) pairs observations count for now.
    fn active_flags(&self) -> Vec<(String, String)>;
}

#[async_trait]
impl Evidence for crate::ingest::Ingest {
    fn activate(&self, environment: &str, flag: &str, active: Option<ActiveStage>) {
        self.set_active(environment, flag, active);
    }

    async fn collect(&self, environment: &str, flag: &str, generation: u64) -> Result<Aggregates> {
        self.aggregates(environment, flag, generation).await
    }

    fn active_flags(&self) -> Vec<(String, String)> {
        self.active_flags()
    }
}

/// A manual operation on a ramp, through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Pending → running; a completed, killed or aborted ramp starts again as a new
    /// generation with no data.
    Start,
    Pause,
    Resume,
    Advance,
    Abort,
}

impl Operation {
    pub fn parse(text: &str) -> Option<Operation> {
        Some(match text {
            "start" => Operation::Start,
            "pause" => Operation::Pause,
            "resume" => Operation::Resume,
            "advance" => Operation::Advance,
            "abort" => Operation::Abort,
            _ => return None,
        })
    }
}

pub struct Controller {
    service: Arc<Service>,
    store: Arc<dyn Store>,
    evidence: Arc<dyn Evidence>,
    webhooks: Arc<Webhooks>,
    /// One operation at a time: a tick and a manual operation on the same ramp must not
    /// both start from the same stored state.
    lock: tokio::sync::Mutex<()>,
    controller: Principal,
    events: Arc<events::Events>,
    /// The generation and minute of the last look kept per ramp, so that a look of a minute
    /// already kept is not written again. Empty after a restart: the first look then
    /// replaces the point of its minute, which is harmless.
    last_look: std::sync::Mutex<std::collections::HashMap<(String, String), (u64, u64)>>,
    /// Who this controller is to the lease: unique per process.
    holder: String,
    /// How long the lease lasts unless renewed (every tick renews it).
    lease_time: Duration,
    /// The fencing token of the lease while this controller holds it, as of the last tick;
    /// 0 while it does not (tokens start at 1).
    fence: std::sync::atomic::AtomicU64,
}

/// How long the ramp controller's lease lasts unless renewed, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Controller {
    pub fn new(
        service: Arc<Service>,
        evidence: Arc<dyn Evidence>,
        webhooks: Arc<Webhooks>,
    ) -> Controller {
        Controller {
            store: service.store(),
            service,
            evidence,
            webhooks,
            lock: tokio::sync::Mutex::new(()),
            controller: Principal {
                name: CONTROLLER.to_string(),
                scope: Scope::Admin,
                environment: None,
                event_channel: None,
            },
            events: Arc::new(events::Events::new(epoch())),
            last_look: std::sync::Mutex::default(),
            holder: lease_holder(),
            lease_time: DEFAULT_LEASE,
            fence: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The lease lasts `time` unless renewed; it must outlast the tick that renews it.
    pub fn with_lease(mut self, time: Duration) -> Controller {
        self.lease_time = time;
        self
    }

    /// The fencing token while this controller holds the lease.
    fn fence(&self) -> Option<u64> {
        Some(self.fence.load(std::sync::atomic::Ordering::SeqCst)).filter(|token| *token > 0)
    }

    fn set_fence(&self, token: Option<u64>) {
        self.fence
            .store(token.unwrap_or(0), std::sync::atomic::Ordering::SeqCst);
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// The live events of changes, ramp decisions and incidents.
    pub fn events(&self) -> &Arc<events::Events> {
        &self.events
    }

    /// At start: finishes decisions a crash interrupted and tells ingestion which stages
    /// count, so that a restarted server continues every ramp where it was.
    pub async fn restore(&self) -> Result<()> {
        let _one = self.lock.lock().await;
        // Deliveries a crash cut off, under their ids: a receiver that got one already
        // drops the repeat.
        for webhook in self.store.pending_webhooks().await? {
            self.webhooks.deliver(webhook, Arc::clone(&self.store));
        }
        for record in self.store.ramps().await? {
            let (environment, flag) = (record.environment.clone(), record.flag.clone());
            match self.finish(record).await {
                Ok(record) => self.activate(&record),
                // One ramp's trouble must not keep the server, and every other ramp, down:
                // its decision is finished on a later look.
                Err(error) => tracing::error!(
                    environment,
                    flag,
                    "could not finish the ramp's last decision: {error}"
                ),
            }
        }
        Ok(())
    }

    /// Runs [`Controller::tick`] every `every` until `stop` fires.
    pub fn spawn(
        self: &Arc<Self>,
        every: Duration,
        mut stop: crate::shutdown::Signal,
    ) -> tokio::task::JoinHandle<()> {
        let controller = Arc::clone(self);
        self.events.relay(self.service.subscribe(), stop.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop.stopped() => return,
                }
                if let Err(error) = controller.tick(unix_now()).await {
                    tracing::error!("ramp controller tick failed: {error}");
                }
            }
        })
    }

    /// One look at every running or paused ramp, by the one controller that holds the lease
    /// (on a shared store, every node has a controller and one decides). The others only
    /// keep their node's metric ingestion in step with the stored ramps, so that
    /// observations count whichever node they reach.
    pub async fn tick(&self, now: Seconds) -> Result<()> {
        let _one = self.lock.lock().await;
        let token = self.store.lease(&self.holder, self.lease_time).await;
        let token = match token {
            Ok(token) => token,
            Err(error) => {
                // Without the store nobody decides; this node must not go on as if it did.
                self.set_fence(None);
                return Err(error.into());
            }
        };
        if token != self.fence() {
            match token {
                Some(token) => tracing::info!(token, "this node's ramp controller took the lease"),
                None => tracing::info!("another node's ramp controller holds the lease"),
            }
        }
        self.set_fence(token);
        let records = self.store.ramps().await?;
        // A ramp whose record is gone (its environment was deleted) takes no observations.
        for (environment, flag) in self.evidence.active_flags() {
            let live = records.iter().any(|record| {
                record.environment == environment
                    && record.flag == flag
                    && matches!(record.state.status, Status::Running | Status::Paused)
            });
            if !live {
                self.evidence.activate(&environment, &flag, None);
            }
        }
        for record in records {
            if token.is_none() {
                self.activate(&record);
                continue;
            }
            if !matches!(record.state.status, Status::Running | Status::Paused) {
                continue;
            }
            let (environment, flag) = (record.environment.clone(), record.flag.clone());
            if let Err(error) = self.look(record, now).await {
                // One ramp's trouble (a deleted environment, say) must not stop the others.
                tracing::warn!(environment, flag, "ramp look failed: {error}");
            }
        }
        Ok(())
    }

    async fn look(&self, record: RampRecord, now: Seconds) -> Result<()> {
        let record = self.finish(record).await?;
        let ramp = self.ramp_block(&record.environment, &record.flag)?;
        // Confirmed on every look: a flag deleted (or stripped of its ramp block) since the
        // last one stops taking observations, and takes them again if it comes back.
        self.activate_with(&record, ramp.as_ref());
        let Some(ramp) = ramp else {
            return Ok(());
        };
        let collected = self
            .evidence
            .collect(&record.environment, &record.flag, record.state.generation)
            .await?;
        let observations = collected.observations(&ramp, record.state.stage);
        let step = ramp::step(&ramp, &record.state, &observations, now);
        let look = self.look_point(&ramp, &record, &step, now);
        let controller = self.controller.clone();
        self.apply(record, step, &controller, now).await?;
        if let Some(look) = look {
            let (environment, flag) = (look.environment.clone(), look.flag.clone());
            let minute = (look.generation, look.minute());
            // The chart misses a point; the ramp itself is not held up for it.
            match self.store.add_look(look, LOOKS_KEPT).await {
                Ok(()) => {
                    self.last_look().insert((environment, flag), minute);
                }
                Err(error) => {
                    tracing::warn!(environment, flag, "keeping the look failed: {error}");
                }
            }
        }
        Ok(())
    }

    /// The point of the look history this look makes, if it makes one: looks in a warm-up
    /// or on data that cannot be judged have no new evidence, and a minute already kept is
    /// kept once, unless this look decided something (the kill's evidence is the point that
    /// matters most).
    fn look_point(
        &self,
        ramp: &Ramp,
        record: &RampRecord,
        step: &Step,
        now: Seconds,
    ) -> Option<LookRecord> {
        let counts_from = record
            .state
            .stage_started_at
            .map(|started| started.saturating_add(warmup(ramp)));
        if counts_from.is_none_or(|from| now < from) {
            return None;
        }
        if step.decisions.iter().any(|decision| {
            matches!(
                decision,
                Decision::Hold {
                    hold: ramp::HoldReason::WarmUp | ramp::HoldReason::DataError,
                    ..
                }
            )
        }) {
            return None;
        }
        let decided = step
            .decisions
            .iter()
            .any(|decision| !matches!(decision, Decision::Hold { .. }));
        let minute = (record.state.generation, now / 60);
        let kept = self
            .last_look()
            .get(&(record.environment.clone(), record.flag.clone()))
            == Some(&minute);
        if kept && !decided {
            return None;
        }
        // The evidence as the look left it, before any decision moved the stage on.
        Some(LookRecord {
            environment: record.environment.clone(),
            flag: record.flag.clone(),
            generation: record.state.generation,
            time: now,
            stage: record.state.stage,
            percentage: record.state.percentage,
            status: step.state.status.to_string(),
            guards: step
                .state
                .guards
                .iter()
                .map(|guard| LookGuard {
                    metric: guard.metric.clone(),
                    evidence: guard.last.clone(),
                    error: guard.error.clone(),
                })
                .collect(),
        })
    }

    fn last_look(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, String), (u64, u64)>> {
        // A map of plain values: a panic elsewhere leaves it usable.
        self.last_look
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One generation's look history of a flag's ramp, oldest first: the current
    /// generation's, or `generation`'s. Empty for a ramp never started.
    pub async fn history(
        &self,
        environment: &str,
        flag: &str,
        generation: Option<u64>,
    ) -> Result<(u64, Vec<LookRecord>)> {
        // An unknown environment or flag is a 404, as for the status.
        self.service.flag(environment, flag)?;
        let current = self
            .store
            .ramp(environment, flag)
            .await?
            .map(|record| record.state.generation);
        let Some(generation) = generation.or(current) else {
            return Ok((0, Vec::new()));
        };
        Ok((
            generation,
            self.store.looks(environment, flag, generation).await?,
        ))
    }

    /// The flag's ramp block, if the flag still has one.
    fn ramp_block(&self, environment: &str, flag: &str) -> Result<Option<Ramp>> {
        match self.service.flag(environment, flag) {
            Ok((flag, _)) => Ok(flag.ramp),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A manual operation by `actor`; returns the ramp as it is after.
    pub async fn operate(
        &self,
        environment: &str,
        flag: &str,
        operation: Operation,
        reason: Option<&str>,
        actor: &Principal,
        now: Seconds,
    ) -> Result<RampRecord> {
        let _one = self.lock.lock().await;
        // An unknown environment or flag is a 404; a flag without a ramp block a conflict.
        let (stored_flag, _) = self.service.flag(environment, flag)?;
        let ramp = stored_flag.ramp.clone().ok_or_else(|| {
            Error::Conflict(format!(
                "flag `{flag}` in environment `{environment}` has no ramp block"
            ))
        })?;
        let stored = self.store.ramp(environment, flag).await?;
        let stored = match stored {
            Some(record) => Some(self.finish(record).await?),
            None => None,
        };
        let reason = reason.map(str::trim).filter(|reason| !reason.is_empty());
        let by = |what: &str| match reason {
            Some(reason) => format!("{what} by {}: {reason}", actor.name),
            None => format!("{what} by {}", actor.name),
        };
        let settings = Settings::default();
        let mut step = match (operation, &stored) {
            (Operation::Start, None) => ramp::start(&ramp, &ramp::new(&ramp, &settings, 1), now),
            (Operation::Start, Some(record)) if record.state.status == Status::Pending => {
                ramp::start(&ramp, &record.state, now)
            }
            (Operation::Start, Some(record)) => ramp::restart(&ramp, &settings, &record.state, now),
            // A ramp never started can be called off: the flag goes back to 0%.
            (Operation::Abort, None) => {
                ramp::abort(&ramp::new(&ramp, &settings, 1), &by("aborted"), now)
            }
            (_, None) => {
                return Err(Error::Conflict(format!(
                    "the ramp of flag `{flag}` has not started; start it first"
                )))
            }
            (Operation::Pause, Some(record)) => ramp::pause(&record.state, &by("paused"), now),
            (Operation::Resume, Some(record)) => ramp::resume(&record.state, &by("resumed"), now),
            (Operation::Advance, Some(record)) => {
                let reason = reason.ok_or_else(|| {
                    Error::bad_request(
                        "advancing by hand needs a reason, which the audit log keeps",
                        Some("reason".to_string()),
                    )
                })?;
                ramp::advance(
                    &ramp,
                    &record.state,
                    &format!("{reason} ({})", actor.name),
                    now,
                )
            }
            (Operation::Abort, Some(record)) => ramp::abort(&record.state, &by("aborted"), now),
        }
        .map_err(ramp_error)?;
        if operation == Operation::Start {
            // A start says which generation at which stage; the person's reason, when given,
            // is added so that the audit entry keeps it as it keeps a pause's.
            for decision in &mut step.decisions {
                if let Decision::Start { reason: text, .. } = decision {
                    *text = by(text.as_str());
                }
            }
            // Nothing counts for the flag until the new generation is active, not even for
            // a ramp of an environment deleted under it that ingestion still knew.
            self.evidence.activate(environment, flag, None);
            // A new generation starts from no data. Generations count from 1 again for a
            // flag or environment deleted and created anew, so whatever aggregates an
            // earlier one left under this flag are removed before ingestion accepts any.
            self.store.clear_aggregates(environment, flag).await?;
            // Its charts too: a flag keeps the look history of one generation.
            self.store.clear_looks(environment, flag).await?;
        }
        let record = stored.unwrap_or_else(|| RampRecord {
            environment: environment.to_string(),
            flag: flag.to_string(),
            state: step.state.clone(),
            pending: None,
            hold: None,
            kill: None,
            alert: None,
            version: 0,
        });
        self.apply(record, step, actor, now).await
    }

    /// Persists `step` and carries out its decisions.
    async fn apply(
        &self,
        mut record: RampRecord,
        step: Step,
        actor: &Principal,
        now: Seconds,
    ) -> Result<RampRecord> {
        let time = rfc3339(now);
        let before = summary(&record.state);
        let generation_changed = record.state.generation != step.state.generation;
        record.state = step.state;
        if generation_changed {
            // A new generation shares nothing with the old one but the flag.
            record.kill = None;
            record.alert = None;
            record.hold = None;
        }
        let after = summary(&record.state);
        let mut audit = Vec::new();
        let mut effect = None;
        let mut incident = None;
        let mut events = Vec::new();
        for decision in &step.decisions {
            if let Decision::Hold { hold, reason } = decision {
                // A hold repeats every tick: the log keeps the changes of it.
                if record.hold == Some(*hold) {
                    continue;
                }
                record.hold = Some(*hold);
                if *hold == ramp::HoldReason::NoData {
                    events.push((WebhookEvent::Alert, Some("no_data"), Some(reason.clone())));
                }
            } else if !matches!(decision, Decision::Alert { .. }) {
                record.hold = None;
            }
            match decision {
                Decision::Start { percentage, .. } => {
                    effect = Some(FlagEffect {
                        percentage: *percentage,
                        // Starting means serving: a ramp restarted after a kill turns the
                        // flag back on at its first stage.
                        enabled: Some(true),
                        base_revision: None,
                    });
                    events.push((WebhookEvent::Start, None, None));
                }
                Decision::Advance { percentage, .. } => {
                    effect = Some(FlagEffect {
                        percentage: *percentage,
                        enabled: None,
                        base_revision: None,
                    });
                    events.push((WebhookEvent::Advance, None, None));
                }
                Decision::Complete { percentage, .. } => {
                    effect = Some(FlagEffect {
                        percentage: *percentage,
                        enabled: None,
                        base_revision: None,
                    });
                    events.push((WebhookEvent::Complete, None, None));
                }
                Decision::Pause {
                    pause,
                    reason,
                    evidence,
                } => {
                    match pause {
                        ramp::PauseReason::Regression => {
                            incident = Some(("pause", reason.clone(), evidence.clone()));
                        }
                        ramp::PauseReason::Inconclusive
                        | ramp::PauseReason::InvalidConfig
                        | ramp::PauseReason::SampleRatioMismatch => {
                            record.alert = Some(reason.clone());
                        }
                        ramp::PauseReason::Manual => {}
                    }
                    events.push((WebhookEvent::Pause, None, None));
                }
                Decision::Resume { .. } => record.alert = None,
                Decision::Alert { alert, reason } => {
                    // Nothing waits for a person: the audit log, the webhook and the status's
                    // srm block carry it, not `alert`, which a resume would have to clear.
                    events.push((
                        WebhookEvent::Alert,
                        Some(alert.as_str()),
                        Some(reason.clone()),
                    ));
                }
                Decision::Kill {
                    reason, evidence, ..
                } => {
                    effect = Some(FlagEffect {
                        percentage: 0.0,
                        enabled: Some(false),
                        base_revision: None,
                    });
                    incident = Some(("kill", reason.clone(), evidence.clone()));
                    events.push((WebhookEvent::Kill, None, None));
                }
                Decision::Abort { .. } => {
                    effect = Some(FlagEffect {
                        percentage: 0.0,
                        enabled: None,
                        base_revision: None,
                    });
                    record.alert = None;
                    events.push((WebhookEvent::Abort, None, None));
                }
                Decision::Hold { .. } => {}
            }
            audit.push(AuditRecord {
                id: 0,
                time: time.clone(),
                actor: actor.name.clone(),
                environment: Some(record.environment.clone()),
                action: format!("ramp.{}", decision.action()),
                target: record.flag.clone(),
                operation: "ramp".to_string(),
                before: Some(before.clone()),
                after: Some(decision_detail(decision, &after)),
                revision: None,
                reason: Some(decision.reason().to_string()),
            });
        }
        let mut incident_id = None;
        let mut incident_action = None;
        let mut incident_reason = None;
        let mut incident_record = None;
        if let Some((action, reason, evidence)) = incident {
            incident_action = Some(action);
            incident_reason = Some(reason.clone());
            let id = self.store.reserve_incident_id().await?;
            incident_record = Some(IncidentRecord {
                id,
                time: time.clone(),
                environment: record.environment.clone(),
                flag: record.flag.clone(),
                generation: record.state.generation,
                action: action.to_string(),
                stage: record.state.stage,
                percentage: percentage_before(&step.decisions, &record.state),
                reason,
                evidence,
                srm: record.state.srm.clone(),
            });
            incident_id = Some(id);
            if action == "kill" {
                record.kill = Some(KillRecord {
                    incident: id,
                    revision: None,
                    time: time.clone(),
                });
            }
        }
        let base_revision = self
            .service
            .flag(&record.environment, &record.flag)
            .ok()
            .map(|(_, revision)| revision);
        record.pending = effect.map(|effect| FlagEffect {
            base_revision,
            ..effect
        });
        let mut announced: Vec<events::AdminEvent> = audit
            .iter()
            .map(|entry| events::AdminEvent::Ramp {
                environment: record.environment.clone(),
                flag: record.flag.clone(),
                action: entry
                    .action
                    .strip_prefix("ramp.")
                    .unwrap_or(&entry.action)
                    .to_string(),
                actor: entry.actor.clone(),
                reason: entry.reason.clone().unwrap_or_default(),
                generation: record.state.generation,
                status: record.state.status.to_string(),
                stage: u32::from(record.state.stage),
                percentage: record.state.percentage,
                time: time.clone(),
            })
            .collect();
        let reason = step
            .decisions
            .iter()
            .rev()
            .find(|decision| !matches!(decision, Decision::Hold { .. }))
            .map(|decision| decision.reason().to_string());
        // Stored with the decision, so that a crash before they are sent does not lose them.
        let webhooks: Vec<PendingWebhook> = events
            .iter()
            .filter_map(|(event, alert, own_reason)| {
                let mut payload = webhook::Payload::new(
                    *event,
                    &record,
                    own_reason
                        .clone()
                        .or_else(|| reason.clone())
                        .unwrap_or_default(),
                    incident_id,
                    &time,
                );
                payload.alert = *alert;
                self.webhooks.pending(&payload)
            })
            .collect();
        // The controller's own decisions are fenced: once another node has taken the lease,
        // this one's are refused, with their incident, so that a decision is taken once.
        let fence = if actor.name == CONTROLLER {
            Some(self.fence().ok_or(StoreError::LeaseLost)?)
        } else {
            None
        };
        record.version = self
            .store
            .put_ramp(RampWrite {
                record: record.clone(),
                audit,
                incident: incident_record,
                fence,
                webhooks: webhooks.clone(),
            })
            .await?;
        self.activate(&record);
        if let (Some(id), Some(kill_or_pause)) = (incident_id, incident_action) {
            announced.push(events::AdminEvent::Incident {
                id,
                environment: record.environment.clone(),
                flag: record.flag.clone(),
                action: kill_or_pause.to_string(),
                reason: incident_reason.unwrap_or_default(),
                time: time.clone(),
            });
        }
        // Stored, so announced: a client that reads the ramp on this event finds it so.
        for event in announced {
            self.events.publish(event);
        }
        // The decision is stored: its webhooks go out even if carrying it over to the flag
        // fails now (a later look finishes that).
        let finished = self.finish(record.clone()).await;
        for webhook in webhooks {
            self.webhooks.deliver(webhook, Arc::clone(&self.store));
        }
        finished
    }

    /// Carries a written-ahead decision over to the flag, then clears it.
    async fn finish(&self, mut record: RampRecord) -> Result<RampRecord> {
        let Some(effect) = record.pending else {
            return Ok(record);
        };
        let flag = record.flag.clone();
        let current = match self.service.flag(&record.environment, &flag) {
            Ok((_, revision)) => Some(revision),
            Err(Error::NotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        if let (Some(base), Some(current)) = (effect.base_revision, current) {
            if current > base {
                // Carried out before the record could say so, or overtaken by a person's
                // change: applying it again would undo whatever came after.
                if let Some(kill) = record.kill.as_mut() {
                    kill.revision.get_or_insert(current);
                }
                record.pending = None;
                record.version = self.put_record(&record).await?;
                return Ok(record);
            }
        }
        let reason = format!(
            "ramp generation {}: {} at {}%",
            record.state.generation, record.state.status, effect.percentage
        );
        let changed = self
            .service
            .change(
                Change {
                    environment: &record.environment,
                    actor: &self.controller,
                    operation: "ramp",
                    reason: Some(&reason),
                },
                |document| {
                    let Some(stored) = document.flags.get_mut(&flag) else {
                        return Err(Error::NotFound {
                            what: "flag",
                            key: flag.clone(),
                        });
                    };
                    if let Some(rollout) = stored.rollout.as_mut() {
                        rollout.percentage = effect.percentage;
                    }
                    if let Some(enabled) = effect.enabled {
                        stored.enabled = Some(enabled);
                    }
                    Ok(())
                },
            )
            .await;
        match changed {
            Ok(revision) => {
                if let Some(kill) = record.kill.as_mut() {
                    kill.revision.get_or_insert(revision);
                }
            }
            // The flag or its environment is gone: nothing is left to change.
            Err(Error::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        record.pending = None;
        record.version = self.put_record(&record).await?;
        Ok(record)
    }

    /// Writes the record alone, if nobody wrote it since it was read.
    async fn put_record(&self, record: &RampRecord) -> Result<u64> {
        Ok(self
            .store
            .put_ramp(RampWrite {
                record: record.clone(),
                audit: Vec::new(),
                incident: None,
                fence: None,
                webhooks: Vec::new(),
            })
            .await?)
    }

    fn activate(&self, record: &RampRecord) {
        let ramp = self
            .ramp_block(&record.environment, &record.flag)
            .ok()
            .flatten();
        self.activate_with(record, ramp.as_ref());
    }

    /// [`Controller::activate`] with the flag's ramp block already at hand.
    fn activate_with(&self, record: &RampRecord, ramp: Option<&Ramp>) {
        let active = match record.state.status {
            Status::Running | Status::Paused => ramp.map(|ramp| ActiveStage {
                generation: record.state.generation,
                stage: record.state.stage,
                counts_from: record
                    .state
                    .stage_started_at
                    .unwrap_or(0)
                    .saturating_add(warmup(ramp)),
                metrics: ramp
                    .guards
                    .iter()
                    .map(|guard| (guard.metric.clone(), guard.kind))
                    .collect(),
            }),
            _ => None,
        };
        self.evidence
            .activate(&record.environment, &record.flag, active);
    }

    /// The ramp's state as the status API shows it.
    pub async fn status(&self, environment: &str, flag: &str, now: Seconds) -> Result<RampStatus> {
        let (stored_flag, _) = self.service.flag(environment, flag)?;
        let record = self.store.ramp(environment, flag).await?;
        let Some(ramp) = stored_flag.ramp.clone() else {
            if record.is_none() {
                return Err(Error::NotFound {
                    what: "ramp of flag",
                    key: flag.to_string(),
                });
            }
            return Err(Error::Conflict(format!(
                "flag `{flag}` no longer has a ramp block"
            )));
        };
        let state = stored_or_pending(record.as_ref(), &ramp);
        let collected = if matches!(state.status, Status::Pending) {
            None
        } else {
            // The status still answers when the aggregates cannot be read; the guards then
            // show no observations.
            self.evidence
                .collect(environment, flag, state.generation)
                .await
                .ok()
        };
        let counts_from = state
            .stage_started_at
            .map(|started| started.saturating_add(warmup(&ramp)));
        let minutes_counted = counts_from
            .filter(|from| now > *from)
            .map(|from| (now - from) as f64 / 60.0);
        let guards = ramp
            .guards
            .iter()
            .map(|guard| {
                let guard_state = state.guards.iter().find(|g| g.metric == guard.metric);
                let evidence = guard_state.and_then(|g| g.last.clone());
                let (treatment, control) = collected.as_ref().map_or((0, 0), |collected| {
                    collected.totals(&guard.metric, state.stage)
                });
                let stage_total = treatment.saturating_add(control);
                let per_minute = minutes_counted
                    .filter(|minutes| *minutes > 0.0 && stage_total > 0)
                    .map(|minutes| stage_total as f64 / minutes);
                // The statistics' estimate, or the stage's own burn-in where that is
                // further away: a stage advances only once both are met.
                let stage_needs = if matches!(state.status, Status::Running | Status::Paused) {
                    ramp::stage_observations_needed(guard, state.percentage, treatment, control)
                } else {
                    0
                };
                let more_observations = match evidence.as_ref().and_then(|e| e.more_observations) {
                    Some(more) => Some(more.max(stage_needs)),
                    None => (stage_needs > 0).then_some(stage_needs),
                };
                let more_minutes = more_observations
                    .zip(per_minute)
                    .map(|(more, rate)| more as f64 / rate);
                GuardStatus {
                    guard: guard.clone(),
                    verdict: evidence.as_ref().map(|evidence| evidence.verdict),
                    stage_observations: stage_total,
                    observations_per_minute: per_minute,
                    more_observations,
                    more_minutes,
                    evidence,
                    error: guard_state.and_then(|g| g.error.clone()),
                }
            })
            .collect();
        let reach = match record.as_ref().and_then(|record| record.kill.as_ref()) {
            Some(KillRecord {
                revision: Some(revision),
                ..
            }) => Some(self.service.kill_reach(environment, *revision, now).await),
            _ => None,
        };
        Ok(RampStatus {
            environment: environment.to_string(),
            flag: flag.to_string(),
            generation: state.generation,
            status: state.status,
            pause_reason: state.pause_reason,
            stage: state.stage,
            stages: ramp.stages.clone(),
            percentage: state.percentage,
            started_at: state.started_at.map(rfc3339),
            stage_started_at: state.stage_started_at.map(rfc3339),
            counts_from: counts_from.map(rfc3339),
            ended_at: state.ended_at.map(rfc3339),
            hold: record.as_ref().and_then(|record| record.hold),
            alert: record.as_ref().and_then(|record| record.alert.clone()),
            srm: state.srm.clone(),
            last_observation_at: state.observed_at.map(rfc3339),
            // A generation stored before ramps had a control compared with as many units.
            control: state
                .control
                .unwrap_or(ripcord_engine::document::Control::Equal),
            guards,
            kill: record.as_ref().and_then(|record| record.kill.clone()),
            reach,
            webhooks: self.webhooks.status(environment, flag),
            applied: record
                .as_ref()
                .is_none_or(|record| record.pending.is_none()),
        })
    }
}

/// This process's start in milliseconds: the first part of every live event's id, so that a
/// client resuming with an id from before a restart is told to start over.
fn epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Points of look history kept per ramp generation: a day at one a minute; a longer ramp's
/// older looks are thinned.
pub const LOOKS_KEPT: usize = 1440;

fn warmup(ramp: &Ramp) -> Seconds {
    ramp.warmup
        .as_deref()
        .and_then(parse_duration)
        .map_or(0, |duration| duration.as_secs())
}

/// The percentage a decision found the flag at: a kill's report names where it happened,
/// not the 0% it left.
fn percentage_before(decisions: &[Decision], state: &RampState) -> f64 {
    decisions
        .iter()
        .find_map(|decision| match decision {
            Decision::Kill { percentage, .. } => Some(*percentage),
            _ => None,
        })
        .unwrap_or(state.percentage)
}

fn ramp_error(error: RampError) -> Error {
    match error {
        RampError::NotAllowed { .. } => Error::Conflict(error.to_string()),
        RampError::ReasonRequired(_) => {
            Error::bad_request(error.to_string(), Some("reason".into()))
        }
        RampError::InvalidConfig(_) => Error::Conflict(error.to_string()),
    }
}

fn summary(state: &RampState) -> serde_json::Value {
    serde_json::json!({
        "generation": state.generation,
        "status": state.status,
        "stage": state.stage,
        "percentage": state.percentage,
    })
}

/// The audit entry's `after`: the state it left, and the decision's own fields (the
/// evidence of a kill or a pause among them).
fn decision_detail(decision: &Decision, after: &serde_json::Value) -> serde_json::Value {
    let mut detail = after.clone();
    if let (Some(object), Ok(serde_json::Value::Object(fields))) =
        (detail.as_object_mut(), serde_json::to_value(decision))
    {
        object.insert("decision".to_string(), serde_json::Value::Object(fields));
    }
    detail
}

/// The ramp's state as stored, or, for a ramp never started, pending at its first stage:
/// what the status and the summaries of an environment's ramps show.
pub fn stored_or_pending(record: Option<&RampRecord>, ramp: &Ramp) -> RampState {
    match record {
        Some(record) => record.state.clone(),
        None => ramp::new(ramp, &Settings::default(), 1),
    }
}

/// `GET /api/v1/environments/{env}/flags/{key}/ramp`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RampStatus {
    pub environment: String,
    pub flag: String,
    /// Starts at 1; each restart after a kill, abort or completion is the next one.
    pub generation: u64,
    /// pending, running, paused, completed, killed or aborted.
    #[schema(value_type = String)]
    pub status: Status,
    /// inconclusive, regression, manual, invalid_config or sample_ratio_mismatch, while
    /// paused.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<ramp::PauseReason>,
    /// Index into `stages`.
    #[schema(value_type = u32)]
    pub stage: Stage,
    pub stages: Vec<f64>,
    /// The rollout percentage the ramp has the flag at.
    pub percentage: f64,
    pub started_at: Option<String>,
    pub stage_started_at: Option<String>,
    /// When the stage's warm-up ends: observations count from then.
    pub counts_from: Option<String>,
    pub ended_at: Option<String>,
    /// Why the running ramp is not moving: warm_up, min_duration, stage_samples,
    /// sample_ratio (the cohorts' counts favour a sample-ratio mismatch), inconclusive,
    /// no_guards, data_error, or no_data (an alert: no observation for `max_silence`).
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<ramp::HoldReason>,
    /// Set while the ramp waits for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The last look's sample-ratio check: on the distinct reporting units (`counts`:
    /// `units`, `metric`: `units`) when observations name their unit, else on the guard
    /// metric whose observations are furthest from the ratio the bands imply (`counts`:
    /// `observations`). `verdict` (OK or MISMATCH), `treatment` and `control` counts,
    /// `expected_ratio` and `observed_ratio` (treatment : control), `p_value` (always
    /// valid), `log_lambda` (of the stage furthest from its ratio), `max_log_lambda`,
    /// `threshold` (ln(S·M/alpha)). Pooled over the stages; each stage is judged on its own.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srm: Option<ramp::SrmReport>,
    /// When the current stage's count of observations last grew, as of the last look.
    pub last_observation_at: Option<String>,
    /// Who the treatment is compared with in this generation: `rest`, `equal` or a multiple,
    /// as the ramp block said when it started (before a start, as it says now).
    #[schema(value_type = ControlSchema)]
    pub control: ripcord_engine::document::Control,
    pub guards: Vec<GuardStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillRecord>,
    /// After a kill: of the instances active in the last hour, how many have fetched it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<crate::reach::Reach>,
    pub webhooks: webhook::WebhookStatus,
    /// False while a decision is written but not yet carried over to the flag.
    pub applied: bool,
}

/// The control of a ramp: a design's name or a multiple of the treatment. Written by hand,
/// like the tolerance: the number carries limits a derived enum cannot put on a variant.
/// The flag document's schema and the ramp's status both use it.
pub struct ControlSchema;

impl utoipa::PartialSchema for ControlSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .description(Some(
                "Which units the treatment is compared with: `rest` (every unit outside the \
                 treatment, the default), `equal` (as many units as the treatment), or a \
                 number k with at most three decimals (k times as many, capped by what is \
                 left).",
            ))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["rest", "equal"])),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.001))
                    .maximum(Some(1000.0)),
            )
            .into()
    }
}

impl utoipa::ToSchema for ControlSchema {}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GuardStatus {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub guard: Guard,
    /// REGRESSION, PASS or INCONCLUSIVE at the last look; absent before the first.
    #[schema(value_type = Option<String>)]
    pub verdict: Option<ripcord_engine::stats::Verdict>,
    /// Observations counted in the current stage, both cohorts.
    pub stage_observations: u64,
    /// The current stage's observations per minute since its warm-up ended.
    pub observations_per_minute: Option<f64>,
    /// How many more observations (both cohorts) the stage needs to decide: the statistics'
    /// estimate, or what the stage still lacks of its own burn-in if that is more.
    pub more_observations: Option<u64>,
    /// The same at the current rate, in minutes.
    pub more_minutes: Option<f64>,
    /// Samples per cohort, medians or rates, U and z, the sequential p-value and its
    /// threshold, the effect with its interval, the tolerance.
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<ripcord_engine::stats::GuardEvidence>,
    /// Why the last look could not judge.
    pub error: Option<String>,
}

/// Incidents keep the guards' reports; re-exported for the HTTP layer's schema.
pub type Evidences = Vec<GuardReport>;

#[cfg(test)]
mod tests;
