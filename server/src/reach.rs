//! Kill reach: which running instances of SDKs and apps have fetched which revision of each
//! environment, so that a ramp's status can say how many of the instances seen in the last
//! hour have fetched its kill.
//!
//! Instances name themselves with the `x-ripcord-instance` header (gRPC metadata or HTTP
//! header) on every request. Where a revision is handed out (an evaluation, a ruleset, a
//! stream's message or heartbeat), the handler records it here. The tracker lives in memory
//! only: after a restart it counts again from the instances that come back, which they do
//! within a refresh or a reconnection.
//!
//! Recording is on the hot path of evaluation: one short lock of one of sixteen shards, no
//! allocation for an instance already known. Ids come from clients, so each map is keyed
//! with a random hash seed, ids that are too long or not printable ASCII are ignored, and
//! each environment holds a bounded number of instances, the least recently seen going
//! first.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::clock::unix_now;

/// The header (HTTP, any case) and gRPC metadata key that carry the instance id.
pub const HEADER: &str = "x-ripcord-instance";

/// An instance counts as active if it was seen this recently.
pub const ACTIVE_SECONDS: u64 = 3600;

/// The most instances remembered per environment.
pub const MAX_INSTANCES_PER_ENVIRONMENT: usize = 100_000;

/// Longer ids are ignored.
pub const MAX_ID_BYTES: usize = 128;

const SHARDS: usize = 16;

pub use crate::store::Reach;
use crate::store::SeenInstance;

/// On a shared store, an instance seen again is handed out again once this much later than
/// what was handed out last: often enough for the hour-long active window, rarely enough
/// that a busy instance costs Redis little.
const PUBLISH_SEEN_SECONDS: u64 = 60;

/// Instances per environment; see the module's documentation.
pub struct ReachTracker {
    shards: Box<[Padded]>,
    per_shard: usize,
}

/// A shard on cache lines of its own: threads recording in different shards do not slow
/// each other down.
#[repr(align(128))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

#[derive(Default)]
struct Shard {
    /// A server has a few environments: a list beats hashing the name.
    environments: Vec<(Box<str>, Instances)>,
}

/// Keyed with the default hasher's random seed (one per map), so that ids chosen to
/// collide cannot slow a map down.
type Instances = HashMap<Box<str>, Seen>;

impl Shard {
    fn instances(&self, environment: &str) -> Option<&Instances> {
        self.environments
            .iter()
            .find(|(name, _)| **name == *environment)
            .map(|(_, instances)| instances)
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The highest revision the instance has fetched: an instance does not unlearn a kill.
    revision: u64,
    last_seen: u64,
    /// What [`ReachTracker::unpublished`] last handed out of it: (0, 0) never.
    published: (u64, u64),
}

impl Default for ReachTracker {
    fn default() -> ReachTracker {
        ReachTracker::with_capacity(MAX_INSTANCES_PER_ENVIRONMENT)
    }
}

/// Whether an id is one the tracker counts.
pub fn valid_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.iter().all(|byte| (0x20..=0x7e).contains(byte))
        && id.iter().any(|byte| *byte != b' ')
}

