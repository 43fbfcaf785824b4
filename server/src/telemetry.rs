//! Telemetry: the Prometheus metrics served on `/metrics`: evaluations, request latency, snapshot revisions.
//!
//! Evaluation counts live outside the prometheus registry, in [`Evaluations`]: a registry
//! vector takes a lock and hashes its labels on every increment, and evaluation never takes
//! a lock. They are rendered after the registry's own output.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::core::Collector as _;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry, TextEncoder};
use ripcord_engine::Reason;
use rustc_hash::FxHashMap;

pub struct Metrics {
    registry: Registry,
    pub evaluations: Evaluations,
    pub request_duration: HistogramVec,
    snapshot_revision: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "ripcord_http_request_duration_seconds",
                "HTTP request latency by route and status.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let snapshot_revision = IntGaugeVec::new(
            Opts::new(
                "ripcord_snapshot_revision",
                "The revision of the snapshot each environment serves.",
            ),
            &["environment"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(request_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(snapshot_revision.clone()),
        ] {
            registry
                .register(collector)
                .expect("metrics are registered once");
        }
        Metrics {
            registry,
            evaluations: Evaluations::default(),
            request_duration,
            snapshot_revision,
        }
    }

    /// Sets the revision gauge to `revisions`, the environments that exist now, and removes
    /// the series of any other: a deleted environment must not look like one stuck at its
    /// last revision.
    pub fn set_snapshot_revisions<'a>(&self, revisions: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut current = Vec::new();
        for (environment, revision) in revisions {
            self.snapshot_revision
                .with_label_values(&[environment])
                .set(i64::try_from(revision).unwrap_or(i64::MAX));
            current.push(environment);
        }
        let mut gone = Vec::new();
        for family in self.snapshot_revision.collect() {
            for metric in family.get_metric() {
                for label in metric.get_label() {
                    if label.name() == "environment" && !current.contains(&label.value()) {
                        gone.push(label.value().to_string());
                    }
                }
            }
        }
        for environment in gone {
            // Another scrape may have removed it first: nothing to do then.
            let _ = self.snapshot_revision.remove_label_values(&[&environment]);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        self.evaluations.render(&mut text);
        text
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Every reason, in the order of the counters of one flag.
const REASONS: [Reason; 6] = [
    Reason::Static,
    Reason::TargetingMatch,
    Reason::Split,
    Reason::Default,
    Reason::Disabled,
    Reason::Error,
];

/// Where a reason's counter is: a `match` rather than a search, so that a reason added to
/// the engine fails to compile here instead of going uncounted.
fn reason_index(reason: Reason) -> usize {
    match reason {
        Reason::Static => 0,
        Reason::TargetingMatch => 1,
        Reason::Split => 2,
        Reason::Default => 3,
        Reason::Disabled => 4,
        Reason::Error => 5,
    }
}

type Counts = [AtomicU64; REASONS.len()];
/// One environment's counters by flag key.
type FlagCounts = FxHashMap<Arc<str>, Arc<Counts>>;
/// Two levels rather than one map keyed by `(environment, flag)`: the hot path looks both
/// up by `&str` without building a key, and a new flag copies one environment's map only.
type EnvironmentCounts = FxHashMap<Arc<str>, Arc<FlagCounts>>;

/// `ripcord_evaluations_total{environment, flag, reason}`, counted without a lock: the
/// maps are immutable and swapped whole, the counters in them are atomics. Only the first
/// evaluation of a flag in an environment swaps in a map that has it. Counters are keyed by
/// names, not by snapshot, so they keep counting across changes.
pub struct Evaluations {
    counts: ArcSwap<EnvironmentCounts>,
    /// Tells this set of counters from any other in the process, so that counters looked up
    /// for a snapshot are never used to count into another set (see [`ByPosition`]).
    id: u64,
}

impl Default for Evaluations {
    fn default() -> Evaluations {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Evaluations {
            counts: ArcSwap::default(),
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl Evaluations {
    /// The counters of every flag of a snapshot of `environment`, by the flag's position in
    /// `flags`, the snapshot's flags in order. They are the very counters kept by name, so
    /// counts go on across snapshots; flags not counted yet get theirs in one swap.
    pub fn by_position(&self, environment: &str, flags: &[&str]) -> ByPosition {
        let known = |current: &EnvironmentCounts| {
            current.get(environment).cloned().and_then(|counts| {
                flags
                    .iter()
                    .map(|flag| counts.get(*flag).cloned())
                    .collect::<Option<Vec<_>>>()
            })
        };
        let counters = match known(&self.counts.load()) {
            Some(counters) => counters,
            None => {
                self.counts.rcu(|current| {
                    let mut next = EnvironmentCounts::clone(current);
                    let counts = Arc::make_mut(next.entry(Arc::from(environment)).or_default());
                    for flag in flags {
                        if !counts.contains_key(*flag) {
                            counts.insert(Arc::from(*flag), Arc::default());
                        }
                    }
                    next
                });
                // A scrape may have pruned the environment meanwhile, which it does once
                // the environment is deleted: its counts are of no more use to anyone.
                known(&self.counts.load())
                    .unwrap_or_else(|| flags.iter().map(|_| Arc::default()).collect())
            }
        };
        ByPosition {
            owner: self.id,
            counters: counters.into_boxed_slice(),
        }
    }

    /// A recorder for the evaluations of one request in `environment`.
    pub fn recorder<'a>(&'a self, environment: &'a str) -> Recorder<'a> {
        // The environment is looked up once, not once per flag of a bulk evaluation.
        let flags = self.counts.load().get(environment).cloned();
        Recorder {
            evaluations: self,
            environment,
            flags,
            missed: Vec::new(),
        }
    }

    /// Adds the first counts of flags this environment's map does not have yet, in one swap
    /// for the whole request: a bulk evaluation of a new environment's thousands of flags
    /// must not copy the map once per flag.
    fn insert(&self, environment: &str, missed: &[(&str, Reason)]) {
        self.counts.rcu(|current| {
            let mut next = EnvironmentCounts::clone(current);
            let flags = Arc::make_mut(next.entry(Arc::from(environment)).or_default());
            for (flag, _) in missed {
                if !flags.contains_key(*flag) {
                    flags.insert(Arc::from(*flag), Arc::default());
                }
            }
            next
        });
        let current = self.counts.load();
        let Some(flags) = current.get(environment) else {
            // Pruned meanwhile: the environment was deleted, and so were its counts.
            return;
        };
        for (flag, reason) in missed {
            if let Some(counts) = flags.get(*flag) {
                counts[reason_index(*reason)].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops the counters of environments and flags that no longer exist, so that deleted
    /// ones do not stay in every scrape forever. `environment` looks an environment up and
    /// `has_flag` asks whether it has a flag. Both are asked afresh on every attempt of the
    /// swap: the current view of the environments is then never older than a counter it
    /// judges, so a flag created and evaluated during the scrape keeps its counts.
    pub fn retain<E>(
        &self,
        mut environment: impl FnMut(&str) -> Option<E>,
        has_flag: impl Fn(&E, &str) -> bool,
    ) {
        // The counts that remain, and whether any were dropped.
        let mut kept = |counts: &EnvironmentCounts| -> (EnvironmentCounts, bool) {
            let mut next = EnvironmentCounts::default();
            let mut changed = false;
            for (name, flags) in counts {
                let Some(found) = environment(name) else {
                    changed = true;
                    continue;
                };
                if flags.keys().all(|flag| has_flag(&found, flag)) {
                    next.insert(Arc::clone(name), Arc::clone(flags));
                    continue;
                }
                changed = true;
                let remaining: FlagCounts = flags
                    .iter()
                    .filter(|(flag, _)| has_flag(&found, flag))
                    .map(|(flag, counts)| (Arc::clone(flag), Arc::clone(counts)))
                    .collect();
                if !remaining.is_empty() {
                    next.insert(Arc::clone(name), Arc::new(remaining));
                }
            }
            (next, changed)
        };
        // Most scrapes find nothing to drop: they swap nothing.
        if kept(&self.counts.load_full()).1 {
            self.counts.rcu(|current| kept(current).0);
        }
    }

    /// Appends the counters in the text exposition format, sorted, with their HELP and
    /// TYPE lines. Reasons never counted are left out, as a registry vector would.
    fn render(&self, text: &mut String) {
        let counts = self.counts.load_full();
        let mut series: Vec<(&str, &str, &Counts)> = counts
            .iter()
            .flat_map(|(environment, flags)| {
                flags
                    .iter()
                    .map(move |(flag, counts)| (&**environment, &**flag, &**counts))
            })
            .collect();
        series.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        text.push_str(
            "# HELP ripcord_evaluations_total Flag evaluations by environment, flag and reason.\n\
             # TYPE ripcord_evaluations_total counter\n",
        );
        for (environment, flag, counts) in series {
            for (reason, count) in REASONS.iter().zip(counts) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        text,
                        "ripcord_evaluations_total{{environment=\"{}\",flag=\"{}\",reason=\"{}\"}} {count}",
                        escape_label(environment),
                        escape_label(flag),
                        reason.as_str(),
                    );
                }
            }
        }
    }
}

/// A label value as the text exposition format wants it: backslash, double quote and line
/// feed escaped. Flag keys may hold the first two.
fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// One snapshot's evaluation counters by the position of the flag in it: a bulk evaluation
/// counts each flag with an index and an atomic add, where a lookup by name would hash the
/// flag's key. Built once per snapshot and kept beside it.
#[derive(Clone)]
pub struct ByPosition {
    owner: u64,
    counters: Box<[Arc<Counts>]>,
}

impl ByPosition {
    /// Whether these are counters of `evaluations`.
    pub fn belong_to(&self, evaluations: &Evaluations) -> bool {
        self.owner == evaluations.id
    }

    /// Counts an evaluation of the flag at `position`; nothing if there is no such position.
    pub fn record(&self, position: usize, reason: Reason) {
        if let Some(counts) = self.counters.get(position) {
            counts[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for ByPosition {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ByPosition")
            .field("flags", &self.counters.len())
            .finish()
    }
}

/// Counts the evaluations of one request. Counting a known flag is a lookup and an atomic
/// add on a map loaded once per request; flags seen for the first time are added in one
/// swap when the recorder is dropped.
pub struct Recorder<'a> {
    evaluations: &'a Evaluations,
    environment: &'a str,
    flags: Option<Arc<FlagCounts>>,
    missed: Vec<(&'a str, Reason)>,
}

impl<'a> Recorder<'a> {
    pub fn record(&mut self, flag: &'a str, reason: Reason) {
        match self.flags.as_ref().and_then(|flags| flags.get(flag)) {
            Some(counts) => {
                counts[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
            }
            None => self.missed.push((flag, reason)),
        }
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        if !self.missed.is_empty() {
            self.evaluations.insert(self.environment, &self.missed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(evaluations: &Evaluations, environment: &str, flag: &str, reason: Reason) -> u64 {
        evaluations
            .counts
            .load()
            .get(environment)
            .and_then(|flags| flags.get(flag))
            .map_or(0, |counts| {
                counts[reason_index(reason)].load(Ordering::Relaxed)
            })
    }

    #[test]
    fn every_reason_is_rendered_under_its_own_name() {
        for (index, reason) in REASONS.iter().enumerate() {
            assert_eq!(reason_index(*reason), index, "{}", reason.as_str());
        }
    }

    #[test]
    fn counts_by_environment_flag_and_reason_from_the_first_evaluation_on() {
        let evaluations = Evaluations::default();
        for environment in ["staging", "production", "production"] {
            let mut recorder = evaluations.recorder(environment);
            recorder.record("banner", Reason::Static);
            recorder.record("banner", Reason::Static);
            recorder.record("checkout", Reason::Split);
        }
        assert_eq!(count(&evaluations, "staging", "banner", Reason::Static), 2);
        assert_eq!(
            count(&evaluations, "production", "banner", Reason::Static),
            4
        );
        assert_eq!(
            count(&evaluations, "production", "checkout", Reason::Split),
            2
        );
        assert_eq!(
            count(&evaluations, "production", "checkout", Reason::Error),
            0
        );
    }

    #[test]
    fn counters_by_position_are_the_counters_by_name_across_snapshots() {
        let evaluations = Evaluations::default();
        evaluations.recorder("a").record("kept", Reason::Split);
        let first = evaluations.by_position("a", &["gone", "kept"]);
        first.record(0, Reason::Static);
        first.record(1, Reason::Split);
        // A snapshot with a flag added before the others moves every position.
        let second = evaluations.by_position("a", &["added", "gone", "kept"]);
        second.record(0, Reason::Default);
        second.record(2, Reason::Split);
        second.record(3, Reason::Split);
        evaluations.recorder("a").record("kept", Reason::Split);
        assert_eq!(count(&evaluations, "a", "kept", Reason::Split), 4);
        assert_eq!(count(&evaluations, "a", "gone", Reason::Static), 1);
        assert_eq!(count(&evaluations, "a", "added", Reason::Default), 1);

        // Flags of a snapshot never evaluated are not series.
        let never = evaluations.by_position("b", &["idle"]);
        let mut text = String::new();
        evaluations.render(&mut text);
        assert!(!text.contains("idle"), "{text}");
        never.record(0, Reason::Error);
        let mut text = String::new();
        evaluations.render(&mut text);
        assert!(
            text.contains(
                "ripcord_evaluations_total{environment=\"b\",flag=\"idle\",reason=\"ERROR\"} 1\n"
            ),
            "{text}"
        );

        assert!(first.belong_to(&evaluations));
        assert!(!first.belong_to(&Evaluations::default()));
    }

    #[test]
    fn renders_every_counted_series_with_escaped_labels() {
        let evaluations = Evaluations::default();
        evaluations
            .recorder("default")
            .record("say-\"hi\"\\", Reason::Disabled);
        let mut text = String::new();
        evaluations.render(&mut text);
        assert_eq!(
            text,
            "# HELP ripcord_evaluations_total Flag evaluations by environment, flag and reason.\n\
             # TYPE ripcord_evaluations_total counter\n\
             ripcord_evaluations_total{environment=\"default\",flag=\"say-\\\"hi\\\"\\\\\",reason=\"DISABLED\"} 1\n"
        );
    }

    #[test]
    fn retain_drops_what_no_longer_exists_and_keeps_the_rest_counting() {
        let evaluations = Evaluations::default();
        for (environment, flag) in [("a", "kept"), ("a", "deleted"), ("gone", "kept")] {
            evaluations
                .recorder(environment)
                .record(flag, Reason::Static);
        }
        let before = evaluations.counts.load_full();
        evaluations.retain(|name| (name == "a").then_some(()), |_, flag| flag == "kept");
        assert_eq!(count(&evaluations, "a", "kept", Reason::Static), 1);
        assert_eq!(count(&evaluations, "a", "deleted", Reason::Static), 0);
        assert!(evaluations.counts.load().get("gone").is_none());
        assert!(evaluations
            .counts
            .load()
            .get("a")
            .is_some_and(|flags| flags.len() == 1));

        // Nothing to drop: the map is not swapped.
        let before_noop = evaluations.counts.load_full();
        evaluations.retain(|_| Some(()), |_, _| true);
        assert!(Arc::ptr_eq(&before_noop, &evaluations.counts.load_full()));
        assert!(!Arc::ptr_eq(&before, &before_noop));

        evaluations.recorder("a").record("kept", Reason::Static);
        assert_eq!(count(&evaluations, "a", "kept", Reason::Static), 2);
    }
}
