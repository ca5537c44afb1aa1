//! The spool itself: appends, reads, commits, the byte cap and syncing.
//!
//! All bookkeeping lives in one `std::sync::Mutex<State>`, never held across
//! an `.await`. Appends write whole records with positional writes under it,
//! so a reader that sees a segment length sees only whole records; reads
//! take a snapshot of (segment, offset, length) and read outside the lock.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use crate::format::{
    self, RECORD_HEADER, RECORD_MAGIC, Reader, SEGMENT_HEADER, Scan, encode_cursor, encode_record,
    segment_name,
};
use crate::recover::{self, CURSOR_FILE, CURSOR_TMP, LOCK_FILE};
use crate::{Fsync, MAX_RECORD_BYTES, SpoolConfig, SpoolError, WhenFull};

/// How much `read_next` reads at a time: one syscall for small records.
const READ_WINDOW: usize = 16 << 10;

/// A position just after one record, in append order: what
/// [`Spool::commit`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    // Field order makes the derived ordering the append order.
    segment: u64,
    offset: u64,
}

impl Pos {
    pub(crate) fn new(segment: u64, offset: u64) -> Self {
        Self { segment, offset }
    }

    /// The id of the segment holding the record.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// The byte offset just after the record in its segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// One record returned by [`Spool::read_next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The payload as appended.
    pub data: Vec<u8>,
    /// Where the record ends; commit it once delivered.
    pub pos: Pos,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub appended_unix_ms: u64,
}

/// A snapshot of the spool's gauges, for the caller to export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sum of the segment files' sizes.
    pub bytes: u64,
    /// Records not yet committed (read or not).
    pub records: u64,
    /// Records not yet returned by [`Spool::read_next`].
    pub unread: u64,
    /// Append time of the oldest uncommitted record.
    pub oldest_unix_ms: Option<u64>,
    /// Since open: torn tails cut, bad segments deleted, and corrupt records
    /// or regions skipped by [`Spool::read_next`].
    pub corrupt_records: u64,
    /// Since open: uncommitted records deleted by [`WhenFull::DropOldest`].
    pub dropped_records: u64,
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Valid uncommitted records.
    pub records: u64,
    /// Bytes of the surviving segment files.
    pub bytes: u64,
    /// Torn tails cut off.
    pub torn_tails: u64,
}

/// One segment file and what the spool knows of it.
pub(crate) struct Segment {
    pub(crate) id: u64,
    /// Bytes of whole records plus the header: the readable part.
    pub(crate) len: u64,
    pub(crate) file: Arc<File>,
    /// Records in it not yet returned by `read_next`.
    pub(crate) unread: u64,
}

struct State {
    /// Oldest first; never empty; the last is the active one.
    segs: VecDeque<Segment>,
    next_id: u64,
    /// Sum of `segs[..].len`.
    bytes: u64,
    /// Everything before it is delivered; never after `read`.
    cursor: Pos,
    /// Where `read_next` goes on.
    read: Pos,
    unread: u64,
    /// Records read but not committed: end position and append time.
    inflight: VecDeque<(Pos, u64)>,
    corrupt: u64,
    dropped: u64,
    /// Record bytes ever appended since open, and how many are synced.
    written: u64,
    synced: u64,
}

