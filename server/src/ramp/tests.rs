//! The controller on a real service and sled store, with a virtual clock and observations
//! handed in directly: what the tick does to the flag, the audit log, incidents and the
//! stage ingestion counts for, and how a crash between deciding and changing the flag heals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ripcord_engine::ramp::Status;
use ripcord_engine::stats::Proportion;
use ripcord_engine::Document;
use ripcord_engine::Stage;

use super::webhook::Webhooks;
use super::{ActiveStage, Aggregates, Controller, Evidence, Operation, CONTROLLER};
use crate::error::Result;
use crate::ingest::{AggregateData, StageAggregate};
use crate::principal::Principal;
use crate::service::{Change, Service};
use crate::store::{AuditQuery, FlagEffect, IncidentQuery, Scope};

const DOCUMENT: &str = r#"
flags:
  checkout:
    type: boolean
    variants: {"on": true, "off": false}
    default_variant: "off"
    rollout: {percentage: 0, split: [{variant: "on", weight: 1}]}
    ramp:
      stages: [10, 50, 100]
      min_stage_duration: 10m
      warmup: 1m
      # The observations below come in cohorts of equal size.
      control: equal
      guards:
        - {metric: errors, category: stability, kind: rate, better: lower, tolerance: 0.01, min_samples: 500}
"#;

/// Observations by flag, per stage, as ingestion would aggregate them.
#[derive(Default)]
struct FakeEvidence {
    rates: Mutex<HashMap<String, Vec<(Proportion, Proportion)>>>,
    active: Mutex<HashMap<String, Option<ActiveStage>>>,
}

impl FakeEvidence {
    fn set(&self, flag: &str, stage: usize, treatment: (u64, u64), control: (u64, u64)) {
        let mut rates = self.rates.lock().unwrap();
        let stages = rates.entry(flag.to_string()).or_default();
        if stages.len() <= stage {
            stages.resize(stage + 1, Default::default());
        }
        stages[stage] = (
            Proportion {
                events: treatment.0,
                trials: treatment.1,
            },
            Proportion {
                events: control.0,
                trials: control.1,
            },
        );
    }

    fn active(&self, flag: &str) -> Option<ActiveStage> {
        self.active.lock().unwrap().get(flag).cloned().flatten()
    }
}

#[async_trait]
impl Evidence for FakeEvidence {
    fn activate(&self, _environment: &str, flag: &str, active: Option<ActiveStage>) {
        self.active.lock().unwrap().insert(flag.to_string(), active);
    }

    fn active_flags(&self) -> Vec<(String, String)> {
        let active = self.active.lock().unwrap();
        active
            .iter()
            .filter(|(_, stage)| stage.is_some())
            .map(|(flag, _)| ("default".to_string(), flag.clone()))
            .collect()
    }

    async fn collect(&self, _environment: &str, flag: &str, generation: u64) -> Result<Aggregates> {
        let rates = self.rates.lock().unwrap();
        let stages = rates.get(flag).cloned().unwrap_or_default();
        // Every flag of these tests guards the one metric `errors`.
        let data = (0..)
            .map(Stage::new)
            .zip(&stages)
            .map(|(stage, (treatment, control))| StageAggregate {
                metric: "errors".to_string(),
                stage,
                data: AggregateData::Rate {
                    treatment: *treatment,
                    control: *control,
                },
            })
            .collect();
        Ok(Aggregates::new(generation, data))
    }
}

struct Setup {
    _directory: tempfile::TempDir,
    service: Arc<Service>,
    evidence: Arc<FakeEvidence>,
    controller: Controller,
    person: Principal,
}

/// Creates `default` with [`DOCUMENT`] in it, as `person`.
async fn import_default(service: &Service, person: &Principal) {
    service.create_environment("default", person).await.unwrap();
    let document = Document::from_text(DOCUMENT).unwrap();
    service
        .change(
            Change {
                environment: "default",
                actor: person,
                operation: "import",
                reason: None,
            },
            |current| {
                *current = document.clone();
                Ok(())
            },
        )
        .await
        .unwrap();
}

