//! Which stage of a ramp, as one type from the document's stage list to the SDK's tags.

use serde::{Deserialize, Serialize};

/// Which stage of a ramp: the index into its `stages`, from 0. Evaluations report it, SDKs
/// tag observations with it, ingestion and the controller keep data by it, so one type
/// carries it everywhere. On every wire it is the bare number (JSON, the protobuf's integer
/// fields, the store's records and keys), so what was written before it had a type of its
/// own still reads.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Stage(u32);

impl Stage {
    pub const FIRST: Stage = Stage(0);

    pub const fn new(index: u32) -> Stage {
        Stage(index)
    }

    /// The stage at `index` of a stage list; `None` past the last index a stage can have,
    /// which no valid document reaches (lists are limited far below it).
    pub fn at(index: usize) -> Option<Stage> {
        u32::try_from(index).ok().map(Stage)
    }

    /// The index as the protobuf and the store's keys carry it.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// For indexing a stage list: every `u32` is a `usize` on the platforms the server runs
    /// on; elsewhere an index too large finds no stage instead of another one.
    pub fn index(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// The stage after this one, whether or not the ramp has it.
    pub const fn next(self) -> Stage {
        Stage(self.0.saturating_add(1))
    }

    /// The stage as people count them: index 0 is stage 1.
    pub fn ordinal(self) -> u64 {
        u64::from(self.0) + 1
    }
}

impl From<u32> for Stage {
    fn from(index: u32) -> Stage {
        Stage(index)
    }
}

impl From<Stage> for u32 {
    fn from(stage: Stage) -> u32 {
        stage.0
    }
}

impl From<Stage> for u64 {
    fn from(stage: Stage) -> u64 {
        u64::from(stage.0)
    }
}