impl ReachTracker {
    /// A tracker that remembers about `max_per_environment` instances per environment.
    pub fn with_capacity(max_per_environment: usize) -> ReachTracker {
        ReachTracker {
            shards: (0..SHARDS).map(|_| Padded::default()).collect(),
            per_shard: max_per_environment.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, instance_id: &str) -> MutexGuard<'_, Shard> {
        // A fast hash is enough here: ids chosen to land in one shard only make that shard
        // busier; the maps inside are protected by their own seeds.
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write(instance_id.as_bytes());
        let index = (hasher.finish() >> 32) as usize % SHARDS;
        // Every update leaves a shard consistent: a panic elsewhere does not spoil it.
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `instance_id` has now fetched `revision` of `environment`. An id that is
    /// not valid is ignored.
    pub fn record(&self, environment: &str, instance_id: &str, revision: u64, now_seconds: u64) {
        if !valid_id(instance_id.as_bytes()) {
            return;
        }
        let per_shard = self.per_shard;
        let mut shard = self.shard(instance_id);
        let position = match shard
            .environments
            .iter()
            .position(|(name, _)| **name == *environment)
        {
            Some(position) => position,
            None => {
                shard
                    .environments
                    .push((environment.into(), Instances::default()));
                shard.environments.len() - 1
            }
        };
        let instances = &mut shard.environments[position].1;
        if let Some(seen) = instances.get_mut(instance_id) {
            seen.revision = seen.revision.max(revision);
            seen.last_seen = seen.last_seen.max(now_seconds);
            return;
        }
        if instances.len() >= per_shard {
            evict(instances, per_shard, now_seconds);
        }
        instances.insert(
            instance_id.into(),
            Seen {
                revision,
                last_seen: now_seconds,
                published: (0, 0),
            },
        );
    }

    /// [`record`](Self::record) with a header's raw value, if the request had one, now.
    pub fn record_header(&self, environment: &str, header: Option<&[u8]>, revision: u64) {
        if let Some(id) = header.filter(|id| valid_id(id)) {
            // Valid ids are ASCII, so this always succeeds.
            if let Ok(id) = std::str::from_utf8(id) {
                self.record(environment, id, revision, unix_now());
            }
        }
    }

    /// How many instances of `environment` were seen in the hour before `now_seconds`, and
    /// how many of those have fetched `since_revision` or later.
    pub fn reach(&self, environment: &str, since_revision: u64, now_seconds: u64) -> Reach {
        let mut reach = Reach::default();
        for shard in self.shards.iter() {
            let shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(instances) = shard.instances(environment) else {
                continue;
            };
            for seen in instances.values() {
                if now_seconds.saturating_sub(seen.last_seen) < ACTIVE_SECONDS {
                    reach.active += 1;
                    reach.fetched += u64::from(seen.revision >= since_revision);
                }
            }
        }
        reach
    }

    /// What was seen since the last call, per environment, for a store that other nodes
    /// share: instances new or with a higher revision, and those seen again a while after
    /// they were last handed out.
    pub fn unpublished(&self) -> Vec<(String, Vec<SeenInstance>)> {
        let mut found: Vec<(String, Vec<SeenInstance>)> = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            for (environment, instances) in &mut shard.environments {
                let mut seen_here = Vec::new();
                for (id, seen) in instances.iter_mut() {
                    let (revision, last_seen) = seen.published;
                    let news = seen.revision > revision
                        || seen.last_seen >= last_seen.saturating_add(PUBLISH_SEEN_SECONDS)
                        || seen.published == (0, 0);
                    if news {
                        seen.published = (seen.revision, seen.last_seen);
                        seen_here.push(SeenInstance {
                            id: id.to_string(),
                            revision: seen.revision,
                            last_seen: seen.last_seen,
                        });
                    }
                }
                if seen_here.is_empty() {
                    continue;
                }
                match found.iter_mut().find(|(name, _)| **name == **environment) {
                    Some((_, all)) => all.extend(seen_here),
                    None => found.push((environment.to_string(), seen_here)),
                }
            }
        }
        found
    }

    /// The environments with instances.
    pub fn environments(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, _) in &shard.environments {
                if !names.iter().any(|known| **known == **name) {
                    names.push(name.to_string());
                }
            }
        }
        names
    }

    /// Forgets an environment's instances: it was deleted, and one created under the same
    /// name starts its revisions again.
    pub fn forget(&self, environment: &str) {
        for shard in self.shards.iter() {
            shard
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .environments
                .retain(|(name, _)| **name != *environment);
        }
    }

    /// A handle for a stream that records one instance as it goes, if the id is valid.
    pub fn instance(
        self: &Arc<Self>,
        environment: &str,
        header: Option<&[u8]>,
    ) -> Option<Instance> {
        let id = std::str::from_utf8(header.filter(|id| valid_id(id))?).ok()?;
        Some(Instance {
            tracker: Arc::clone(self),
            environment: environment.into(),
            id: id.into(),
        })
    }
}

/// Makes room in a full map: instances not seen within the active window first, then the
/// least recently seen eighth, so that eviction's cost is spread over many inserts.
fn evict(instances: &mut Instances, capacity: usize, now_seconds: u64) {
    instances.retain(|_, seen| now_seconds.saturating_sub(seen.last_seen) < ACTIVE_SECONDS);
    if instances.len() < capacity {
        return;
    }
    let mut times: Vec<u64> = instances.values().map(|seen| seen.last_seen).collect();
    let remove = (capacity / 8).max(1).min(times.len());
    let (_, cutoff, _) = times.select_nth_unstable(remove - 1);
    let cutoff = *cutoff;
    // Everything older than the cutoff goes, and of those seen in the cutoff's second only
    // as many as make up the eighth: instances that all came in the same second (a fleet
    // reconnecting after a restart) must not empty the map.
    let older = times.iter().filter(|time| **time < cutoff).count();
    let mut ties = remove.saturating_sub(older);
    instances.retain(|_, seen| {
        if seen.last_seen < cutoff {
            return false;
        }
        if seen.last_seen == cutoff && ties > 0 {
            ties -= 1;
            return false;
        }
        true
    });
}