async fn setup() -> Setup {
    let directory = tempfile::tempdir().unwrap();
    let store = crate::store::sled::SledStore::open(directory.path()).unwrap();
    let service = Service::open(Arc::new(store), ripcord_engine::Limits::default(), None)
        .await
        .unwrap();
    let person = Principal {
        name: "release-engineer".to_string(),
        scope: Scope::Admin,
        environment: None,
        event_channel: None,
    };
    import_default(&service, &person).await;
    let evidence = Arc::new(FakeEvidence::default());
    let controller = Controller::new(
        Arc::clone(&service),
        Arc::clone(&evidence) as Arc<dyn Evidence>,
        Arc::new(Webhooks::none()),
    );
    Setup {
        _directory: directory,
        service,
        evidence,
        controller,
        person,
    }
}

const T0: u64 = 1_800_000_000;
const MINUTE: u64 = 60;

/// Starts the ramp of `checkout` at T0, by hand.
async fn start(controller: &Controller, person: &Principal) {
    controller
        .operate("default", "checkout", Operation::Start, None, person, T0)
        .await
        .unwrap();
}

fn percentage(service: &Service) -> f64 {
    let (flag, _) = service.flag("default", "checkout").unwrap();
    flag.rollout.unwrap().percentage
}

async fn ramp_actions(service: &Service) -> Vec<(String, String)> {
    let mut entries = service
        .audit(&AuditQuery {
            environment: Some("default".to_string()),
            flag: Some("checkout".to_string()),
            before: None,
            limit: 1000,
        })
        .await
        .unwrap();
    entries.reverse();
    entries
        .into_iter()
        .filter(|entry| entry.action.starts_with("ramp."))
        .map(|entry| (entry.action, entry.actor))
        .collect()
}

#[tokio::test]
async fn a_regression_kills_the_flag_records_an_incident_and_stops_ingestion() {
    let setup = setup().await;
    let Setup {
        service,
        evidence,
        controller,
        person,
        ..
    } = &setup;
    start(controller, person).await;
    assert_eq!(percentage(service), 10.0);
    let active = evidence
        .active("checkout")
        .expect("ingestion counts stage 0");
    assert_eq!(active.stage, Stage::FIRST);
    assert_eq!(
        active.counts_from,
        T0 + MINUTE,
        "counting starts after the warm-up"
    );

    // In the warm-up the controller does not look, whatever the data.
    evidence.set("checkout", 0, (600, 2000), (20, 2000));
    controller.tick(T0 + 30).await.unwrap();
    assert_eq!(percentage(service), 10.0);

    controller.tick(T0 + 2 * MINUTE).await.unwrap();
    let record = service
        .store()
        .ramp("default", "checkout")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state.status, Status::Killed);
    assert_eq!(record.pending, None, "the kill reached the flag");
    let (flag, _) = service.flag("default", "checkout").unwrap();
    assert_eq!(flag.enabled, Some(false));
    assert_eq!(flag.rollout.unwrap().percentage, 0.0);
    assert_eq!(
        evidence.active("checkout"),
        None,
        "a killed ramp takes no more data"
    );

    let incidents = service
        .store()
        .incidents(&IncidentQuery {
            limit: 10,
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    let incident = &incidents[0];
    assert_eq!(
        (incident.action.as_str(), incident.stage),
        ("kill", Stage::FIRST)
    );
    assert_eq!(
        incident.percentage, 10.0,
        "the stage it happened at, not the 0% it left"
    );
    let kill = record.kill.expect("the kill is recorded on the ramp");
    assert_eq!(kill.incident, incident.id);
    assert_eq!(
        kill.revision,
        Some(service.environment("default").unwrap().revision)
    );

    let actions = ramp_actions(service).await;
    let expected = [
        ("ramp.start", "release-engineer"),
        ("ramp.hold", CONTROLLER),
        ("ramp.kill", CONTROLLER),
    ];
    assert_eq!(
        actions,
        expected.map(|(action, actor)| (action.to_string(), actor.to_string()))
    );

    // The live events tell the same story, the incident by its id.
    let events = controller.events().after(0).expect("all kept");
    let told: Vec<_> = events
        .iter()
        .map(|numbered| match &*numbered.event {
            super::events::AdminEvent::Ramp { action, actor, .. } => {
                format!("ramp {action} by {actor}")
            }
            super::events::AdminEvent::Incident { id, action, .. } => {
                assert_eq!(*id, incident.id);
                format!("incident {action}")
            }
            other => panic!("not a ramp's event: {other:?}"),
        })
        .collect();
    assert_eq!(
        told,
        [
            "ramp start by release-engineer".to_string(),
            format!("ramp hold by {CONTROLLER}"),
            format!("ramp kill by {CONTROLLER}"),
            "incident kill".to_string(),
        ]
    );
}

#[tokio::test]
async fn holds_are_audited_when_they_change_and_passing_stages_advance_to_completion() {
    let setup = setup().await;
    let Setup {
        service,
        evidence,
        controller,
        person,
        ..
    } = &setup;
    start(controller, person).await;
    evidence.set("checkout", 0, (20, 5000), (20, 5000));
    // Passing after the warm-up, but the stage has not lasted 10 minutes: one hold entry
    // however many ticks.
    for minute in 2..10 {
        controller.tick(T0 + minute * MINUTE).await.unwrap();
    }
    assert_eq!(percentage(service), 10.0);
    controller.tick(T0 + 10 * MINUTE).await.unwrap();
    assert_eq!(percentage(service), 50.0);
    let active = evidence.active("checkout").unwrap();
    assert_eq!(
        (active.stage, active.counts_from),
        (Stage::new(1), T0 + 11 * MINUTE),
        "ingestion moves to the new stage with its own warm-up"
    );
    evidence.set("checkout", 1, (100, 25_000), (100, 25_000));
    // Stage 2's warm-up, then its minimum duration: two holds, one entry each.
    controller.tick(T0 + 10 * MINUTE + 30).await.unwrap();
    controller.tick(T0 + 15 * MINUTE).await.unwrap();
    controller.tick(T0 + 16 * MINUTE).await.unwrap();
    controller.tick(T0 + 20 * MINUTE).await.unwrap();
    assert_eq!(percentage(service), 100.0);
    controller.tick(T0 + 30 * MINUTE).await.unwrap();
    let record = service
        .store()
        .ramp("default", "checkout")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state.status, Status::Completed);
    assert_eq!(percentage(service), 100.0);

    let actions: Vec<String> = ramp_actions(service)
        .await
        .into_iter()
        .map(|(action, _)| action)
        .collect();
    assert_eq!(
        actions,
        [
            "ramp.start",
            "ramp.hold",
            "ramp.advance",
            "ramp.hold",
            "ramp.hold",
            "ramp.advance",
            "ramp.complete"
        ]
    );
}

