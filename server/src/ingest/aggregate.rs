//! What the controller reads back: one ramp generation's aggregates as engine types, and
//! the [`Observations`] that `ramp::step` takes.

use std::collections::BTreeMap;

use ripcord_engine::document::{MetricKind, Ramp};
use ripcord_engine::ramp::{GuardObservations, Observations, StageUnits};
use ripcord_engine::stats::{Histogram, Proportion, StageData};
use ripcord_engine::Cohort;
use ripcord_engine::Stage;

use super::bins;
use crate::store::{Aggregate, AggregateCounts, StoreError};

/// One guard metric at one stage: treatment against control.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateData {
    /// A `value` metric: histograms over [`bins`], the one layout of every value metric.
    Values {
        treatment: Histogram,
        control: Histogram,
    },
    /// A `rate` metric.
    Rate {
        treatment: Proportion,
        control: Proportion,
    },
}

impl AggregateData {
    /// No observations yet, of `kind`.
    pub fn empty(kind: MetricKind) -> AggregateData {
        match kind {
            MetricKind::Value => AggregateData::Values {
                treatment: bins::empty(),
                control: bins::empty(),
            },
            MetricKind::Rate => AggregateData::Rate {
                treatment: Proportion::default(),
                control: Proportion::default(),
            },
        }
    }

    pub fn kind(&self) -> MetricKind {
        match self {
            AggregateData::Values { .. } => MetricKind::Value,
            AggregateData::Rate { .. } => MetricKind::Rate,
        }
    }

    /// Observations in (treatment, control).
    pub fn totals(&self) -> (u64, u64) {
        match self {
            AggregateData::Values { treatment, control } => (treatment.total(), control.total()),
            AggregateData::Rate { treatment, control } => (treatment.trials, control.trials),
        }
    }

    /// The form `stats::look` takes.
    pub fn stage_data(&self) -> StageData<'_> {
        match self {
            AggregateData::Values { treatment, control } => {
                StageData::Values { treatment, control }
            }
            AggregateData::Rate { treatment, control } => StageData::Rate {
                treatment: *treatment,
                control: *control,
            },
        }
    }
}

/// One metric's data at one stage of the generation.
#[derive(Debug, Clone, PartialEq)]
pub struct StageAggregate {
    pub metric: String,
    pub stage: Stage,
    pub data: AggregateData,
}

/// Every aggregate of one ramp generation of a flag, ordered by metric, stage and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregates {
    pub generation: u64,
    pub stages: Vec<StageAggregate>,
    /// Distinct reporting units per stage, over every metric; empty when no observation
    /// named its unit.
    pub units: BTreeMap<Stage, StageUnits>,
    /// Stands in where a stage has no value observations yet, so that [`observations`]
    /// can lend a histogram for every stage.
    ///
    /// [`observations`]: Aggregates::observations
    empty: Histogram,
}

impl Aggregates {
    /// Aggregates made elsewhere than the store (the controller's tests give their own).
    pub fn new(generation: u64, stages: Vec<StageAggregate>) -> Aggregates {
        Aggregates {
            generation,
            stages,
            units: BTreeMap::new(),
            empty: bins::empty(),
        }
    }