/// How many rounds of [`publish`] between two prunings of the shared reach.
const PRUNE_ROUNDS: u64 = 150;

/// Hands what this node sees of instances to a store that other nodes share, every `every`,
/// until `stop`: a kill's reach then counts the instances any node served.
pub fn publish(
    tracker: Arc<ReachTracker>,
    store: Arc<dyn crate::store::Store>,
    every: std::time::Duration,
    mut stop: crate::shutdown::Signal,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds: u64 = 0;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.stopped() => return,
            }
            rounds += 1;
            if rounds % PRUNE_ROUNDS == 0 {
                // Reading the shared reach drops the instances gone quiet as it goes: without
                // it, the shared hash of a busy environment would keep every instance ever
                // seen.
                let active_after = unix_now().saturating_sub(ACTIVE_SECONDS);
                for environment in tracker.environments() {
                    if let Err(error) = store.reach(&environment, u64::MAX, active_after).await {
                        tracing::warn!(environment, %error, "pruning the shared kill reach failed");
                    }
                }
            }
            for (environment, seen) in tracker.unpublished() {
                if let Err(error) = store.merge_reach(&environment, seen).await {
                    // Handed out again with the next news of these instances; until then
                    // the reach counts them from this node alone.
                    tracing::warn!(environment, %error, "sharing the kill reach failed");
                }
            }
        }
    })
}

/// One instance of one environment, held by a stream that records every revision it sends.
pub struct Instance {
    tracker: Arc<ReachTracker>,
    environment: Box<str>,
    id: Box<str>,
}