#[tokio::test]
async fn a_decision_cut_off_by_a_crash_is_finished_on_restore() {
    let setup = setup().await;
    let Setup {
        service,
        controller,
        person,
        ..
    } = &setup;
    start(controller, person).await;
    // What a crash after writing a kill ahead, before changing the flag, leaves behind.
    let store = service.store();
    let mut record = store.ramp("default", "checkout").await.unwrap().unwrap();
    record.state.status = Status::Killed;
    record.state.percentage = 0.0;
    let (_, flag_revision) = service.flag("default", "checkout").unwrap();
    record.pending = Some(FlagEffect {
        percentage: 0.0,
        enabled: Some(false),
        base_revision: Some(flag_revision),
    });
    crate::store::conformance::put_ramp(store.as_ref(), record, Vec::new()).await;
    assert_eq!(percentage(service), 10.0);

    controller.restore().await.unwrap();
    let (flag, _) = service.flag("default", "checkout").unwrap();
    assert_eq!(flag.enabled, Some(false));
    assert_eq!(flag.rollout.unwrap().percentage, 0.0);
    let record = store.ramp("default", "checkout").await.unwrap().unwrap();
    assert_eq!(record.pending, None);
    // Restoring again changes nothing: a person may have turned the flag back on since.
    let revision = service.environment("default").unwrap().revision;
    controller.restore().await.unwrap();
    assert_eq!(service.environment("default").unwrap().revision, revision);
}

