//! How a spool is sized, where it lives and how hard it syncs.

use std::path::PathBuf;
use std::time::Duration;

/// Where a spool lives and how it behaves when full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The spool's own directory, created if missing.
    pub dir: PathBuf,
    /// Cap on the sum of the segment files' sizes.
    pub max_bytes: u64,
    /// Roll to a new segment once the active one reaches this many bytes; a
    /// record never splits, so a segment may exceed it by one record.
    pub segment_bytes: u64,
    /// What an append does when the record does not fit under `max_bytes`.
    pub when_full: WhenFull,
    /// When appended data reaches the disk.
    pub fsync: Fsync,
}

/// What an append does when the record does not fit under the byte cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait until commits free room (or the append's deadline passes).
    Block,
    /// Delete whole oldest segments, delivered or not, until it fits.
    DropOldest,
}

/// When appended records are synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Every append returns once its record is synced; concurrent appends
    /// share one `fdatasync` (group commit).
    Batch,
    /// A background task syncs at this interval when something was written;
    /// a crash may lose up to one interval of appends.
    Interval(Duration),
}