impl Instance {
    pub fn record(&self, revision: u64) {
        self.tracker
            .record(&self.environment, &self.id, revision, unix_now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_new_is_handed_out_once_for_a_shared_store() {
        let tracker = ReachTracker::default();
        tracker.record("prod", "phone-1", 3, 1_000);
        tracker.record("prod", "phone-2", 4, 1_000);
        tracker.record("test", "phone-1", 1, 1_000);
        let mut first = tracker.unpublished();
        first.sort_by(|a, b| a.0.cmp(&b.0));
        let ids = |seen: &[SeenInstance]| {
            let mut ids: Vec<(String, u64)> = seen
                .iter()
                .map(|instance| (instance.id.clone(), instance.revision))
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(first.len(), 2);
        assert_eq!(
            ids(&first[0].1),
            [("phone-1".to_string(), 3), ("phone-2".to_string(), 4)]
        );
        assert!(
            tracker.unpublished().is_empty(),
            "nothing new: nothing handed out"
        );

        // A kill fetched is news at once; being seen again only a while later.
        tracker.record("prod", "phone-1", 5, 1_010);
        tracker.record("prod", "phone-2", 4, 1_010);
        let second = tracker.unpublished();
        assert_eq!(second.len(), 1);
        assert_eq!(ids(&second[0].1), [("phone-1".to_string(), 5)]);
        tracker.record("prod", "phone-2", 4, 1_000 + PUBLISH_SEEN_SECONDS);
        let third = tracker.unpublished();
        assert_eq!(ids(&third[0].1), [("phone-2".to_string(), 4)]);
        assert_eq!(third[0].1[0].last_seen, 1_000 + PUBLISH_SEEN_SECONDS);
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn reach_counts_active_instances_and_those_at_or_past_the_revision() {
        let tracker = ReachTracker::default();
        tracker.record("prod", "a", 10, NOW);
        tracker.record("prod", "b", 12, NOW);
        tracker.record("prod", "c", 9, NOW);
        tracker.record("staging", "a", 50, NOW);
        assert_eq!(
            tracker.reach("prod", 10, NOW),
            Reach {
                active: 3,
                fetched: 2
            }
        );
        assert_eq!(tracker.reach("prod", 13, NOW).fetched, 0);
        assert_eq!(tracker.reach("prod", 0, NOW).fetched, 3);
        assert_eq!(tracker.reach("nowhere", 0, NOW), Reach::default());

        // An older revision later (a request that raced a newer one) does not undo a fetch.
        tracker.record("prod", "b", 3, NOW + 1);
        assert_eq!(tracker.reach("prod", 12, NOW + 1).fetched, 1);
        tracker.record("prod", "c", 12, NOW + 2);
        assert_eq!(tracker.reach("prod", 12, NOW + 2).fetched, 2);
    }

    #[test]
    fn instances_not_seen_for_an_hour_are_not_active() {
        let tracker = ReachTracker::default();
        tracker.record("prod", "old", 5, NOW);
        tracker.record("prod", "recent", 1, NOW + 1800);
        let later = NOW + ACTIVE_SECONDS;
        assert_eq!(
            tracker.reach("prod", 5, later),
            Reach {
                active: 1,
                fetched: 0
            },
            "`old` was last seen an hour ago"
        );
        assert_eq!(tracker.reach("prod", 5, later - 1).active, 2);
        tracker.record("prod", "old", 5, later);
        assert_eq!(tracker.reach("prod", 5, later).fetched, 1, "seen again");
    }

    #[test]
    fn a_full_environment_evicts_the_least_recently_seen() {
        let capacity = SHARDS * 8;
        let tracker = ReachTracker::with_capacity(capacity);
        for index in 0..capacity * 4 {
            tracker.record("prod", &format!("i-{index}"), 1, NOW + index as u64);
        }
        let now = NOW + (capacity * 4) as u64;
        let reach = tracker.reach("prod", 0, now);
        assert!(reach.active as usize <= capacity, "{reach:?}");
        assert!(reach.active as usize >= capacity / 2, "{reach:?}");
        // The most recent ones are all still there; the first ones are gone.
        let tracked = |index: usize| {
            let shard = tracker.shard(&format!("i-{index}"));
            let instances = shard.instances("prod").unwrap();
            instances.contains_key(format!("i-{index}").as_str())
        };
        assert!((capacity * 4 - 4..capacity * 4).all(tracked));
        assert!(!(0..4).any(tracked));
        assert_eq!(tracker.reach("other", 0, now), Reach::default());
    }

    #[test]
    fn a_fleet_arriving_in_one_second_keeps_a_full_environment_full() {
        let capacity = SHARDS * 64;
        let tracker = ReachTracker::with_capacity(capacity);
        // Two and a half times the capacity, all in the same second: each eviction takes an
        // eighth of a shard, not every instance tied at the oldest time.
        for index in 0..capacity * 5 / 2 {
            tracker.record("prod", &format!("i-{index}"), 1, NOW);
        }
        let reach = tracker.reach("prod", 0, NOW);
        assert!(reach.active as usize <= capacity, "{reach:?}");
        assert!(reach.active as usize >= capacity * 3 / 4, "{reach:?}");
    }

    #[test]
    fn ids_that_are_too_long_or_not_printable_are_ignored() {
        let tracker = ReachTracker::default();
        let long = "x".repeat(MAX_ID_BYTES + 1);
        for id in ["", "   ", "tab\there", "é", long.as_str()] {
            tracker.record("prod", id, 1, NOW);
        }
        tracker.record_header("prod", Some(&[0xff, 0x41]), 1);
        tracker.record_header("prod", None, 1);
        assert_eq!(tracker.reach("prod", 0, NOW).active, 0);
        tracker.record("prod", &"x".repeat(MAX_ID_BYTES), 1, NOW);
        tracker.record_header("prod", Some(b"pod 7"), 1);
        assert_eq!(tracker.reach("prod", 0, unix_now()).active, 2);
        let tracker = Arc::new(tracker);
        assert!(tracker.instance("prod", Some(b"\x01")).is_none());
        let stream = tracker.instance("prod", Some(b"stream-1")).unwrap();
        stream.record(4);
        assert_eq!(tracker.reach("prod", 4, unix_now()).fetched, 1);
    }

    #[test]
    fn a_deleted_environment_is_forgotten() {
        let tracker = ReachTracker::default();
        tracker.record("prod", "a", 40, NOW);
        tracker.forget("prod");
        assert_eq!(tracker.reach("prod", 0, NOW), Reach::default());
    }
}