#[tokio::test]
async fn manual_operations_follow_the_state_machine() {
    let setup = setup().await;
    let Setup {
        service,
        controller,
        person,
        ..
    } = &setup;
    let error = controller
        .operate("default", "checkout", Operation::Pause, None, person, T0)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("start it first"), "{error}");
    start(controller, person).await;
    let error = controller
        .operate(
            "default",
            "checkout",
            Operation::Advance,
            Some("  "),
            person,
            T0,
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("reason"), "{error}");
    let advanced = controller
        .operate(
            "default",
            "checkout",
            Operation::Advance,
            Some("dashboards are green"),
            person,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(advanced.state.stage, Stage::new(1));
    assert_eq!(percentage(service), 50.0);
    let aborted = controller
        .operate(
            "default",
            "checkout",
            Operation::Abort,
            None,
            person,
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(aborted.state.status, Status::Aborted);
    assert_eq!(percentage(service), 0.0);
    let restarted = controller
        .operate(
            "default",
            "checkout",
            Operation::Start,
            None,
            person,
            T0 + 3,
        )
        .await
        .unwrap();
    assert_eq!(restarted.state.generation, 2);
    assert_eq!(restarted.state.stage, Stage::FIRST);
    assert_eq!(percentage(service), 10.0);

    let error = controller
        .operate("default", "nope", Operation::Start, None, person, T0)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
}

#[tokio::test]
async fn a_flag_deleted_mid_ramp_stops_taking_observations_until_it_comes_back() {
    let setup = setup().await;
    let Setup {
        service,
        evidence,
        controller,
        person,
        ..
    } = &setup;
    start(controller, person).await;
    let (flag, _) = service.flag("default", "checkout").unwrap();
    let change = || Change {
        environment: "default",
        actor: person,
        operation: "edit",
        reason: None,
    };
    service
        .delete_item::<ripcord_engine::Flag>(change(), "checkout")
        .await
        .unwrap();
    controller.tick(T0 + 2 * MINUTE).await.unwrap();
    assert_eq!(
        evidence.active("checkout"),
        None,
        "observations for a deleted flag are refused"
    );

    // Put back with its ramp block, the flag's running ramp takes observations again.
    service
        .change(change(), |document| {
            document.flags.insert("checkout".to_string(), flag.clone());
            Ok(())
        })
        .await
        .unwrap();
    controller.tick(T0 + 3 * MINUTE).await.unwrap();
    assert_eq!(
        evidence.active("checkout").map(|active| active.stage),
        Some(Stage::FIRST)
    );
}

#[tokio::test]
async fn a_deleted_environment_s_ramps_stop_taking_observations() {
    let setup = setup().await;
    let Setup {
        service,
        evidence,
        controller,
        person,
        ..
    } = &setup;
    start(controller, person).await;
    assert!(evidence.active("checkout").is_some());
    service.delete_environment("default", person).await.unwrap();
    controller.tick(T0 + 2 * MINUTE).await.unwrap();
    assert_eq!(evidence.active("checkout"), None);
    // Operations on it are answered as on any unknown environment.
    let error = controller
        .operate(
            "default",
            "checkout",
            Operation::Pause,
            None,
            person,
            T0 + 3 * MINUTE,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, crate::error::Error::NotFound { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_ramp_never_started_can_be_aborted_and_started_later_as_a_new_generation() {
    let setup = setup().await;
    let Setup {
        service,
        controller,
        person,
        ..
    } = &setup;
    let aborted = controller
        .operate(
            "default",
            "checkout",
            Operation::Abort,
            Some("release cancelled"),
            person,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(aborted.state.status, Status::Aborted);
    assert_eq!(percentage(service), 0.0);
    let started = controller
        .operate(
            "default",
            "checkout",
            Operation::Start,
            None,
            person,
            T0 + MINUTE,
        )
        .await
        .unwrap();
    assert_eq!(started.state.status, Status::Running);
    assert_eq!(started.state.generation, 2);
    assert_eq!(percentage(service), 10.0);
}

#[tokio::test]
async fn a_decision_carried_out_but_not_yet_marked_is_not_applied_over_a_later_change() {
    let setup = setup().await;
    let Setup {
        service,
        controller,
        person,
        ..
    } = &setup;
    start(controller, person).await;
    // The controller decided to go to 25%, changed the flag, and could not clear `pending`
    // (the store failed); then a person set the flag to 33%.
    let store = service.store();
    let mut record = store.ramp("default", "checkout").await.unwrap().unwrap();
    let (_, flag_revision) = service.flag("default", "checkout").unwrap();
    record.pending = Some(FlagEffect {
        percentage: 25.0,
        enabled: None,
        base_revision: Some(flag_revision),
    });
    crate::store::conformance::put_ramp(store.as_ref(), record, Vec::new()).await;
    service
        .change(
            Change {
                environment: "default",
                actor: person,
                operation: "edit",
                reason: None,
            },
            |document| {
                let flag = document.flags.get_mut("checkout").unwrap();
                flag.rollout.as_mut().unwrap().percentage = 33.0;
                Ok(())
            },
        )
        .await
        .unwrap();

    controller.restore().await.unwrap();
    assert_eq!(percentage(service), 33.0, "the person's change stands");
    let record = store.ramp("default", "checkout").await.unwrap().unwrap();
    assert_eq!(record.pending, None);
}

/// A node of a shared store: its own store connection, service and controller.
struct Node {
    service: Arc<Service>,
    controller: Controller,
    _follower: tokio::task::JoinHandle<()>,
}

async fn node(url: &str, evidence: &Arc<FakeEvidence>, lease: std::time::Duration) -> Node {
    let store = crate::store::redis::RedisStore::open(url).await.unwrap();
    let service = Service::open(Arc::new(store), ripcord_engine::Limits::default(), None)
        .await
        .unwrap();
    let follower = service.follow_changes();
    let controller = Controller::new(
        Arc::clone(&service),
        Arc::clone(evidence) as Arc<dyn Evidence>,
        Arc::new(Webhooks::none()),
    )
    .with_lease(lease);
    Node {
        service,
        controller,
        _follower: follower,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_shared_store_one_controller_decides_and_another_takes_over_when_it_dies() {
    let Some(redis) = crate::store::redis_server::RedisServer::start() else {
        return;
    };
    // Both nodes' ingestion writes to the same shared counts: one evidence stands for them.
    let evidence = Arc::new(FakeEvidence::default());
    let lease = std::time::Duration::from_millis(800);
    let first = node(&redis.url(), &evidence, lease).await;
    let person = Principal {
        name: "release-engineer".to_string(),
        scope: Scope::Admin,
        environment: None,
        event_channel: None,
    };
    import_default(&first.service, &person).await;
    let second = node(&redis.url(), &evidence, lease).await;
    // A person may start the ramp on any node.
    start(&second.controller, &person).await;

    // The first node's controller takes the lease and looks; the second's only keeps its
    // ingestion in step, whatever the data says.
    first.controller.tick(T0 + 2 * MINUTE).await.unwrap();
    evidence.set("checkout", 0, (600, 2000), (20, 2000));
    second.controller.tick(T0 + 3 * MINUTE).await.unwrap();
    let store = second.service.store();
    let record = store.ramp("default", "checkout").await.unwrap().unwrap();
    assert_eq!(
        record.state.status,
        Status::Running,
        "the node without the lease does not decide"
    );

    // The first node dies: nobody renews its lease, and once it has run out the second
    // node's controller takes over and pulls the ripcord, once.
    drop(first);
    tokio::time::sleep(lease + std::time::Duration::from_millis(300)).await;
    second.controller.tick(T0 + 4 * MINUTE).await.unwrap();
    second.controller.tick(T0 + 5 * MINUTE).await.unwrap();
    let record = store.ramp("default", "checkout").await.unwrap().unwrap();
    assert_eq!(record.state.status, Status::Killed);
    let (flag, _) = second.service.flag("default", "checkout").unwrap();
    assert_eq!(flag.enabled, Some(false));
    let incidents = store
        .incidents(&IncidentQuery {
            limit: 10,
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1, "one kill, one incident: {incidents:?}");

    // A node that comes back finds the lease taken and the kill done: it adds nothing.
    let back = node(&redis.url(), &evidence, lease).await;
    back.controller.tick(T0 + 6 * MINUTE).await.unwrap();
    let incidents = store
        .incidents(&IncidentQuery {
            limit: 10,
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    let (flag, _) = back.service.flag("default", "checkout").unwrap();
    assert_eq!(flag.enabled, Some(false), "it serves the kill");
}
