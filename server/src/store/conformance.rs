//! The conformance suite every [`Store`] backend must pass: one `run(store)` per backend.
//!
//! The suite checks the promises made in the trait's documentation, not the details of any
//! one backend, so that the service can switch from sled to Redis without noticing. Each
//! part works in environments of its own, so the parts do not depend on one another's
//! leftovers; the audit log is shared by all of them, so the checks on it look at the
//! entries a part wrote itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ripcord_engine::Stage;
use ripcord_engine::{Document, Flag, Segment};
use tokio::sync::broadcast;

use super::{Aggregate, AggregateCounts, AggregateKey};
use super::{
    AuditQuery, AuditRecord, ChangeEvent, EnvironmentRecord, EnvironmentState, FlagEffect,
    IncidentQuery, IncidentRecord, KeyRecord, LookGuard, LookRecord, Mutation, RampRecord,
    RampWrite, Scope, Store, StoreError,
};
use ripcord_engine::Cohort;

/// Runs every check of the suite against an empty `store`. Call it from a multi-threaded
/// runtime (`#[tokio::test(flavor = "multi_thread")]`): one part races writers on threads
/// of their own.
pub(crate) async fn run(store: &dyn Store) {
    assert!(store.ready().await, "a freshly opened store is ready");
    environments_are_created_listed_and_loaded(store).await;
    commits_bump_the_revision_by_one(store).await;
    stale_and_misdirected_commits_change_nothing(store).await;
    concurrent_commits_from_one_base_let_exactly_one_win(store).await;
    flags_and_segments_are_put_and_deleted(store).await;
    environments_do_not_see_each_others_items(store).await;
    deleting_an_environment_removes_its_flags_and_segments(store).await;
    keys_are_created_and_replaced(store).await;
    audit_entries_are_numbered_and_carry_the_revision(store).await;
    audit_pages_are_newest_first_without_gaps(store).await;
    audit_filters_by_environment_and_by_flag(store).await;
    the_change_feed_announces_every_write_in_order(store).await;
    loads_and_deletions_see_whole_commits_while_others_commit(store).await;
    deleting_an_environment_revokes_its_keys(store).await;
    ramps_are_put_replaced_and_kept_per_flag(store).await;
    ramp_writes_carry_their_audit_entries_and_keep_the_revision(store).await;
    deleting_an_environment_removes_its_ramps(store).await;
    incidents_are_numbered_and_paged_newest_first(store).await;
    ramp_writes_are_refused_once_overtaken(store).await;
    a_named_batch_counts_once(store).await;
    webhooks_are_kept_with_their_decision_until_done(store).await;
    metric_aggregates(store).await;
    look_history(store).await;
}

const DURABLE_ENVIRONMENT: &str = "durable";

/// The first half of a durability check: creates an environment and commits one flag and
/// one audit entry. [`check_one_flag`] then runs on the store reopened from the same place.
pub(crate) async fn write_one_flag(store: &dyn Store) {
    store
        .create_environment(
            DURABLE_ENVIRONMENT,
            "2024-05-01T00:00:00Z",
            audit(
                Some(DURABLE_ENVIRONMENT),
                "environment.create",
                DURABLE_ENVIRONMENT,
            ),
        )
        .await
        .unwrap();
    let revision = store
        .commit(
            DURABLE_ENVIRONMENT,
            0,
            vec![put_flag("checkout")],
            vec![audit(Some(DURABLE_ENVIRONMENT), "flag.create", "checkout")],
        )
        .await
        .unwrap();
    assert_eq!(revision, 1);
}

/// The second half of the durability check: everything [`write_one_flag`] wrote is there,
/// and the store carries on from where it was (revisions and audit ids keep growing).
pub(crate) async fn check_one_flag(store: &dyn Store) {
    assert!(store.ready().await);
    assert_eq!(
        store.environments().await.unwrap(),
        vec![EnvironmentRecord {
            name: DURABLE_ENVIRONMENT.to_string(),
            revision: 1,
            created_at: "2024-05-01T00:00:00Z".to_string(),
        }]
    );
    let state = load(store, DURABLE_ENVIRONMENT).await;
    assert_eq!(state.revision, 1);
    assert_eq!(state.document.flags, flags(&["checkout"]));
    assert_eq!(state.flag_revisions, revisions(&[("checkout", 1)]));

    let entries = audit_of(store, DURABLE_ENVIRONMENT).await;
    assert_eq!(
        actions_and_targets(&entries),
        [
            ("flag.create", "checkout"),
            ("environment.create", "durable")
        ]
    );
    assert_eq!(
        entries[0].revision,
        Some(1),
        "the commit's audit entry carries its revision"
    );

    let revision = store
        .commit(
            DURABLE_ENVIRONMENT,
            1,
            vec![put_flag("dark-mode")],
            vec![audit(Some(DURABLE_ENVIRONMENT), "flag.create", "dark-mode")],
        )
        .await
        .unwrap();
    assert_eq!(revision, 2, "revisions continue after reopening");
    let state = load(store, DURABLE_ENVIRONMENT).await;
    assert_eq!(
        state.flag_revisions,
        revisions(&[("checkout", 1), ("dark-mode", 2)])
    );
    let after = audit_of(store, DURABLE_ENVIRONMENT).await;
    assert_eq!(after.len(), 3);
    assert!(
        after[0].id > entries[0].id,
        "audit ids keep increasing after reopening: {} after {}",
        after[0].id,
        entries[0].id
    );
}

async fn environments_are_created_listed_and_loaded(store: &dyn Store) {
    assert!(
        store.load_environment("env-a").await.unwrap().is_none(),
        "a missing environment loads as None"
    );
    let created = create(store, "env-a").await;
    assert_eq!(
        created,
        EnvironmentRecord {
            name: "env-a".to_string(),
            revision: 0,
            created_at: created_at("env-a"),
        }
    );
    create(store, "env-b").await;

    let error = store
        .create_environment(
            "env-a",
            "2030-01-01T00:00:00Z",
            audit(Some("env-a"), "environment.create", "env-a"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::EnvironmentExists(name) if name == "env-a"),
        "{error:?}"
    );

    let mut listed = store.environments().await.unwrap();
    listed.sort_by(|left, right| left.name.cmp(&right.name));
    assert_eq!(
        listed,
        [created.clone(), record("env-b", 0)],
        "a failed create changes nothing"
    );
    assert_eq!(
        load(store, "env-a").await,
        EnvironmentState::default(),
        "a new environment is at revision 0 and empty"
    );
    assert!(store.load_environment("env-c").await.unwrap().is_none());
}

async fn commits_bump_the_revision_by_one(store: &dyn Store) {
    create(store, "bump").await;
    let mut revision = 0;
    for mutations in [
        vec![put_flag("one")],
        vec![],
        vec![put_flag("two"), put_segment("beta-track")],
    ] {
        let new_revision = store
            .commit("bump", revision, mutations, vec![])
            .await
            .unwrap();
        assert_eq!(
            new_revision,
            revision + 1,
            "commit returns base + 1, even when empty"
        );
        revision = new_revision;
        assert_eq!(load(store, "bump").await.revision, revision);
        let listed = store.environments().await.unwrap();
        assert!(
            listed.contains(&record("bump", revision)),
            "the listing shows the revision: {listed:?}"
        );
    }
}

async fn stale_and_misdirected_commits_change_nothing(store: &dyn Store) {
    create(store, "stale").await;
    store
        .commit(
            "stale",
            0,
            vec![put_flag("a")],
            vec![audit(Some("stale"), "flag.create", "a")],
        )
        .await
        .unwrap();
    store
        .commit(
            "stale",
            1,
            vec![put_flag("b")],
            vec![audit(Some("stale"), "flag.create", "b")],
        )
        .await
        .unwrap();
    let before = load(store, "stale").await;
    let audit_before = audit_of(store, "stale").await;

    for base in [0, 1, 3] {
        let error = store
            .commit(
                "stale",
                base,
                vec![delete_flag("a"), put_flag("c"), put_segment("beta-track")],
                vec![audit(Some("stale"), "flag.delete", "a")],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::RevisionConflict { environment, expected, found }
                if environment == "stale" && *expected == base && *found == 2),
            "base {base}: {error:?}"
        );
        assert_eq!(
            load(store, "stale").await,
            before,
            "a conflicting commit changes nothing"
        );
        assert_eq!(
            audit_of(store, "stale").await,
            audit_before,
            "nor does it write its audit entries"
        );
    }

    let error = store
        .commit(
            "nowhere",
            0,
            vec![put_flag("a")],
            vec![audit(Some("nowhere"), "flag.create", "a")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::NoSuchEnvironment(name) if name == "nowhere"),
        "{error:?}"
    );
    assert!(
        store.load_environment("nowhere").await.unwrap().is_none(),
        "a commit does not create environments"
    );
    assert!(audit_of(store, "nowhere").await.is_empty());
}