    /// Gathers the stored aggregates of `generation` (all of one flag) into treatment and
    /// control pairs.
    pub(crate) fn from_stored(
        generation: u64,
        stored: Vec<Aggregate>,
    ) -> Result<Aggregates, StoreError> {
        let mut pairs: BTreeMap<(String, Stage, bool), AggregateData> = BTreeMap::new();
        let mut units: BTreeMap<Stage, StageUnits> = BTreeMap::new();
        for aggregate in stored {
            let corrupt = |message: String| StoreError::Corrupt {
                key: format!(
                    "aggregate {}/{} generation {} stage {} {} {}",
                    aggregate.key.environment,
                    aggregate.key.flag,
                    aggregate.key.generation,
                    aggregate.key.stage.get(),
                    aggregate.key.cohort.as_str(),
                    aggregate.key.metric
                ),
                message,
            };
            if aggregate.key.generation != generation {
                return Err(corrupt(format!("read for generation {generation}")));
            }
            let kind = match aggregate.counts {
                AggregateCounts::Values(_) => MetricKind::Value,
                AggregateCounts::Rate { .. } => MetricKind::Rate,
                AggregateCounts::Units(count) => {
                    let stage = units.entry(aggregate.key.stage).or_default();
                    let arm = match aggregate.key.cohort {
                        Cohort::Treatment => &mut stage.treatment,
                        Cohort::Control => &mut stage.control,
                    };
                    *arm = arm.saturating_add(count);
                    continue;
                }
                AggregateCounts::UnitsSeen(_) => {
                    return Err(corrupt("unit markers where a count was read".to_string()))
                }
            };
            let data = pairs
                .entry((
                    aggregate.key.metric.clone(),
                    aggregate.key.stage,
                    kind == MetricKind::Rate,
                ))
                .or_insert_with(|| AggregateData::empty(kind));
            match (data, &aggregate.counts) {
                (AggregateData::Values { treatment, control }, AggregateCounts::Values(counts)) => {
                    let histogram =
                        bins::histogram(counts).map_err(|error| corrupt(error.to_string()))?;
                    let arm = match aggregate.key.cohort {
                        Cohort::Treatment => treatment,
                        Cohort::Control => control,
                    };
                    arm.merge(&histogram)
                        .map_err(|error| corrupt(error.to_string()))?;
                }
                (
                    AggregateData::Rate { treatment, control },
                    AggregateCounts::Rate { events, trials },
                ) => {
                    let arm = match aggregate.key.cohort {
                        Cohort::Treatment => treatment,
                        Cohort::Control => control,
                    };
                    arm.events = arm.events.saturating_add(*events);
                    arm.trials = arm.trials.saturating_add(*trials);
                }
                // The entry's key holds the kind, so it was made for these counts.
                _ => return Err(corrupt("counts of two kinds under one key".to_string())),
            }
        }
        let stages = pairs
            .into_iter()
            .map(|((metric, stage, _), data)| StageAggregate {
                metric,
                stage,
                data,
            })
            .collect();
        let mut aggregates = Aggregates::new(generation, stages);
        aggregates.units = units;
        Ok(aggregates)
    }

    /// The data of `metric` at `stage`, of `kind`; `None` where nothing was observed.
    pub fn find(&self, metric: &str, stage: Stage, kind: MetricKind) -> Option<&AggregateData> {
        self.stages
            .iter()
            .find(|entry| {
                entry.metric == metric && entry.stage == stage && entry.data.kind() == kind
            })
            .map(|entry| &entry.data)
    }

    /// Observations of `metric` at `stage` in (treatment, control), for the status API's
    /// "observations per minute" (divide by the minutes since the stage's warm-up ended).
    pub fn totals(&self, metric: &str, stage: Stage) -> (u64, u64) {
        self.stages
            .iter()
            .filter(|entry| entry.metric == metric && entry.stage == stage)
            .map(|entry| entry.data.totals())
            .fold((0, 0), |(t, c), (more_t, more_c)| (t + more_t, c + more_c))
    }

    /// What `ramp::step` takes at stage `current` of `ramp`: for every guard, stages
    /// `0..=current`, with an empty pair where a stage has no data of the guard's kind yet.
    pub fn observations<'a>(&'a self, ramp: &'a Ramp, current: Stage) -> Observations<'a> {
        const NO_RATE: Proportion = Proportion {
            events: 0,
            trials: 0,
        };
        let guards = ramp
            .guards
            .iter()
            .map(|guard| GuardObservations {
                metric: guard.metric.as_str(),
                stages: (0..=current.get())
                    .map(Stage::new)
                    .map(|stage| match self.find(&guard.metric, stage, guard.kind) {
                        Some(data) => data.stage_data(),
                        None => match guard.kind {
                            MetricKind::Value => StageData::Values {
                                treatment: &self.empty,
                                control: &self.empty,
                            },
                            MetricKind::Rate => StageData::Rate {
                                treatment: NO_RATE,
                                control: NO_RATE,
                            },
                        },
                    })
                    .collect(),
            })
            .collect();
        // Stages without units (those before the first observation that named one) count
        // zero, like a stage without observations.
        let units = if self.units.is_empty() {
            Vec::new()
        } else {
            (0..=current.get())
                .map(|stage| {
                    self.units
                        .get(&Stage::new(stage))
                        .copied()
                        .unwrap_or_default()
                })
                .collect()
        };
        Observations {
            generation: self.generation,
            guards,
            units,
        }
    }
}
