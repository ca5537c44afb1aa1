//! What [`crate::Spool::open`] does with the files it finds: read the cursor,
//! delete what it says is delivered, validate the rest, cut torn tails.
//!
//! Nothing here fails because of a file's contents: a bad file is cut,
//! skipped or deleted, with a WARN, so the daemon always starts.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::SpoolError;
use crate::format::{
    self, Reader, SEGMENT_HEADER, SEGMENT_MAGIC, Scan, decode_cursor, parse_segment_name,
    segment_name,
};
use crate::spool::{Pos, Segment};

/// How much of a segment recovery reads at a time.
const SCAN_WINDOW: usize = 1 << 20;

/// The cursor file's name.
pub(crate) const CURSOR_FILE: &str = "cursor";
/// Where the cursor is written before it is renamed over [`CURSOR_FILE`].
pub(crate) const CURSOR_TMP: &str = "cursor.tmp";
/// The lock file's name.
pub(crate) const LOCK_FILE: &str = "lock";

/// What recovery left on disk.
pub(crate) struct Found {
    /// Surviving segments, oldest first, validated up to their `len`.
    pub(crate) segs: VecDeque<Segment>,
    /// Where reading starts: the cursor, or the first segment's first
    /// record. Meaningless when `segs` is empty.
    pub(crate) start: Pos,
    /// An id above every segment and cursor id seen.
    pub(crate) next_id: u64,
    /// Torn tails cut and bad segment headers deleted.
    pub(crate) corrupt: u64,
    /// Torn tails cut.
    pub(crate) torn_tails: u64,
}

/// Recovers the spool in `dir` (already locked).
///
/// # Errors
///
/// Only when the directory itself cannot be listed.
pub(crate) fn recover(dir: &Path) -> Result<Found, SpoolError> {
    let cursor = read_cursor(dir);
    let ids = list_segments(dir)?;
    let max_id = ids
        .last()
        .copied()
        .unwrap_or(0)
        .max(cursor.map_or(0, |(seg, _)| seg));
    let mut found = Found {
        segs: VecDeque::new(),
        start: Pos::new(0, SEGMENT_HEADER),
        next_id: max_id + 1,
        corrupt: 0,
        torn_tails: 0,
    };
    let last = ids.last().copied();
    for id in ids {
        let path = dir.join(segment_name(id));
        let from = match cursor {
            Some((seg, _)) if id < seg => {
                // Wholly delivered; a failed delete is retried next open.
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a delivered spool segment");
                }
                continue;
            }
            Some((seg, off)) if id == seg => off.max(SEGMENT_HEADER),
            _ => SEGMENT_HEADER,
        };
        match scan_segment(&path, id, from, &mut found) {
            Ok(Some(seg)) => {
                if found.segs.is_empty() {
                    found.start = Pos::new(id, from.min(seg.len));
                }
                if from >= seg.len && Some(id) != last && found.segs.is_empty() {
                    // The cursor is at its end: wholly delivered.
                    if let Err(e) = fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot delete a delivered spool segment");
                    }
                    continue;
                }
                found.segs.push_back(seg);
            }
            Ok(None) => {}
            Err(e) => {
                // Leave the file for a later open; its records stay unread now.
                tracing::warn!(path = %path.display(), error = %e, "cannot read spool segment; skipping it");
                found.corrupt += 1;
            }
        }
    }
    Ok(found)
}

/// The cursor's (segment, offset), or `None` when missing or invalid.
fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let path = dir.join(CURSOR_FILE);
    match fs::read(&path) {
        Ok(buf) => {
            let cursor = decode_cursor(&buf);
            if cursor.is_none() {
                tracing::warn!(path = %path.display(), "spool cursor is corrupt; reading from the oldest segment");
            }
            cursor
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read spool cursor; reading from the oldest segment");
            None
        }
    }
}

/// The segment ids in `dir`, ascending; other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let entries = fs::read_dir(dir).map_err(|e| SpoolError::io(dir, e))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(path = %entry.path().display(), "ignoring unexpected file in spool directory");
            continue;
        };
        match name {
            LOCK_FILE | CURSOR_FILE => {}
            // Left by a crash between write and rename; the old cursor stands.
            CURSOR_TMP => {
                let _ = fs::remove_file(entry.path());
            }
            _ => match parse_segment_name(name) {
                Some(id) => ids.push(id),
                None => {
                    tracing::warn!(path = %entry.path().display(), "ignoring unexpected file in spool directory");
                }
            },
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Validates segment `id` from offset `from`, cutting a torn tail. `None`
/// when the file was deleted for a bad (or never finished) file header.
fn scan_segment(path: &Path, id: u64, from: u64, found: &mut Found) -> io::Result<Option<Segment>> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut len = file.metadata()?.len();
    let head_len = len.min(SEGMENT_HEADER) as usize;
    let mut head = [0u8; SEGMENT_HEADER as usize];
    file.read_exact_at(&mut head[..head_len], 0)?;
    if head_len < SEGMENT_MAGIC.len() || head != *SEGMENT_MAGIC {
        drop(file);
        if head[..head_len] == SEGMENT_MAGIC[..head_len] {
            // A crash between creating the file and writing its header: no
            // record was ever in it.
            tracing::debug!(path = %path.display(), "deleting unfinished spool segment");
        } else {
            tracing::warn!(path = %path.display(), "spool segment has a bad file header; deleting it");
            found.corrupt += 1;
        }
        fs::remove_file(path)?;
        return Ok(None);
    }
    let from = from.min(len);
    let mut unread = 0;
    let mut off = from;
    let mut reader = Reader::new(&file, len, SCAN_WINDOW);
    loop {
        match format::scan(&mut reader, off)? {
            Scan::End => break,
            Scan::Record { end, .. } => {
                unread += 1;
                off = end;
            }
            // Followed by a valid record: read_next skips and counts it.
            Scan::Corrupt { next } if next < len => off = next,
            Scan::Corrupt { .. } => {
                tracing::warn!(
                    path = %path.display(),
                    offset = off,
                    bytes = len - off,
                    "cutting a torn tail off a spool segment"
                );
                found.corrupt += 1;
                found.torn_tails += 1;
                // If the cut fails, appends still overwrite from `off`.
                if let Err(e) = file.set_len(off) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot truncate spool segment");
                }
                len = off;
                break;
            }
        }
    }
    Ok(Some(Segment {
        id,
        len,
        file: Arc::new(file),
        unread,
    }))
}

/// Creates segment `id` with its file header.
pub(crate) fn create_segment(dir: &Path, id: u64) -> Result<Segment, SpoolError> {
    let path = dir.join(segment_name(id));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| SpoolError::io(&path, e))?;
    if let Err(e) = file.write_all_at(SEGMENT_MAGIC, 0) {
        let _ = fs::remove_file(&path);
        return Err(SpoolError::io(&path, e));
    }
    Ok(Segment {
        id,
        len: SEGMENT_HEADER,
        file: Arc::new(file),
        unread: 0,
    })
}

/// Makes the directory's entries (new segments) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io(dir, e))
}
