//! A per-sink durable disk queue of opaque byte records.
//!
//! A sink whose endpoint is down appends what it cannot send to its [`Spool`]
//! and, once the endpoint is back, reads the records in append order
//! ([`Spool::read_next`]) and marks them delivered ([`Spool::commit`]). The
//! spool survives restarts and crashes: [`Spool::open`] recovers what is on
//! disk, cuts torn tails and skips corrupt records, and never refuses to start
//! because of a bad file. Delivery is at least once: a crash may replay
//! records that were delivered but whose commit was not yet on disk.
//!
//! Layout:
//! - [`config`]: the settings, [`SpoolConfig`], [`WhenFull`], [`Fsync`].
//! - [`error`]: the one error type, [`SpoolError`].
//! - `format`: the on-disk encoding of segments, records and the cursor, and
//!   the record scanner shared by recovery and reads.
//! - `recover`: what [`Spool::open`] does with the files it finds.
//! - [`spool`]: the queue, [`Spool`], with [`Pos`], [`Record`], [`Stats`] and
//!   [`Recovered`].
//!
//! # On-disk format
//!
//! The spool directory holds:
//! - `lock`: an empty file locked with [`std::fs::File::try_lock`] for the
//!   life of the [`Spool`], so two processes never share a directory.
//! - `cursor`: the commit position, `segment id: u64 LE`, `offset: u64 LE`,
//!   then `crc: u32 LE` (CRC-32/IEEE of those 16 bytes). It is written to
//!   `cursor.tmp` and renamed over `cursor`, without fsync: a stale cursor
//!   only replays records. A missing or invalid cursor starts from the oldest
//!   segment's first record.
//! - segments `{id:020}.seg`, ids increasing from 1. Each starts with the
//!   8-byte header `CFXSPL01`, then records back to back. A record is a
//!   20-byte header, `magic: u32 LE = 0x5250_4643`, `len: u32 LE`,
//!   `appended_unix_ms: u64 LE`, `crc: u32 LE` (CRC-32/IEEE of the `len`
//!   bytes, the `appended_unix_ms` bytes and the payload), then `len` bytes
//!   of payload. A record never spans two segments.
//!
//! Appends go to the last (active) segment; once it reaches
//! [`SpoolConfig::segment_bytes`] the next append syncs it and starts a new
//! one. A segment is deleted once every record in it is committed, except
//! the active one, which is only rotated away (and then deleted) when an
//! append needs its room.
//!
//! # Recovery
//!
//! [`Spool::open`] deletes segments wholly before the cursor and validates
//! every record from the cursor on:
//! - a corrupt region that runs to the end of a segment (a torn write: a cut
//!   header, a length past the end, or a bad checksum on the last record) is
//!   truncated away and counted once in [`Stats::corrupt_records`];
//! - a corrupt region followed by a valid record is left in place and
//!   counted when [`Spool::read_next`] skips it, so every bad region counts
//!   exactly once. A record with a bad checksum is skipped by its length when
//!   a valid record follows it; otherwise the scanner resyncs, byte by byte,
//!   to the next offset where a whole record validates;
//! - a segment whose file header is wrong is deleted and counted once.

pub mod config;
pub mod error;
mod format;
mod recover;
pub mod spool;

pub use config::{Fsync, SpoolConfig, WhenFull};
pub use error::SpoolError;
pub use spool::{Pos, Record, Recovered, Spool, Stats};

/// The largest payload one record may carry; larger appends fail with
/// [`SpoolError::TooLarge`].
pub const MAX_RECORD_BYTES: usize = 256 << 20;