async fn concurrent_commits_from_one_base_let_exactly_one_win(store: &dyn Store) {
    create(store, "race").await;
    let (first, second) = tokio::join!(
        store.commit("race", 0, vec![put_flag("first")], vec![]),
        store.commit("race", 0, vec![put_flag("second")], vec![]),
    );
    let (winner, loser) = match (first, second) {
        (Ok(revision), Err(error)) => ((revision, "first"), error),
        (Err(error), Ok(revision)) => ((revision, "second"), error),
        other => panic!("exactly one of two commits from the same base wins: {other:?}"),
    };
    assert_eq!(winner.0, 1);
    assert!(
        matches!(
            loser,
            StoreError::RevisionConflict {
                expected: 0,
                found: 1,
                ..
            }
        ),
        "{loser:?}"
    );
    let state = load(store, "race").await;
    assert_eq!(state.revision, 1);
    assert_eq!(
        state.document.flags,
        flags(&[winner.1]),
        "only the winner's change is there"
    );
}

async fn flags_and_segments_are_put_and_deleted(store: &dyn Store) {
    create(store, "items").await;
    let revision = store
        .commit(
            "items",
            0,
            vec![
                put_flag("checkout"),
                put_flag("dark-mode"),
                put_segment("beta-track"),
            ],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(revision, 1);
    let state = load(store, "items").await;
    assert_eq!(
        state.document.flags,
        flags(&["checkout", "dark-mode"]),
        "flags come back as they were put"
    );
    assert_eq!(state.document.segments, segments(&["beta-track"]));
    assert_eq!(
        state.flag_revisions,
        revisions(&[("checkout", 1), ("dark-mode", 1)])
    );

    // Rewrite one flag (with a different body) and add another: only those move on.
    let mut changed = sample_flag("checkout");
    changed.enabled = Some(false);
    let revision = store
        .commit(
            "items",
            1,
            vec![
                Mutation::PutFlag {
                    key: "checkout".to_string(),
                    flag: changed.clone(),
                },
                put_flag("search-v2"),
            ],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(revision, 2);
    let state = load(store, "items").await;
    assert_eq!(
        state.document.flags["checkout"], changed,
        "a put replaces the flag"
    );
    assert_eq!(state.document.flags.len(), 3);
    assert_eq!(
        state.flag_revisions,
        revisions(&[("checkout", 2), ("dark-mode", 1), ("search-v2", 2)]),
        "flags written in a commit get its revision; the others keep theirs"
    );

    // A commit that writes no flag leaves every flag's revision alone.
    store
        .commit("items", 2, vec![put_segment("staff")], vec![])
        .await
        .unwrap();
    let state = load(store, "items").await;
    assert_eq!(state.revision, 3);
    assert_eq!(state.document.segments, segments(&["beta-track", "staff"]));
    assert_eq!(
        state.flag_revisions,
        revisions(&[("checkout", 2), ("dark-mode", 1), ("search-v2", 2)])
    );

    store
        .commit(
            "items",
            3,
            vec![delete_flag("dark-mode"), delete_segment("beta-track")],
            vec![],
        )
        .await
        .unwrap();
    let state = load(store, "items").await;
    assert_eq!(state.revision, 4);
    assert_eq!(
        state.document.flags.keys().collect::<Vec<_>>(),
        ["checkout", "search-v2"],
        "a deleted flag is gone"
    );
    assert_eq!(
        state.document.segments,
        segments(&["staff"]),
        "a deleted segment is gone"
    );
    assert_eq!(
        state.flag_revisions,
        revisions(&[("checkout", 2), ("search-v2", 2)]),
        "a deleted flag has no revision left"
    );
    assert_eq!(state.document.flags["checkout"], changed);
    assert_eq!(state.document.flags["search-v2"], sample_flag("search-v2"));

    // Deleting what is not there is not an error, and still makes a revision.
    let revision = store
        .commit(
            "items",
            4,
            vec![delete_flag("never-was"), delete_segment("never-was")],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(revision, 5);
    assert_eq!(load(store, "items").await.document, state.document);
}

/// Names that share a prefix must not leak into each other: a backend that keys items by
/// `{environment}{key}` would mix `app` + `2x` with `app2` + `x`.
async fn environments_do_not_see_each_others_items(store: &dyn Store) {
    create(store, "app").await;
    create(store, "app2").await;
    store
        .commit("app", 0, vec![put_flag("2x"), put_segment("2s")], vec![])
        .await
        .unwrap();
    store
        .commit("app2", 0, vec![put_flag("x"), put_segment("s")], vec![])
        .await
        .unwrap();
    let app = load(store, "app").await;
    assert_eq!(app.document.flags, flags(&["2x"]));
    assert_eq!(app.document.segments, segments(&["2s"]));
    let app2 = load(store, "app2").await;
    assert_eq!(app2.document.flags, flags(&["x"]));
    assert_eq!(app2.document.segments, segments(&["s"]));
}

async fn deleting_an_environment_removes_its_flags_and_segments(store: &dyn Store) {
    create(store, "doomed").await;
    create(store, "doomed-neighbour").await;
    store
        .commit(
            "doomed",
            0,
            vec![put_flag("checkout"), put_segment("beta-track")],
            vec![],
        )
        .await
        .unwrap();
    store
        .commit("doomed", 1, vec![put_flag("dark-mode")], vec![])
        .await
        .unwrap();
    store
        .commit(
            "doomed-neighbour",
            0,
            vec![put_flag("checkout"), put_segment("beta-track")],
            vec![],
        )
        .await
        .unwrap();
    let neighbour = load(store, "doomed-neighbour").await;

    store
        .delete_environment(
            "doomed",
            audit(Some("doomed"), "environment.delete", "doomed"),
        )
        .await
        .unwrap();
    assert!(store.load_environment("doomed").await.unwrap().is_none());
    let listed = store.environments().await.unwrap();
    assert!(
        !listed
            .iter()
            .any(|environment| environment.name == "doomed"),
        "{listed:?}"
    );
    assert_eq!(
        load(store, "doomed-neighbour").await,
        neighbour,
        "other environments are untouched"
    );

    let error = store
        .delete_environment(
            "doomed",
            audit(Some("doomed"), "environment.delete", "doomed"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::NoSuchEnvironment(name) if name == "doomed"),
        "{error:?}"
    );
    let error = store
        .commit("doomed", 2, vec![put_flag("late")], vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::NoSuchEnvironment(name) if name == "doomed"),
        "{error:?}"
    );

    let recreated = create(store, "doomed").await;
    assert_eq!(recreated.revision, 0);
    assert_eq!(
        load(store, "doomed").await,
        EnvironmentState::default(),
        "a new environment of the same name starts empty"
    );
    store
        .commit("doomed", 0, vec![put_flag("fresh")], vec![])
        .await
        .unwrap();
    let state = load(store, "doomed").await;
    assert_eq!(state.document.flags, flags(&["fresh"]));
    assert!(state.document.segments.is_empty());
    assert_eq!(state.flag_revisions, revisions(&[("fresh", 1)]));
}

async fn keys_are_created_and_replaced(store: &dyn Store) {
    let admin = key_record("key-admin", "deploy-bot", Scope::Admin, None);
    let client = key_record("key-client", "ios-app", Scope::Client, Some("env-a"));
    store
        .put_key(admin.clone(), audit(None, "key.create", "deploy-bot"))
        .await
        .unwrap();
    store
        .put_key(
            client.clone(),
            audit(Some("env-a"), "key.create", "ios-app"),
        )
        .await
        .unwrap();
    assert_eq!(sorted_keys(store).await, [admin.clone(), client.clone()]);

    let revoked = KeyRecord {
        revoked_at: Some("2024-06-01T00:00:00Z".to_string()),
        ..client.clone()
    };
    store
        .put_key(
            revoked.clone(),
            audit(Some("env-a"), "key.revoke", "ios-app"),
        )
        .await
        .unwrap();
    assert_eq!(
        sorted_keys(store).await,
        [admin, revoked],
        "putting a key with the same id replaces it"
    );

    let entries = store
        .audit(&AuditQuery {
            limit: 3,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        actions_and_targets(&entries),
        [
            ("key.revoke", "ios-app"),
            ("key.create", "ios-app"),
            ("key.create", "deploy-bot")
        ],
        "put_key appends its audit entry"
    );
    assert_eq!(entries[2].environment, None);
}

/// A key must not outlive its environment: it would work again for a new environment of
/// the same name.
async fn deleting_an_environment_revokes_its_keys(store: &dyn Store) {
    create(store, "doomed-env").await;
    create(store, "kept-env").await;
    let doomed = key_record(
        "key-doomed",
        "doomed-app",
        Scope::Server,
        Some("doomed-env"),
    );
    let kept = key_record("key-kept", "kept-app", Scope::Client, Some("kept-env"));
    for key in [&doomed, &kept] {
        store
            .put_key(
                key.clone(),
                audit(key.environment.as_deref(), "key.create", &key.name),
            )
            .await
            .unwrap();
    }
    let deletion = audit(Some("doomed-env"), "environment.delete", "doomed-env");
    store
        .delete_environment("doomed-env", deletion.clone())
        .await
        .unwrap();

    let keys = store.keys().await.unwrap();
    let find = |id: &str| keys.iter().find(|key| key.id == id).unwrap().clone();
    assert_eq!(
        find("key-doomed").revoked_at.as_deref(),
        Some(deletion.time.as_str()),
        "the deleted environment's key is revoked at the deletion's time"
    );
    assert_eq!(
        find("key-kept"),
        kept,
        "other environments' keys are untouched"
    );
    let entries = audit_of(store, "doomed-env").await;
    assert_eq!(
        actions_and_targets(&entries[..2]),
        [
            ("key.revoke", "doomed-app"),
            ("environment.delete", "doomed-env")
        ],
        "the revocation is in the audit log with the deletion"
    );
}

async fn audit_entries_are_numbered_and_carry_the_revision(store: &dyn Store) {
    create(store, "audited").await;
    store.commit("audited", 0, vec![], vec![]).await.unwrap();
    let bogus = AuditRecord {
        id: 999_999,
        revision: Some(999_999),
        ..audit(Some("audited"), "flag.update", "checkout")
    };
    let revision = store
        .commit(
            "audited",
            1,
            vec![put_flag("checkout"), put_flag("dark-mode")],
            vec![bogus, audit(Some("audited"), "flag.create", "dark-mode")],
        )
        .await
        .unwrap();
    assert_eq!(revision, 2);

    let entries = audit_of(store, "audited").await;
    assert_eq!(
        actions_and_targets(&entries),
        [
            ("flag.create", "dark-mode"),
            ("flag.update", "checkout"),
            ("environment.create", "audited")
        ],
        "entries are newest first, those of one commit in the order given"
    );
    assert!(
        entries[1].id < entries[0].id && entries[2].id < entries[1].id,
        "ids increase: {entries:?}"
    );
    assert_ne!(entries[1].id, 999_999, "the store assigns ids");
    assert_eq!(
        entries[0].revision,
        Some(2),
        "a commit's entries carry its revision"
    );
    assert_eq!(
        entries[1].revision,
        Some(2),
        "whatever revision the caller put in"
    );
    let written = audit(Some("audited"), "flag.create", "dark-mode");
    assert_eq!(
        entries[0],
        AuditRecord {
            id: entries[0].id,
            revision: Some(2),
            ..written
        },
        "every other field is kept as written"
    );
}

async fn audit_pages_are_newest_first_without_gaps(store: &dyn Store) {
    create(store, "paged").await;
    for (base, target) in ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]
        .into_iter()
        .enumerate()
    {
        store
            .commit(
                "paged",
                base as u64,
                vec![put_flag(target)],
                vec![audit(Some("paged"), "flag.create", target)],
            )
            .await
            .unwrap();
    }

    let everything = store
        .audit(&AuditQuery {
            limit: usize::MAX,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(
        everything.len() > 20,
        "the suite wrote more entries than that: {}",
        everything.len()
    );
    assert!(
        everything.windows(2).all(|pair| pair[0].id > pair[1].id),
        "newest first, ids strictly decreasing"
    );
    assert!(everything.iter().all(|entry| entry.id > 0));

    let newest = store
        .audit(&AuditQuery {
            limit: 3,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(newest, everything[..3], "limit takes the newest entries");

    for limit in [1, 2, 3, 5] {
        let pages = read_pages(store, AuditQuery::default(), limit).await;
        assert!(
            pages.iter().all(|page| page.len() <= limit),
            "limit {limit} is honoured"
        );
        assert_eq!(
            pages.concat(),
            everything,
            "paging by {limit} has no overlaps and no gaps"
        );
    }

    let in_paged = audit_of(store, "paged").await;
    assert_eq!(in_paged.len(), 8, "seven commits and the creation");
    let query = AuditQuery {
        environment: Some("paged".to_string()),
        ..AuditQuery::default()
    };
    let pages = read_pages(store, query, 3).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 2],
        "filtered pages are full"
    );
    assert_eq!(pages.concat(), in_paged);
    assert_eq!(pages[0][0].target, "p6");
    assert_eq!(pages[2][1].action, "environment.create");

    let oldest = everything.last().unwrap();
    let beyond = store
        .audit(&AuditQuery {
            before: Some(oldest.id),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(
        beyond.is_empty(),
        "nothing is older than the oldest entry: {beyond:?}"
    );
}

async fn audit_filters_by_environment_and_by_flag(store: &dyn Store) {
    create(store, "filter-one").await;
    create(store, "filter-two").await;
    store
        .commit(
            "filter-one",
            0,
            vec![put_flag("target"), put_flag("other"), put_segment("target")],
            vec![
                audit(Some("filter-one"), "flag.create", "target"),
                audit(Some("filter-one"), "flag.create", "other"),
                audit(Some("filter-one"), "segment.create", "target"),
            ],
        )
        .await
        .unwrap();
    store
        .commit(
            "filter-two",
            0,
            vec![put_flag("target")],
            vec![audit(Some("filter-two"), "flag.create", "target")],
        )
        .await
        .unwrap();
    store
        .commit(
            "filter-one",
            1,
            vec![put_flag("target")],
            vec![audit(Some("filter-one"), "flag.update", "target")],
        )
        .await
        .unwrap();
    // An entry whose target happens to be the flag's name but is about something else.
    store
        .put_key(
            key_record("key-target", "target", Scope::Server, Some("filter-one")),
            audit(Some("filter-one"), "key.create", "target"),
        )
        .await
        .unwrap();

    let query = |environment: Option<&str>, flag: Option<&str>| AuditQuery {
        environment: environment.map(str::to_string),
        flag: flag.map(str::to_string),
        before: None,
        limit: 100,
    };

    let in_one = store.audit(&query(Some("filter-one"), None)).await.unwrap();
    assert_eq!(
        actions_and_targets(&in_one),
        [
            ("key.create", "target"),
            ("flag.update", "target"),
            ("segment.create", "target"),
            ("flag.create", "other"),
            ("flag.create", "target"),
            ("environment.create", "filter-one"),
        ]
    );
    assert!(in_one
        .iter()
        .all(|entry| entry.environment.as_deref() == Some("filter-one")));

    let target_in_one = store
        .audit(&query(Some("filter-one"), Some("target")))
        .await
        .unwrap();
    assert_eq!(
        actions_and_targets(&target_in_one),
        [("flag.update", "target"), ("flag.create", "target")],
        "a flag filter matches only flag actions on that flag"
    );
    assert_eq!(target_in_one[0].revision, Some(2));
    assert_eq!(target_in_one[1].revision, Some(1));

    let target_anywhere = store.audit(&query(None, Some("target"))).await.unwrap();
    assert_eq!(
        target_anywhere
            .iter()
            .map(|entry| (entry.environment.as_deref().unwrap(), entry.action.as_str()))
            .collect::<Vec<_>>(),
        [
            ("filter-one", "flag.update"),
            ("filter-two", "flag.create"),
            ("filter-one", "flag.create")
        ]
    );

    let paged = read_pages(store, query(None, Some("target")), 1).await;
    assert_eq!(
        paged.concat(),
        target_anywhere,
        "filtered paging has no gaps"
    );

    let none = store
        .audit(&query(Some("filter-two"), Some("other")))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

async fn the_change_feed_announces_every_write_in_order(store: &dyn Store) {
    let mut feed = store.subscribe();
    create(store, "fed").await;
    store
        .commit("fed", 0, vec![put_flag("checkout")], vec![])
        .await
        .unwrap();
    // A failed commit announces nothing: the next event is the one after it.
    store
        .commit("fed", 0, vec![put_flag("lost")], vec![])
        .await
        .unwrap_err();
    store
        .put_key(
            key_record("key-fed", "fed-bot", Scope::Admin, None),
            audit(None, "key.create", "fed-bot"),
        )
        .await
        .unwrap();
    store
        .commit("fed", 1, vec![delete_flag("checkout")], vec![])
        .await
        .unwrap();
    store
        .delete_environment("fed", audit(Some("fed"), "environment.delete", "fed"))
        .await
        .unwrap();

    let environment_event = |revision| ChangeEvent::Environment {
        name: "fed".to_string(),
        revision,
        deleted: false,
    };
    assert_eq!(next_event(&mut feed).await, environment_event(0), "create");
    assert_eq!(
        next_event(&mut feed).await,
        environment_event(1),
        "first commit"
    );
    assert_eq!(
        next_event(&mut feed).await,
        ChangeEvent::KeysChanged,
        "put_key"
    );
    assert_eq!(
        next_event(&mut feed).await,
        environment_event(2),
        "second commit"
    );
    // What revision a deletion reports is the backend's business; that it was one is not.
    match next_event(&mut feed).await {
        ChangeEvent::Environment { name, deleted, .. } => {
            assert_eq!(name, "fed");
            assert!(deleted, "the last event announces the deletion");
        }
        other => panic!("expected the deletion, got {other:?}"),
    }
    assert!(
        matches!(feed.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
        "nothing else was announced"
    );

    // Every subscriber hears every change.
    let mut first = store.subscribe();
    let mut second = store.subscribe();
    create(store, "fed-twice").await;
    let created = ChangeEvent::Environment {
        name: "fed-twice".to_string(),
        revision: 0,
        deleted: false,
    };
    assert_eq!(next_event(&mut first).await, created);
    assert_eq!(next_event(&mut second).await, created);
}

/// Two races the service relies on winning: a load that overlaps a commit returns the
/// environment before or after it, never a mix (a snapshot labelled with one revision holds
/// exactly that revision's flags); a deletion that overlaps a commit takes the committed
/// flags with it (a recreated environment starts empty). Each commit here writes two flags,
/// or one new flag, so a torn read or a survivor breaks a simple count.
async fn loads_and_deletions_see_whole_commits_while_others_commit(store: &dyn Store) {
    const COMMITS: u64 = 50;
    const DELETIONS: usize = 20;
    const COMMITTERS: usize = 4;
    let runtime = tokio::runtime::Handle::current();
    let runtime = &runtime;
    create(store, "torn").await;
    create(store, "churn").await;
    let done = AtomicBool::new(false);
    let done = &done;
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let _stop = StopOnDrop(done);
                for base in 0..COMMITS {
                    let mutations =
                        vec![put_flag("first"), put_segment("middle"), put_flag("last")];
                    runtime
                        .block_on(store.commit("torn", base, mutations, vec![]))
                        .unwrap();
                }
            });
            let loads = scope.spawn(move || {
                let mut loads = 0;
                while !done.load(Ordering::SeqCst) {
                    let state = runtime.block_on(load(store, "torn"));
                    let expected: &[_] = if state.revision == 0 {
                        &[]
                    } else {
                        &[("first", state.revision), ("last", state.revision)]
                    };
                    assert_eq!(
                        state.flag_revisions,
                        revisions(expected),
                        "a load during commits returns one whole revision"
                    );
                    assert_eq!(state.document.segments.len(), expected.len() / 2);
                    loads += 1;
                }
                loads
            });
            assert!(loads.join().unwrap() > 0);
        });
        assert_eq!(runtime.block_on(load(store, "torn")).revision, COMMITS);

        done.store(false, Ordering::SeqCst);
        std::thread::scope(|scope| {
            let committers: Vec<_> = (0..COMMITTERS)
                .map(|committer| {
                    scope.spawn(move || {
                        let mut committed = 0;
                        let mut base = 0;
                        for n in 0.. {
                            if done.load(Ordering::SeqCst) {
                                break;
                            }
                            let flag = put_flag(&format!("flag-{committer}-{n}"));
                            match runtime.block_on(store.commit("churn", base, vec![flag], vec![]))
                            {
                                Ok(revision) => {
                                    committed += 1;
                                    base = revision;
                                }
                                Err(StoreError::RevisionConflict { found, .. }) => base = found,
                                Err(StoreError::NoSuchEnvironment(_)) => base = 0,
                                Err(error) => panic!("{error}"),
                            }
                        }
                        committed
                    })
                })
                .collect();
            // Stops the committers however this thread leaves, or a failed assertion would
            // leave the scope waiting for them forever.
            let stop = StopOnDrop(done);
            for _ in 0..DELETIONS {
                runtime
                    .block_on(store.delete_environment(
                        "churn",
                        audit(Some("churn"), "environment.delete", "churn"),
                    ))
                    .unwrap();
                runtime.block_on(create(store, "churn"));
                let state = runtime.block_on(load(store, "churn"));
                // Every commit to this incarnation added one flag; anything more survived
                // a deletion.
                assert_eq!(
                    state.document.flags.len() as u64,
                    state.revision,
                    "a recreated environment holds only its own commits: {:?}",
                    state.flag_revisions
                );
            }
            drop(stop);
            for committer in committers {
                assert!(
                    committer.join().unwrap() > 0,
                    "every committer got commits in"
                );
            }
        });
    });
}

// ---- Metric aggregates ----------------------------------------------------------------

async fn metric_aggregates(store: &dyn Store) {
    merging_aggregates_adds_counts_in_any_order(store).await;
    aggregates_of_environments_flags_and_generations_do_not_mix(store).await;
    values_and_rates_under_one_key_are_kept_apart(store).await;
    units_count_once_per_stage_and_cohort(store).await;
}

fn units_seen(units: &[u64]) -> AggregateCounts {
    AggregateCounts::UnitsSeen(units.iter().copied().collect())
}

/// The distinct units counted per (stage, cohort) of one generation.
async fn unit_counts(
    store: &dyn Store,
    environment: &str,
    flag: &str,
    generation: u64,
) -> Vec<(u32, &'static str, u64)> {
    let mut found: Vec<(u32, &'static str, u64)> = store
        .aggregates(environment, flag, generation)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|aggregate| match aggregate.counts {
            AggregateCounts::Units(count) => {
                assert_eq!(aggregate.key.metric, "", "units belong to no metric");
                Some((
                    aggregate.key.stage.get(),
                    aggregate.key.cohort.as_str(),
                    count,
                ))
            }
            AggregateCounts::UnitsSeen(_) => panic!("markers are never read as counts"),
            _ => None,
        })
        .collect();
    found.sort();
    found
}

/// The unit markers of one generation, per (stage, cohort).
async fn markers(
    store: &dyn Store,
    environment: &str,
    flag: &str,
    generation: u64,
) -> Vec<(u32, &'static str, Vec<u64>)> {
    let mut found: Vec<(u32, &'static str, Vec<u64>)> = store
        .unit_markers(environment, flag, generation)
        .await
        .unwrap()
        .into_iter()
        .map(|aggregate| match aggregate.counts {
            AggregateCounts::UnitsSeen(units) => (
                aggregate.key.stage.get(),
                aggregate.key.cohort.as_str(),
                units.into_iter().collect(),
            ),
            other => panic!("a marker read as {other:?}"),
        })
        .collect();
    found.sort();
    found
}

/// A unit counts once per stage and cohort of a generation, however many batches and
/// metrics name it; a batch sent again adds no unit; clearing a flag's aggregates removes
/// its markers, so its units count again from nothing.
async fn units_count_once_per_stage_and_cohort(store: &dyn Store) {
    let (environment, flag) = ("units", "checkout");
    let units = |generation: u64, stage: u32, cohort: Cohort, seen: &[u64]| Aggregate {
        key: aggregate_key(environment, flag, generation, stage, cohort, ""),
        counts: units_seen(seen),
    };
    let errors = Aggregate {
        key: aggregate_key(environment, flag, 1, 0, Cohort::Treatment, "errors"),
        counts: AggregateCounts::Rate {
            events: 0,
            trials: 1,
        },
    };
    // Unit 7 reports errors, then latency in a second flush: one unit.
    store
        .merge_aggregates(vec![errors.clone(), units(1, 0, Cohort::Treatment, &[7])])
        .await
        .unwrap();
    store
        .merge_aggregates(vec![
            Aggregate {
                key: aggregate_key(environment, flag, 1, 0, Cohort::Treatment, "latency"),
                counts: values(&[(3, 1)]),
            },
            units(1, 0, Cohort::Treatment, &[7]),
        ])
        .await
        .unwrap();
    assert_eq!(
        unit_counts(store, environment, flag, 1).await,
        [(0, "treatment", 1)]
    );
    // A second unit counts; so does the first in another cohort, stage or generation.
    store
        .merge_aggregates(vec![
            units(1, 0, Cohort::Treatment, &[7, 8]),
            units(1, 0, Cohort::Control, &[7]),
            units(1, 1, Cohort::Treatment, &[7]),
            units(2, 0, Cohort::Treatment, &[7]),
        ])
        .await
        .unwrap();
    assert_eq!(
        unit_counts(store, environment, flag, 1).await,
        [(0, "control", 1), (0, "treatment", 2), (1, "treatment", 1)]
    );
    assert_eq!(
        unit_counts(store, environment, flag, 2).await,
        [(0, "treatment", 1)]
    );
    // Two deltas of one merge that name the same new unit count it once.
    store
        .merge_aggregates(vec![
            units(1, 0, Cohort::Treatment, &[9]),
            units(1, 0, Cohort::Treatment, &[9]),
        ])
        .await
        .unwrap();
    // A named batch sent again adds no unit, not even one it did not name the first time.
    let now = 1_800_000_000;
    assert!(store
        .merge_batch("units-1", vec![units(1, 0, Cohort::Treatment, &[10])], now)
        .await
        .unwrap());
    assert!(!store
        .merge_batch(
            "units-1",
            vec![units(1, 0, Cohort::Treatment, &[10, 11])],
            now
        )
        .await
        .unwrap());
    assert_eq!(
        unit_counts(store, environment, flag, 1).await,
        [(0, "control", 1), (0, "treatment", 4), (1, "treatment", 1)]
    );
    assert_eq!(
        markers(store, environment, flag, 1).await,
        [
            (0, "control", vec![7]),
            (0, "treatment", vec![7, 8, 9, 10]),
            (1, "treatment", vec![7]),
        ]
    );
    // The counts and the rest of the aggregates are read together; the markers are not.
    let stored = stored_aggregates(store, environment, flag, 1).await;
    assert_eq!(stored.len(), 5, "{stored:?}");

    // A restarted ramp starts from no units: every generation's markers go with the counts.
    store.clear_aggregates(environment, flag).await.unwrap();
    assert_eq!(unit_counts(store, environment, flag, 1).await, []);
    assert_eq!(markers(store, environment, flag, 1).await, []);
    assert_eq!(markers(store, environment, flag, 2).await, []);
    store
        .merge_aggregates(vec![units(1, 0, Cohort::Treatment, &[7])])
        .await
        .unwrap();
    assert_eq!(
        unit_counts(store, environment, flag, 1).await,
        [(0, "treatment", 1)]
    );
    // Deleting the environment removes them too.
    create(store, environment).await;
    store
        .delete_environment(
            environment,
            audit(Some(environment), "environment.delete", environment),
        )
        .await
        .unwrap();
    assert_eq!(markers(store, environment, flag, 1).await, []);
}

fn aggregate_key(
    environment: &str,
    flag: &str,
    generation: u64,
    stage: u32,
    cohort: Cohort,
    metric: &str,
) -> AggregateKey {
    AggregateKey {
        environment: environment.to_string(),
        flag: flag.to_string(),
        generation,
        stage: Stage::new(stage),
        cohort,
        metric: metric.to_string(),
    }
}

fn values(pairs: &[(u32, u64)]) -> AggregateCounts {
    AggregateCounts::Values(pairs.iter().copied().collect())
}

/// The aggregates of one generation, in a fixed order, without the flag's name so that two
/// flags' can be compared.
async fn stored_aggregates(
    store: &dyn Store,
    environment: &str,
    flag: &str,
    generation: u64,
) -> Vec<(u32, &'static str, String, String)> {
    let mut found: Vec<(u32, &'static str, String, String)> = store
        .aggregates(environment, flag, generation)
        .await
        .unwrap()
        .into_iter()
        .map(|aggregate| {
            assert_eq!(aggregate.key.environment, environment);
            assert_eq!(aggregate.key.flag, flag);
            assert_eq!(aggregate.key.generation, generation);
            (
                aggregate.key.stage.get(),
                aggregate.key.cohort.as_str(),
                aggregate.key.metric,
                format!("{:?}", aggregate.counts),
            )
        })
        .collect();
    found.sort();
    found
}

async fn merging_aggregates_adds_counts_in_any_order(store: &dyn Store) {
    let deltas = |flag: &str| -> Vec<Vec<Aggregate>> {
        let key =
            |stage, cohort, metric| aggregate_key("agg-order", flag, 1, stage, cohort, metric);
        vec![
            vec![
                Aggregate {
                    key: key(0, Cohort::Treatment, "latency"),
                    counts: values(&[(0, 1), (100, 2)]),
                },
                Aggregate {
                    key: key(0, Cohort::Control, "errors"),
                    counts: AggregateCounts::Rate {
                        events: 1,
                        trials: 10,
                    },
                },
            ],
            vec![
                Aggregate {
                    key: key(0, Cohort::Treatment, "latency"),
                    counts: values(&[(100, 5), (6926, 1)]),
                },
                // The same key twice in one merge: both count.
                Aggregate {
                    key: key(0, Cohort::Control, "errors"),
                    counts: AggregateCounts::Rate {
                        events: 2,
                        trials: 5,
                    },
                },
                Aggregate {
                    key: key(0, Cohort::Control, "errors"),
                    counts: AggregateCounts::Rate {
                        events: 0,
                        trials: 5,
                    },
                },
            ],
            vec![Aggregate {
                key: key(1, Cohort::Treatment, "latency"),
                counts: values(&[(7, 3)]),
            }],
        ]
    };
    store.merge_aggregates(Vec::new()).await.unwrap();
    for batch in deltas("forward") {
        store.merge_aggregates(batch).await.unwrap();
    }
    for batch in deltas("backward").into_iter().rev() {
        store.merge_aggregates(batch).await.unwrap();
    }
    let expected = vec![
        (
            0,
            "control",
            "errors".to_string(),
            format!(
                "{:?}",
                AggregateCounts::Rate {
                    events: 3,
                    trials: 20
                }
            ),
        ),
        (
            0,
            "treatment",
            "latency".to_string(),
            format!("{:?}", values(&[(0, 1), (100, 7), (6926, 1)])),
        ),
        (
            1,
            "treatment",
            "latency".to_string(),
            format!("{:?}", values(&[(7, 3)])),
        ),
    ];
    assert_eq!(
        stored_aggregates(store, "agg-order", "forward", 1).await,
        expected
    );
    assert_eq!(
        stored_aggregates(store, "agg-order", "backward", 1).await,
        expected,
        "the order of merges does not matter"
    );
}

async fn aggregates_of_environments_flags_and_generations_do_not_mix(store: &dyn Store) {
    // Names that are prefixes of one another, and generations whose bytes differ only in
    // one place.
    let places = [
        ("agg-a", "f", 1u64),
        ("agg-a", "f2", 1),
        ("agg-a", "f", 2),
        ("agg-a", "f", 256),
        ("agg-ab", "f", 1),
    ];
    for (count, (environment, flag, generation)) in (1u64..).zip(places) {
        store
            .merge_aggregates(vec![Aggregate {
                key: aggregate_key(environment, flag, generation, 0, Cohort::Control, "m"),
                counts: values(&[(1, count)]),
            }])
            .await
            .unwrap();
    }
    for (count, (environment, flag, generation)) in (1u64..).zip(places) {
        assert_eq!(
            stored_aggregates(store, environment, flag, generation).await,
            [(
                0,
                "control",
                "m".to_string(),
                format!("{:?}", values(&[(1, count)]))
            )],
            "{environment}/{flag} generation {generation}"
        );
    }
    assert!(store.aggregates("agg-a", "f", 3).await.unwrap().is_empty());
    assert!(store
        .aggregates("agg-none", "f", 1)
        .await
        .unwrap()
        .is_empty());

    // A new ramp of `agg-a`/`f` clears every generation of that flag, and nothing else.
    store.clear_aggregates("agg-a", "f").await.unwrap();
    for (count, (environment, flag, generation)) in (1u64..).zip(places) {
        let left = stored_aggregates(store, environment, flag, generation).await;
        if (environment, flag) == ("agg-a", "f") {
            assert_eq!(left, [], "{environment}/{flag} generation {generation}");
        } else {
            assert_eq!(left.len(), 1, "{environment}/{flag} lost its count {count}");
        }
    }
}

async fn values_and_rates_under_one_key_are_kept_apart(store: &dyn Store) {
    let key = aggregate_key("agg-kinds", "f", 1, 2, Cohort::Treatment, "m");
    store
        .merge_aggregates(vec![
            Aggregate {
                key: key.clone(),
                counts: values(&[(3, 4)]),
            },
            Aggregate {
                key: key.clone(),
                counts: AggregateCounts::Rate {
                    events: 1,
                    trials: 2,
                },
            },
        ])
        .await
        .unwrap();
    let mut found: Vec<String> = store
        .aggregates("agg-kinds", "f", 1)
        .await
        .unwrap()
        .into_iter()
        .map(|aggregate| {
            assert_eq!(aggregate.key, key);
            format!("{:?}", aggregate.counts)
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            format!(
                "{:?}",
                AggregateCounts::Rate {
                    events: 1,
                    trials: 2
                }
            ),
            format!("{:?}", values(&[(3, 4)])),
        ]
    );
}

/// The first half of the aggregates' durability check; [`check_aggregates`] runs on the
/// store reopened from the same place.
pub(crate) async fn write_aggregates(store: &dyn Store) {
    store
        .merge_aggregates(vec![
            Aggregate {
                key: aggregate_key("durable", "checkout", 1, 0, Cohort::Treatment, "latency"),
                counts: values(&[(10, 2), (20, 1)]),
            },
            Aggregate {
                key: aggregate_key("durable", "checkout", 1, 0, Cohort::Control, "errors"),
                counts: AggregateCounts::Rate {
                    events: 1,
                    trials: 9,
                },
            },
            Aggregate {
                key: aggregate_key("durable", "checkout", 1, 0, Cohort::Control, ""),
                counts: units_seen(&[1, 2]),
            },
        ])
        .await
        .unwrap();
}

/// The second half: everything [`write_aggregates`] merged is there, and merging goes on
/// adding to it.
pub(crate) async fn check_aggregates(store: &dyn Store) {
    let expected = |latency: AggregateCounts, units: u64| {
        vec![
            (
                0,
                "control",
                String::new(),
                format!("{:?}", AggregateCounts::Units(units)),
            ),
            (
                0,
                "control",
                "errors".to_string(),
                format!(
                    "{:?}",
                    AggregateCounts::Rate {
                        events: 1,
                        trials: 9
                    }
                ),
            ),
            (
                0,
                "treatment",
                "latency".to_string(),
                format!("{latency:?}"),
            ),
        ]
    };
    assert_eq!(
        stored_aggregates(store, "durable", "checkout", 1).await,
        expected(values(&[(10, 2), (20, 1)]), 2)
    );
    // The units' markers were kept with their count: unit 2 is not counted again.
    store
        .merge_aggregates(vec![
            Aggregate {
                key: aggregate_key("durable", "checkout", 1, 0, Cohort::Treatment, "latency"),
                counts: values(&[(10, 1)]),
            },
            Aggregate {
                key: aggregate_key("durable", "checkout", 1, 0, Cohort::Control, ""),
                counts: units_seen(&[2, 3]),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        stored_aggregates(store, "durable", "checkout", 1).await,
        expected(values(&[(10, 3), (20, 1)]), 3)
    );
}

// Building blocks.

/// Raises its flag when dropped, also while unwinding from a failed assertion.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const SAMPLE_DOCUMENT: &str = r#"
segments:
  template:
    description: Users on the beta release track
    when:
      - {attribute: releaseTrack, op: in, values: [beta, canary]}
      - {attribute: appVersion, op: semver_gte, values: ["2.3.0"]}
flags:
  template:
    description: Single-page checkout
    type: boolean
    variants: {on: true, off: false}
    default_variant: "off"
    enabled: true
    client_visible: true
    rules:
      - name: staff
        when: [{attribute: email, op: ends_with, values: ["@example.com"]}]
        serve: {variant: "on"}
      - segment: beta-track
        serve: {variant: "on"}
    rollout:
      stickiness: userId
      percentage: 12.345
      split: [{variant: "on", weight: 3}, {variant: "off", weight: 1}]
    ramp:
      stages: [1, 5, 25, 50, 100]
      min_stage_duration: 10m
      on_regression: kill
      guards:
        - {metric: crash_rate, category: stability, kind: rate, better: lower, tolerance: 0.002, min_samples: 2000}
        - {metric: checkout_latency_ms, category: performance, kind: value, better: lower, tolerance: 5%, min_samples: 1000}
"#;

fn sample_document() -> Document {
    Document::from_yaml(SAMPLE_DOCUMENT).expect("the sample document parses")
}

/// A flag that exercises most of the document, distinguishable by its key.
fn sample_flag(key: &str) -> Flag {
    let mut flag = sample_document().flags.remove("template").unwrap();
    flag.description = Some(format!("the flag {key}"));
    flag
}

fn sample_segment(key: &str) -> Segment {
    let mut segment = sample_document().segments.remove("template").unwrap();
    segment.description = Some(format!("the segment {key}"));
    segment
}

fn put_flag(key: &str) -> Mutation {
    Mutation::PutFlag {
        key: key.to_string(),
        flag: sample_flag(key),
    }
}

fn delete_flag(key: &str) -> Mutation {
    Mutation::DeleteFlag {
        key: key.to_string(),
    }
}

fn put_segment(key: &str) -> Mutation {
    Mutation::PutSegment {
        key: key.to_string(),
        segment: sample_segment(key),
    }
}

fn delete_segment(key: &str) -> Mutation {
    Mutation::DeleteSegment {
        key: key.to_string(),
    }
}

fn flags(keys: &[&str]) -> BTreeMap<String, Flag> {
    keys.iter()
        .map(|key| (key.to_string(), sample_flag(key)))
        .collect()
}

fn segments(keys: &[&str]) -> BTreeMap<String, Segment> {
    keys.iter()
        .map(|key| (key.to_string(), sample_segment(key)))
        .collect()
}

fn revisions(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs
        .iter()
        .map(|(key, revision)| (key.to_string(), *revision))
        .collect()
}

/// An audit entry as the service would hand it in; the store fills in `id` and, for
/// commits, `revision`.
fn audit(environment: Option<&str>, action: &str, target: &str) -> AuditRecord {
    AuditRecord {
        id: 0,
        time: "2024-05-01T12:00:00Z".to_string(),
        actor: "conformance".to_string(),
        environment: environment.map(str::to_string),
        action: action.to_string(),
        target: target.to_string(),
        operation: "test".to_string(),
        before: None,
        after: Some(serde_json::json!({"target": target, "enabled": true})),
        revision: None,
        reason: None,
    }
}

fn ramp_record(environment: &str, flag: &str, generation: u64, stage: u32) -> RampRecord {
    let ramp = ripcord_engine::document::Ramp {
        stages: vec![1.0, 5.0, 25.0],
        min_stage_duration: "10m".to_string(),
        max_stage_duration: None,
        warmup: None,
        on_regression: None,
        control: None,
        on_srm: None,
        max_silence: None,
        guards: Vec::new(),
    };
    let mut state = ripcord_engine::ramp::new(
        &ramp,
        &ripcord_engine::ramp::Settings::default(),
        generation,
    );
    state.stage = Stage::new(stage);
    RampRecord {
        environment: environment.to_string(),
        flag: flag.to_string(),
        state,
        pending: Some(FlagEffect {
            percentage: 5.0,
            enabled: None,
            base_revision: Some(7),
        }),
        hold: None,
        kill: None,
        alert: None,
        version: 0,
    }
}

/// Writes `record` over whatever is stored (its version read first); returns it as stored.
pub(crate) async fn put_ramp(
    store: &dyn Store,
    record: RampRecord,
    audit: Vec<AuditRecord>,
) -> RampRecord {
    let read = store
        .ramp(&record.environment, &record.flag)
        .await
        .unwrap()
        .map_or(0, |stored| stored.version);
    let version = store
        .put_ramp(RampWrite {
            record: RampRecord {
                version: read,
                ..record.clone()
            },
            audit,
            incident: None,
            fence: None,
            webhooks: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(version, read + 1, "each write bumps the version by one");
    RampRecord { version, ..record }
}

/// Records `incident` as a kill decision does: under a reserved id, with its ramp's record.
async fn add_incident(store: &dyn Store, incident: IncidentRecord) -> u64 {
    let id = store.reserve_incident_id().await.unwrap();
    let record = ramp_record(
        &incident.environment,
        &incident.flag,
        1,
        incident.stage.get(),
    );
    let read = store
        .ramp(&record.environment, &record.flag)
        .await
        .unwrap()
        .map_or(0, |stored| stored.version);
    store
        .put_ramp(RampWrite {
            record: RampRecord {
                version: read,
                ..record
            },
            audit: Vec::new(),
            incident: Some(IncidentRecord { id, ..incident }),
            fence: None,
            webhooks: Vec::new(),
        })
        .await
        .unwrap();
    id
}

fn incident(environment: &str, flag: &str, stage: u32) -> IncidentRecord {
    IncidentRecord {
        id: 0,
        time: "2024-05-01T12:00:00Z".to_string(),
        environment: environment.to_string(),
        flag: flag.to_string(),
        generation: 1,
        action: "kill".to_string(),
        stage: Stage::new(stage),
        percentage: 5.0,
        reason: format!("stage {stage} regressed"),
        evidence: Vec::new(),
        srm: None,
    }
}

async fn ramps_are_put_replaced_and_kept_per_flag(store: &dyn Store) {
    create(store, "ramps-a").await;
    create(store, "ramps-b").await;
    assert_eq!(store.ramp("ramps-a", "checkout").await.unwrap(), None);
    let first = put_ramp(store, ramp_record("ramps-a", "checkout", 1, 0), Vec::new()).await;
    let other_flag = put_ramp(store, ramp_record("ramps-a", "search", 1, 2), Vec::new()).await;
    let other_environment =
        put_ramp(store, ramp_record("ramps-b", "checkout", 4, 1), Vec::new()).await;
    assert_eq!(
        store.ramp("ramps-a", "checkout").await.unwrap(),
        Some(first)
    );

    let replaced = put_ramp(
        store,
        RampRecord {
            pending: None,
            ..ramp_record("ramps-a", "checkout", 2, 1)
        },
        Vec::new(),
    )
    .await;
    assert_eq!(
        store.ramp("ramps-a", "checkout").await.unwrap(),
        Some(replaced.clone())
    );
    let mut all: Vec<RampRecord> = store
        .ramps()
        .await
        .unwrap()
        .into_iter()
        .filter(|record| record.environment.starts_with("ramps-"))
        .collect();
    all.sort_by(|a, b| (&a.environment, &a.flag).cmp(&(&b.environment, &b.flag)));
    assert_eq!(all, vec![replaced, other_flag, other_environment]);
}

async fn ramp_writes_carry_their_audit_entries_and_keep_the_revision(store: &dyn Store) {
    let environment = "ramps-audit";
    create(store, environment).await;
    let revision = store
        .commit(environment, 0, vec![put_flag("checkout")], Vec::new())
        .await
        .unwrap();
    let mut entry = audit(Some(environment), "ramp.hold", "checkout");
    entry.reason = Some("stage 1 of 3 (1%): waiting for data".to_string());
    put_ramp(
        store,
        ramp_record(environment, "checkout", 1, 0),
        vec![entry],
    )
    .await;
    let entries = audit_of(store, environment).await;
    let hold = entries
        .iter()
        .find(|entry| entry.action == "ramp.hold")
        .expect("the ramp's audit entry is in the log");
    assert_eq!(
        hold.reason.as_deref(),
        Some("stage 1 of 3 (1%): waiting for data")
    );
    let by_flag = store
        .audit(&AuditQuery {
            environment: Some(environment.to_string()),
            flag: Some("checkout".to_string()),
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert!(
        by_flag.iter().any(|entry| entry.action == "ramp.hold"),
        "a flag's audit log shows its ramp's decisions"
    );
    assert_eq!(
        load(store, environment).await.revision,
        revision,
        "a ramp write is not a change to the environment"
    );
}

async fn deleting_an_environment_removes_its_ramps(store: &dyn Store) {
    let environment = "ramps-deleted";
    create(store, environment).await;
    put_ramp(
        store,
        ramp_record(environment, "checkout", 1, 0),
        Vec::new(),
    )
    .await;
    store
        .merge_aggregates(vec![Aggregate {
            key: aggregate_key(environment, "checkout", 1, 0, Cohort::Control, "m"),
            counts: values(&[(1, 5)]),
        }])
        .await
        .unwrap();
    store
        .delete_environment(
            environment,
            audit(Some(environment), "environment.delete", environment),
        )
        .await
        .unwrap();
    assert_eq!(store.ramp(environment, "checkout").await.unwrap(), None);
    create(store, environment).await;
    assert_eq!(
        store.ramp(environment, "checkout").await.unwrap(),
        None,
        "a new environment of the same name starts with no ramp"
    );
    assert_eq!(
        stored_aggregates(store, environment, "checkout", 1).await,
        [],
        "nor with the counts of the old one's ramps"
    );
}

async fn incidents_are_numbered_and_paged_newest_first(store: &dyn Store) {
    let mut ids = Vec::new();
    for stage in 0..5 {
        let flag = if stage % 2 == 0 { "checkout" } else { "search" };
        ids.push(add_incident(store, incident("incidents", flag, stage)).await);
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let stored = store.incident(ids[2]).await.unwrap().unwrap();
    assert_eq!(
        stored,
        IncidentRecord {
            id: ids[2],
            ..incident("incidents", "checkout", 2)
        }
    );
    assert_eq!(store.incident(u64::MAX - 1).await.unwrap(), None);

    let query = |flag: Option<&str>, before: Option<u64>, limit: usize| IncidentQuery {
        environment: Some("incidents".to_string()),
        flag: flag.map(str::to_string),
        before,
        limit,
    };
    let stages = |found: Vec<IncidentRecord>| -> Vec<u32> {
        found
            .into_iter()
            .map(|incident| incident.stage.get())
            .collect()
    };
    let first = store.incidents(&query(None, None, 2)).await.unwrap();
    assert_eq!(stages(first.clone()), vec![4, 3]);
    let second = store
        .incidents(&query(None, Some(first[1].id), 2))
        .await
        .unwrap();
    assert_eq!(stages(second), vec![2, 1]);
    let checkout = store
        .incidents(&query(Some("checkout"), None, 10))
        .await
        .unwrap();
    assert_eq!(stages(checkout), vec![4, 2, 0]);
    let elsewhere = store
        .incidents(&IncidentQuery {
            environment: Some("no-incidents-here".to_string()),
            limit: 10,
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert!(elsewhere.is_empty());
}

/// Two nodes must never both carry out one ramp decision: a write made from a record that
/// another write has replaced since is refused, and so is a controller's write fenced with a
/// lease another node has taken since; a refused write leaves no trace, its incident
/// included.
async fn ramp_writes_are_refused_once_overtaken(store: &dyn Store) {
    let environment = "ramps-overtaken";
    create(store, environment).await;
    let stored = put_ramp(
        store,
        ramp_record(environment, "checkout", 1, 0),
        Vec::new(),
    )
    .await;
    let write = |record: RampRecord, fence: Option<u64>, incident_id: Option<u64>| RampWrite {
        record,
        audit: vec![audit(Some(environment), "ramp.kill", "checkout")],
        incident: incident_id.map(|id| IncidentRecord {
            id,
            ..incident(environment, "checkout", 0)
        }),
        fence,
        webhooks: Vec::new(),
    };
    let incident_id = store.reserve_incident_id().await.unwrap();
    let stale = RampRecord {
        version: stored.version - 1,
        ..ramp_record(environment, "checkout", 1, 2)
    };
    let refused = store
        .put_ramp(write(stale, None, Some(incident_id)))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::RampChanged { .. }),
        "{refused:?}"
    );
    assert_eq!(
        store.ramp(environment, "checkout").await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.incident(incident_id).await.unwrap(), None);
    assert!(
        audit_of(store, environment)
            .await
            .iter()
            .all(|entry| entry.action != "ramp.kill"),
        "a refused write appends no audit entry"
    );

    // The lease: one holder at a time, renewed by its holder, taken over once it runs out,
    // with a larger token.
    let lease = Duration::from_millis(400);
    let first = store.lease("node-a", lease).await.unwrap().expect("free");
    assert_eq!(store.lease("node-b", lease).await.unwrap(), None);
    assert_eq!(store.lease("node-a", lease).await.unwrap(), Some(first));
    let version = store
        .put_ramp(write(stored.clone(), Some(first), None))
        .await
        .expect("the holder's fenced write goes through");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = store
        .lease("node-b", lease)
        .await
        .unwrap()
        .expect("expired");
    assert!(second > first, "{second} > {first}");
    let current = RampRecord { version, ..stored };
    let refused = store
        .put_ramp(write(current.clone(), Some(first), Some(incident_id)))
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::LeaseLost), "{refused:?}");
    assert_eq!(store.incident(incident_id).await.unwrap(), None);
    store
        .put_ramp(write(current, Some(second), Some(incident_id)))
        .await
        .expect("the new holder's write goes through");
    assert_eq!(
        store
            .incident(incident_id)
            .await
            .unwrap()
            .map(|found| found.id),
        Some(incident_id)
    );
}

/// A decision's webhook deliveries are stored with it, and only with it, until done.
async fn webhooks_are_kept_with_their_decision_until_done(store: &dyn Store) {
    let environment = "webhooks";
    create(store, environment).await;
    let webhook = |id: &str| super::PendingWebhook {
        id: id.to_string(),
        event: "ramp.kill".to_string(),
        body: serde_json::json!({"event": "ramp.kill", "environment": environment, "stage": 0.5}),
    };
    let record = ramp_record(environment, "checkout", 1, 0);
    let write = |record: RampRecord, webhooks| RampWrite {
        record,
        audit: Vec::new(),
        incident: None,
        fence: None,
        webhooks,
    };
    let stored = store
        .put_ramp(write(record.clone(), vec![webhook("w-1"), webhook("w-2")]))
        .await
        .unwrap();
    let ids = |found: Vec<super::PendingWebhook>| {
        let mut ids: Vec<String> = found
            .into_iter()
            .filter(|pending| pending.body["environment"] == environment)
            .map(|pending| pending.id)
            .collect();
        ids.sort();
        ids
    };
    let pending = store.pending_webhooks().await.unwrap();
    assert!(pending.contains(&webhook("w-1")), "{pending:?}");
    assert_eq!(ids(pending), ["w-1", "w-2"]);
    // A refused decision leaves none.
    let refused = store
        .put_ramp(write(record.clone(), vec![webhook("w-3")]))
        .await;
    assert!(
        matches!(refused, Err(StoreError::RampChanged { .. })),
        "{refused:?}"
    );
    store.webhook_done("w-1").await.unwrap();
    assert_eq!(ids(store.pending_webhooks().await.unwrap()), ["w-2"]);
    store.webhook_done("w-2").await.unwrap();
    store.webhook_done("w-2").await.unwrap();
    assert_eq!(
        ids(store.pending_webhooks().await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(stored, 1);
}

/// A batch sent again under its id (a retry whose answer was lost) counts once, while the
/// id is remembered; another id counts; an id forgotten after the window counts again.
async fn a_named_batch_counts_once(store: &dyn Store) {
    let environment = "batches";
    let delta = |events: u64| Aggregate {
        key: aggregate_key(environment, "checkout", 1, 0, Cohort::Treatment, "crashes"),
        counts: AggregateCounts::Rate { events, trials: 10 },
    };
    let now = 1_800_000_000;
    assert!(store.merge_batch("b-1", vec![delta(1)], now).await.unwrap());
    assert!(
        !store
            .merge_batch("b-1", vec![delta(1)], now + 5)
            .await
            .unwrap(),
        "the same id again is not merged"
    );
    assert!(store
        .merge_batch("b-2", vec![delta(2)], now + 5)
        .await
        .unwrap());
    let counts = |found: Vec<Aggregate>| {
        found
            .into_iter()
            .map(|aggregate| aggregate.counts)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(store.aggregates(environment, "checkout", 1).await.unwrap()),
        [AggregateCounts::Rate {
            events: 3,
            trials: 20
        }]
    );
    // Past the window, the id is forgotten.
    let later = now + super::BATCH_IDS_KEPT_SECONDS + 120;
    assert!(store
        .merge_batch("b-1", vec![delta(1)], later)
        .await
        .unwrap());
    // And a batch id is no aggregate: clearing a flag's counts leaves the ids.
    assert!(store
        .merge_batch("b-3", vec![delta(2)], later)
        .await
        .unwrap());
    store
        .clear_aggregates(environment, "checkout")
        .await
        .unwrap();
    assert!(!store
        .merge_batch("b-3", vec![delta(2)], later)
        .await
        .unwrap());
    assert_eq!(
        store.aggregates(environment, "checkout", 1).await.unwrap(),
        []
    );
}

/// The first half of a durability check of batch ids: one merged. [`check_batch`] then runs
/// on the store reopened.
pub(crate) async fn write_batch(store: &dyn Store) {
    let delta = Aggregate {
        key: aggregate_key("batches-kept", "checkout", 1, 0, Cohort::Control, "crashes"),
        counts: AggregateCounts::Rate {
            events: 1,
            trials: 4,
        },
    };
    assert!(store
        .merge_batch("kept-1", vec![delta], 1_800_000_000)
        .await
        .unwrap());
}

/// The id [`write_batch`] merged is still remembered, with its counts.
pub(crate) async fn check_batch(store: &dyn Store) {
    let delta = Aggregate {
        key: aggregate_key("batches-kept", "checkout", 1, 0, Cohort::Control, "crashes"),
        counts: AggregateCounts::Rate {
            events: 1,
            trials: 4,
        },
    };
    assert!(!store
        .merge_batch("kept-1", vec![delta], 1_800_000_010)
        .await
        .unwrap());
    let stored = store
        .aggregates("batches-kept", "checkout", 1)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].counts.total(), 4);
}

fn actions_and_targets(entries: &[AuditRecord]) -> Vec<(&str, &str)> {
    entries
        .iter()
        .map(|entry| (entry.action.as_str(), entry.target.as_str()))
        .collect()
}

fn created_at(name: &str) -> String {
    format!("2024-05-01T00:00:00Z#{name}")
}

fn record(name: &str, revision: u64) -> EnvironmentRecord {
    EnvironmentRecord {
        name: name.to_string(),
        revision,
        created_at: created_at(name),
    }
}

fn key_record(id: &str, name: &str, scope: Scope, environment: Option<&str>) -> KeyRecord {
    KeyRecord {
        id: id.to_string(),
        name: name.to_string(),
        scope,
        environment: environment.map(str::to_string),
        hash: format!("{:0>64}", id.len()),
        prefix: format!("rc_{id}"),
        created_at: "2024-05-01T00:00:00Z".to_string(),
        revoked_at: None,
    }
}

async fn create(store: &dyn Store, name: &str) -> EnvironmentRecord {
    store
        .create_environment(
            name,
            &created_at(name),
            audit(Some(name), "environment.create", name),
        )
        .await
        .unwrap()
}

async fn load(store: &dyn Store, name: &str) -> EnvironmentState {
    store
        .load_environment(name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("environment `{name}` exists"))
}

async fn sorted_keys(store: &dyn Store) -> Vec<KeyRecord> {
    let mut keys = store.keys().await.unwrap();
    keys.sort_by(|left, right| left.id.cmp(&right.id));
    keys
}

/// Every audit entry of one environment, newest first.
async fn audit_of(store: &dyn Store, environment: &str) -> Vec<AuditRecord> {
    store
        .audit(&AuditQuery {
            environment: Some(environment.to_string()),
            limit: usize::MAX,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

/// Reads `query` page by page, each page starting before the last id of the one before,
/// the way a client of the admin API walks the log.
async fn read_pages(store: &dyn Store, query: AuditQuery, limit: usize) -> Vec<Vec<AuditRecord>> {
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .audit(&AuditQuery {
                before,
                limit,
                ..query.clone()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return pages;
        };
        assert!(pages.len() < 1000, "paging does not end");
        before = Some(last.id);
        pages.push(page);
    }
}

/// The next change event; shared backends deliver asynchronously, so wait a little.
async fn next_event(feed: &mut broadcast::Receiver<ChangeEvent>) -> ChangeEvent {
    tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .expect("a change event arrives within 5s")
        .expect("the change feed neither lags nor closes")
}

fn look(environment: &str, flag: &str, generation: u64, time: u64) -> LookRecord {
    LookRecord {
        environment: environment.to_string(),
        flag: flag.to_string(),
        generation,
        time,
        stage: Stage::new(0),
        percentage: 5.0,
        status: "running".to_string(),
        guards: vec![LookGuard {
            metric: "errors".to_string(),
            evidence: None,
            error: Some(format!("look at {time}")),
        }],
    }
}

fn times(looks: &[LookRecord]) -> Vec<u64> {
    looks.iter().map(|look| look.time).collect()
}

/// One point a minute, oldest first, thinned past the bound; generations, flags and
/// environments kept apart; a flag's history cleared whole.
async fn look_history(store: &dyn Store) {
    let keep = 1000;
    assert!(store
        .looks("looks", "checkout", 1)
        .await
        .unwrap()
        .is_empty());
    // Written out of order; a later look of a minute replaces the one kept.
    for time in [120, 0, 60, 150] {
        store
            .add_look(look("looks", "checkout", 1, time), keep)
            .await
            .unwrap();
    }
    let kept = store.looks("looks", "checkout", 1).await.unwrap();
    assert_eq!(times(&kept), [0, 60, 150]);
    assert_eq!(kept[2], look("looks", "checkout", 1, 150));
    store
        .add_look(look("looks", "checkout", 2, 0), keep)
        .await
        .unwrap();
    store
        .add_look(look("looks", "search", 1, 0), keep)
        .await
        .unwrap();
    store
        .add_look(look("looks-b", "checkout", 1, 0), keep)
        .await
        .unwrap();
    assert_eq!(
        times(&store.looks("looks", "checkout", 1).await.unwrap()),
        [0, 60, 150]
    );
    assert_eq!(
        times(&store.looks("looks", "checkout", 2).await.unwrap()),
        [0]
    );

    // Past the bound the older half loses every other point; the newest are all kept.
    for minute in 0..9 {
        store
            .add_look(look("looks", "thinned", 1, minute * 60), 8)
            .await
            .unwrap();
    }
    let kept = store.looks("looks", "thinned", 1).await.unwrap();
    assert!(kept.len() <= 8, "{:?}", times(&kept));
    assert_eq!(kept.first().map(|look| look.time), Some(0));
    assert_eq!(
        times(&kept[kept.len() - 4..]),
        [300, 360, 420, 480],
        "{:?}",
        times(&kept)
    );

    store.clear_looks("looks", "checkout").await.unwrap();
    assert!(store
        .looks("looks", "checkout", 1)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .looks("looks", "checkout", 2)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.looks("looks", "search", 1).await.unwrap().len(), 1);
    assert_eq!(
        store.looks("looks-b", "checkout", 1).await.unwrap().len(),
        1
    );
}

/// Fills `from` (empty) with something of every kind, copies it into `to` (empty), and
/// checks that `to` then holds exactly what `from` does, carries on numbering after it, and
/// refuses a second import.
pub(crate) async fn copy_everything(from: &dyn Store, to: &dyn Store) {
    write_one_flag(from).await;
    write_aggregates(from).await;
    from.put_key(
        key_record(
            "key-copied",
            "copied-bot",
            Scope::Server,
            Some(DURABLE_ENVIRONMENT),
        ),
        audit(None, "key.create", "copied-bot"),
    )
    .await
    .unwrap();
    let ramp = put_ramp(
        from,
        ramp_record(DURABLE_ENVIRONMENT, "checkout", 1, 0),
        Vec::new(),
    )
    .await;
    add_incident(from, incident(DURABLE_ENVIRONMENT, "checkout", 0)).await;
    from.add_look(
        look(DURABLE_ENVIRONMENT, "checkout", ramp.state.generation, 60),
        10,
    )
    .await
    .unwrap();
    // A batch remembered, and a webhook not yet delivered.
    let batch = || {
        vec![Aggregate {
            // A flag without a ramp: its counts are not copied, the id is.
            key: aggregate_key(
                DURABLE_ENVIRONMENT,
                "batch-only",
                1,
                0,
                Cohort::Control,
                "crashes",
            ),
            counts: AggregateCounts::Rate {
                events: 1,
                trials: 1,
            },
        }]
    };
    assert!(from
        .merge_batch("batch-copied", batch(), 1_800_000_000)
        .await
        .unwrap());
    let current = from
        .ramp(DURABLE_ENVIRONMENT, "checkout")
        .await
        .unwrap()
        .expect("the ramp written above");
    from.put_ramp(RampWrite {
        record: current,
        audit: Vec::new(),
        incident: None,
        fence: None,
        webhooks: vec![super::PendingWebhook {
            id: "delivery-copied".to_string(),
            event: "ramp.kill".to_string(),
            body: serde_json::json!({"event": "ramp.kill"}),
        }],
    })
    .await
    .unwrap();

    let copied = super::copy::copy(from, to).await.unwrap();
    assert_eq!(
        copied.batch_ids,
        vec![("batch-copied".to_string(), 1_800_000_000)]
    );
    assert_eq!(copied.webhooks.len(), 1);
    assert!(!copied.environments.is_empty() && !copied.aggregates.is_empty());
    assert!(!copied.unit_markers.is_empty());
    let sorted = |mut dump: super::copy::Dump| {
        dump.aggregates
            .sort_by_key(|aggregate| format!("{:?}", aggregate));
        dump.unit_markers
            .sort_by_key(|aggregate| format!("{:?}", aggregate));
        dump
    };
    assert_eq!(
        sorted(super::copy::export(to).await.unwrap()),
        sorted(super::copy::export(from).await.unwrap()),
        "the copy holds what the original does"
    );
    // The units counted before the copy stay counted after it, a batch sent again is
    // still known, and the delivery is still pending.
    check_aggregates(to).await;
    assert!(!to
        .merge_batch("batch-copied", batch(), 1_800_000_060)
        .await
        .unwrap());
    assert_eq!(
        to.pending_webhooks()
            .await
            .unwrap()
            .into_iter()
            .map(|pending| pending.id)
            .collect::<Vec<_>>(),
        vec!["delivery-copied".to_string()]
    );

    // It carries on from where the original was.
    let last_audit = copied.audit.iter().map(|entry| entry.id).max().unwrap();
    check_one_flag(to).await;
    let newest = audit_of(to, DURABLE_ENVIRONMENT).await;
    assert!(newest[0].id > last_audit, "{} > {last_audit}", newest[0].id);

    let refused = to.import(copied).await.unwrap_err();
    assert!(matches!(refused, StoreError::NotEmpty(_)), "{refused:?}");
}