impl State {
    fn active(&self) -> &Segment {
        // `segs` is never empty (see `open` and `drop_front`).
        &self.segs[self.segs.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segs.len() - 1;
        &mut self.segs[last]
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.segs.binary_search_by_key(&id, |s| s.id).ok()
    }

    fn uncommitted(&self) -> u64 {
        self.inflight.len() as u64 + self.unread
    }
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    when_full: WhenFull,
    fsync: Fsync,
    state: Mutex<State>,
    /// Woken (one permit) by every append.
    appended: Notify,
    /// Woken (all waiters) when a commit may have made room.
    room: Notify,
    /// One group-commit `fdatasync` at a time.
    sync_turn: tokio::sync::Mutex<()>,
    /// Declared last so the directory stays locked until all else is gone.
    _lock: File,
}

/// A durable disk queue of opaque byte records. Cloning is cheap and shares
/// the queue.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir` and recovers what is on
    /// disk: see the crate doc. With [`Fsync::Interval`] it spawns the
    /// syncing task on the current tokio runtime (outside one it warns, and
    /// data is synced only when a segment rolls and when the spool drops).
    ///
    /// # Errors
    ///
    /// [`SpoolError::Locked`] when another spool holds the directory;
    /// [`SpoolError::Io`] when the directory, its lock or a new segment
    /// cannot be created or the directory cannot be listed. Bad file
    /// contents are never an error.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Recovered), SpoolError> {
        let dir = cfg.dir;
        fs::create_dir_all(&dir).map_err(|e| SpoolError::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| SpoolError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked { dir }),
            Err(fs::TryLockError::Error(e)) => return Err(SpoolError::io(&lock_path, e)),
        }

        let found = recover::recover(&dir)?;
        let recovered = Recovered {
            records: found.segs.iter().map(|s| s.unread).sum(),
            bytes: found.segs.iter().map(|s| s.len).sum(),
            torn_tails: found.torn_tails,
        };
        let mut segs = found.segs;
        let mut next_id = found.next_id;
        let start = if segs.is_empty() {
            let seg = recover::create_segment(&dir, next_id)?;
            if cfg.fsync == Fsync::Batch {
                recover::sync_dir(&dir)?;
            }
            next_id += 1;
            let start = Pos::new(seg.id, SEGMENT_HEADER);
            segs.push_back(seg);
            start
        } else {
            found.start
        };
        let state = State {
            bytes: segs.iter().map(|s| s.len).sum(),
            unread: segs.iter().map(|s| s.unread).sum(),
            segs,
            next_id,
            cursor: start,
            read: start,
            inflight: VecDeque::new(),
            corrupt: found.corrupt,
            dropped: 0,
            written: 0,
            synced: 0,
        };
        let inner = Arc::new(Inner {
            dir,
            max_bytes: cfg.max_bytes,
            segment_bytes: cfg.segment_bytes,
            when_full: cfg.when_full,
            fsync: cfg.fsync,
            state: Mutex::new(state),
            appended: Notify::new(),
            room: Notify::new(),
            sync_turn: tokio::sync::Mutex::new(()),
            _lock: lock,
        });
        if let Fsync::Interval(every) = cfg.fsync {
            spawn_syncer(Arc::downgrade(&inner), every);
        }
        Ok((Spool { inner }, recovered))
    }

    /// Appends one record and returns its position.
    ///
    /// When it does not fit under `max_bytes`: under [`WhenFull::Block`] it
    /// waits for commits to free room until `deadline` (`None`: forever);
    /// under [`WhenFull::DropOldest`] it deletes whole oldest segments (first
    /// rotating the active one if it is the only one), counting their
    /// uncommitted records in [`Stats::dropped_records`]. A record larger
    /// than `max_bytes` is accepted once the spool holds nothing uncommitted.
    /// Under [`Fsync::Batch`] it returns once the record is synced;
    /// concurrent appends share one `fdatasync`. Under [`Fsync::Interval`]
    /// it returns once the record is written; the background task syncs it.
    ///
    /// # Errors
    ///
    /// [`SpoolError::TooLarge`] above [`MAX_RECORD_BYTES`];
    /// [`SpoolError::Full`] when the deadline passes; [`SpoolError::Io`]
    /// when a write or sync fails (after a failed sync the record may still
    /// be read back).
    pub async fn append(&self, data: &[u8], deadline: Option<Instant>) -> Result<Pos, SpoolError> {
        check_len(data)?;
        let ms = now_unix_ms();
        let (pos, end) = loop {
            // Registered before looking, so a commit in between still wakes us.
            let mut room = pin!(self.inner.room.notified());
            room.as_mut().enable();
            {
                let mut st = self.inner.lock();
                if self.inner.make_room(&mut st, data.len())? {
                    break self.inner.write_record(&mut st, data, ms)?;
                }
            }
            match deadline {
                Some(at) => {
                    if tokio::time::timeout_at(at, room).await.is_err() {
                        return Err(SpoolError::Full);
                    }
                }
                None => room.await,
            }
        };
        self.inner.appended.notify_one();
        if self.inner.fsync == Fsync::Batch {
            self.inner.sync_to(end).await?;
        }
        Ok(pos)
    }

    /// Appends one record ignoring the byte cap and syncs it before
    /// returning; blocks the calling thread. For saving what only memory
    /// holds at shutdown.
    ///
    /// # Errors
    ///
    /// [`SpoolError::TooLarge`] above [`MAX_RECORD_BYTES`];
    /// [`SpoolError::Io`] when the write or sync fails.
    pub fn append_now(&self, data: &[u8]) -> Result<Pos, SpoolError> {
        check_len(data)?;
        let pos = {
            let mut st = self.inner.lock();
            let (pos, end) = self.inner.write_record(&mut st, data, now_unix_ms())?;
            let active = st.active();
            active
                .file
                .sync_data()
                .map_err(|e| SpoolError::io(self.inner.seg_path(active.id), e))?;
            st.synced = st.synced.max(end);
            pos
        };
        self.inner.appended.notify_one();
        Ok(pos)
    }

    /// The next unread record in append order, or `None` when everything
    /// appended so far was read. Skips records and regions that fail their
    /// checksum, counting each in [`Stats::corrupt_records`].
    ///
    /// # Errors
    ///
    /// [`SpoolError::Io`] when a segment cannot be read.
    pub fn read_next(&self) -> Result<Option<Record>, SpoolError> {
        loop {
            let (id, off, limit, file) = {
                let mut st = self.inner.lock();
                match next_readable(&mut st) {
                    Some(target) => target,
                    None => return Ok(None),
                }
            };
            // Outside the lock: appends go on while a large record is read.
            let mut reader = Reader::new(&file, limit, READ_WINDOW);
            let read = |reader: &mut Reader<'_>| -> io::Result<(Scan, Vec<u8>)> {
                let scan = format::scan(reader, off)?;
                let data = match scan {
                    Scan::Record { start, len, .. } => {
                        reader.get(start + RECORD_HEADER, len)?.to_vec()
                    }
                    _ => Vec::new(),
                };
                Ok((scan, data))
            };
            let (scan, data) =
                read(&mut reader).map_err(|e| SpoolError::io(self.inner.seg_path(id), e))?;

            let mut st = self.inner.lock();
            if st.read != Pos::new(id, off) {
                // Another reader, or DropOldest, moved on meanwhile.
                continue;
            }
            match scan {
                Scan::End => {}
                Scan::Corrupt { next } => {
                    tracing::warn!(
                        path = %self.inner.seg_path(id).display(),
                        offset = off,
                        bytes = next - off,
                        "skipping a corrupt spool record"
                    );
                    st.corrupt += 1;
                    st.read = Pos::new(id, next);
                }
                Scan::Record {
                    end,
                    appended_unix_ms,
                    ..
                } => {
                    let pos = Pos::new(id, end);
                    st.read = pos;
                    st.unread = st.unread.saturating_sub(1);
                    if let Some(i) = st.index_of(id) {
                        st.segs[i].unread = st.segs[i].unread.saturating_sub(1);
                    }
                    st.inflight.push_back((pos, appended_unix_ms));
                    return Ok(Some(Record {
                        data,
                        pos,
                        appended_unix_ms,
                    }));
                }
            }
        }
    }

    /// Marks every record up to and including `pos` delivered: persists the
    /// cursor (`cursor.tmp` renamed over `cursor`, not synced: a stale cursor
    /// only replays records), deletes wholly delivered segments and wakes
    /// appenders waiting for room. The active segment is never deleted here;
    /// an append that needs its room rotates it away. A `pos` at or before
    /// the current cursor, or in a deleted segment, is a no-op; a `pos` past
    /// what was read first reads (and discards) up to it.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Io`] when the cursor cannot be written (the commit
    /// still holds in memory) or reading up to `pos` fails.
    pub fn commit(&self, pos: Pos) -> Result<(), SpoolError> {
        loop {
            let st = self.inner.lock();
            let first = st.segs[0].id;
            if pos <= st.cursor || pos.segment < first || pos.segment > st.active().id {
                return Ok(());
            }
            if pos <= st.read {
                break;
            }
            drop(st);
            if self.read_next()?.is_none() {
                break;
            }
        }
        let mut st = self.inner.lock();
        let target = pos.min(st.read);
        if target <= st.cursor {
            return Ok(());
        }
        st.cursor = target;
        while st.inflight.front().is_some_and(|(p, _)| *p <= target) {
            st.inflight.pop_front();
        }
        self.inner.write_cursor(target)?;
        while st.segs.len() > 1 {
            let front = &st.segs[0];
            if front.id > target.segment
                || (front.id == target.segment && target.offset < front.len)
            {
                break;
            }
            self.inner.remove_front(&mut st);
        }
        drop(st);
        // Also without a deletion: a now empty spool takes oversized records.
        self.inner.room.notify_waiters();
        Ok(())
    }

    /// Records not yet returned by [`Spool::read_next`].
    pub fn unread(&self) -> u64 {
        self.inner.lock().unread
    }

    /// The spool's gauges right now.
    pub fn stats(&self) -> Stats {
        let st = self.inner.lock();
        Stats {
            bytes: st.bytes,
            records: st.uncommitted(),
            unread: st.unread,
            oldest_unix_ms: oldest_unix_ms(&st),
            corrupt_records: st.corrupt,
            dropped_records: st.dropped,
        }
    }

    /// Completes after the next append. A wakeup with no one waiting is kept
    /// (one permit), so a consumer that calls [`Spool::read_next`] after
    /// creating or awaiting this never misses an append.
    pub async fn appended(&self) {
        self.inner.appended.notified().await;
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

fn check_len(data: &[u8]) -> Result<(), SpoolError> {
    if data.len() > MAX_RECORD_BYTES {
        return Err(SpoolError::TooLarge { len: data.len() });
    }
    Ok(())
}

/// Moves the read position past exhausted segments and returns what to read
/// next: (segment id, offset, readable length, file).
fn next_readable(st: &mut State) -> Option<(u64, u64, u64, Arc<File>)> {
    loop {
        let i = match st.index_of(st.read.segment) {
            Some(i) => i,
            None => {
                let read = st.read.segment;
                let next = st.segs.iter().find(|s| s.id > read)?;
                st.read = Pos::new(next.id, SEGMENT_HEADER);
                continue;
            }
        };
        let seg = &st.segs[i];
        if st.read.offset < seg.len {
            return Some((seg.id, st.read.offset, seg.len, Arc::clone(&seg.file)));
        }
        let next = st.segs.get(i + 1)?;
        st.read = Pos::new(next.id, SEGMENT_HEADER);
    }
}

/// The append time of the oldest uncommitted record: the first one read and
/// not committed, else the first unread one (peeked from disk).
fn oldest_unix_ms(st: &State) -> Option<u64> {
    if let Some(&(_, ms)) = st.inflight.front() {
        return Some(ms);
    }
    if st.unread == 0 {
        return None;
    }
    let first = st
        .index_of(st.read.segment)
        .unwrap_or_else(|| st.segs.partition_point(|s| s.id < st.read.segment));
    for seg in st.segs.range(first..) {
        let off = if seg.id == st.read.segment {
            st.read.offset
        } else {
            SEGMENT_HEADER
        };
        if off + RECORD_HEADER > seg.len {
            continue;
        }
        let mut hdr = [0u8; RECORD_HEADER as usize];
        seg.file.read_exact_at(&mut hdr, off).ok()?;
        let (magic, ms) = hdr.split_at(4);
        if magic != RECORD_MAGIC.to_le_bytes() {
            // A corrupt region: a gauge may go without a value for a moment.
            return None;
        }
        return Some(u64::from_le_bytes(ms[4..12].try_into().ok()?));
    }
    None
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every state change is complete before anything can panic, so the
        // state is consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(segment_name(id))
    }

    fn needs_roll(&self, st: &State) -> bool {
        let active = st.active();
        active.len >= self.segment_bytes && active.len > SEGMENT_HEADER
    }

    fn fits(&self, st: &State, data_len: usize) -> bool {
        let roll = if self.needs_roll(st) {
            SEGMENT_HEADER
        } else {
            0
        };
        st.bytes + RECORD_HEADER + data_len as u64 + roll <= self.max_bytes
    }

    /// Makes room for a record of `data_len` bytes if the policy allows;
    /// `false` means wait (Block).
    fn make_room(&self, st: &mut State, data_len: usize) -> Result<bool, SpoolError> {
        loop {
            if self.fits(st, data_len) {
                return Ok(true);
            }
            if self.when_full == WhenFull::Block && st.uncommitted() > 0 {
                return Ok(false);
            }
            // DropOldest, or Block with nothing left to lose: delete from
            // the front, rotating the active segment away if it is alone.
            if st.segs.len() > 1 {
                self.remove_front(st);
            } else if st.active().len > SEGMENT_HEADER {
                self.roll(st)?;
            } else {
                // Only an empty segment left: take the oversized record.
                return Ok(true);
            }
        }
    }

    /// Writes one record to the active segment (rolling first if it is
    /// full); returns its position and the `written` count after it.
    fn write_record(&self, st: &mut State, data: &[u8], ms: u64) -> Result<(Pos, u64), SpoolError> {
        if self.needs_roll(st) {
            self.roll(st)?;
        }
        let buf = encode_record(data, ms);
        let n = buf.len() as u64;
        let active = st.active_mut();
        if let Err(e) = active.file.write_all_at(&buf, active.len) {
            // Drop a partial record; if this fails too, the next append
            // overwrites it since writes go to `len`.
            let _ = active.file.set_len(active.len);
            return Err(SpoolError::io(self.seg_path(active.id), e));
        }
        active.len += n;
        active.unread += 1;
        let pos = Pos::new(active.id, active.len);
        st.bytes += n;
        st.unread += 1;
        st.written += n;
        Ok((pos, st.written))
    }

    /// Syncs the active segment and starts a new one.
    fn roll(&self, st: &mut State) -> Result<(), SpoolError> {
        let old = st.active();
        old.file
            .sync_data()
            .map_err(|e| SpoolError::io(self.seg_path(old.id), e))?;
        // Everything written so far was in `old` or in earlier, synced ones.
        st.synced = st.written;
        let id = st.next_id;
        st.next_id += 1;
        let seg = recover::create_segment(&self.dir, id)?;
        st.bytes += seg.len;
        st.segs.push_back(seg);
        if self.fsync == Fsync::Batch {
            recover::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes the oldest segment (there must be another), counting its
    /// uncommitted records as dropped.
    fn remove_front(&self, st: &mut State) {
        let Some(seg) = st.segs.pop_front() else {
            return;
        };
        let mut lost = seg.unread;
        while st
            .inflight
            .front()
            .is_some_and(|(p, _)| p.segment <= seg.id)
        {
            st.inflight.pop_front();
            lost += 1;
        }
        st.unread = st.unread.saturating_sub(seg.unread);
        st.bytes -= seg.len;
        st.dropped += lost;
        st.cursor = st.cursor.max(Pos::new(seg.id, seg.len));
        if st.read.segment <= seg.id {
            st.read = Pos::new(st.segs[0].id, SEGMENT_HEADER);
        }
        let path = self.seg_path(seg.id);
        if lost > 0 {
            tracing::error!(path = %path.display(), records = lost, "spool is full: dropped its oldest undelivered records");
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Before the cursor, so the next open deletes it.
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete spool segment")
            }
        }
    }

    fn write_cursor(&self, pos: Pos) -> Result<(), SpoolError> {
        let tmp = self.dir.join(CURSOR_TMP);
        fs::write(&tmp, encode_cursor(pos.segment, pos.offset))
            .map_err(|e| SpoolError::io(&tmp, e))?;
        let path = self.dir.join(CURSOR_FILE);
        fs::rename(&tmp, &path).map_err(|e| SpoolError::io(&path, e))
    }

    /// Group commit: returns once `written` count `end` is synced, running
    /// at most one `fdatasync` at a time and letting each cover every append
    /// written before it started.
    async fn sync_to(&self, end: u64) -> Result<(), SpoolError> {
        loop {
            if self.lock().synced >= end {
                return Ok(());
            }
            let _turn = self.sync_turn.lock().await;
            let (target, file, id) = {
                let st = self.lock();
                if st.synced >= end {
                    return Ok(());
                }
                let active = st.active();
                (st.written, Arc::clone(&active.file), active.id)
            };
            let res = tokio::task::spawn_blocking(move || file.sync_data()).await;
            match res {
                Ok(Ok(())) => {
                    let mut st = self.lock();
                    st.synced = st.synced.max(target);
                }
                Ok(Err(e)) => return Err(SpoolError::io(self.seg_path(id), e)),
                Err(e) => return Err(SpoolError::io(self.seg_path(id), io::Error::other(e))),
            }
        }
    }

    /// What the interval syncer should sync, if anything was written since
    /// the last sync: (written count, active file, its id).
    fn sync_job(&self) -> Option<(u64, Arc<File>, u64)> {
        let st = self.lock();
        if st.synced >= st.written {
            return None;
        }
        let active = st.active();
        Some((st.written, Arc::clone(&active.file), active.id))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: what an Interval spool wrote since its last tick.
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if st.synced < st.written
            && let Some(active) = st.segs.back()
            && let Err(e) = active.file.sync_data()
        {
            tracing::warn!(path = %self.dir.join(segment_name(active.id)).display(), error = %e, "cannot sync spool segment");
        }
    }
}

/// Syncs the active segment every `every` while something is unsynced, for
/// as long as the spool lives (it holds only a weak reference).
fn spawn_syncer(weak: Weak<Inner>, every: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("spool opened outside a tokio runtime: syncing only when segments roll");
        return;
    };
    rt.spawn(async move {
        // interval() panics on a zero period.
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            let Some((target, file, id)) = inner.sync_job() else {
                continue;
            };
            let path = inner.seg_path(id);
            // Not kept across the sync, so dropping the spool unlocks the
            // directory at once.
            drop(inner);
            let res = tokio::task::spawn_blocking(move || file.sync_data()).await;
            let Some(inner) = weak.upgrade() else { break };
            match res {
                Ok(Ok(())) => {
                    let mut st = inner.lock();
                    st.synced = st.synced.max(target);
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot sync spool segment")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "spool sync task failed")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests;
