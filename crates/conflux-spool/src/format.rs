//! The on-disk encoding (see the crate doc) and the record scanner that both
//! recovery and reads use, so that they agree on where every record and every
//! corrupt region starts and ends.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::MAX_RECORD_BYTES;

/// The first bytes of every segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"CFXSPL01";
/// Length of the segment file header; the first record starts here.
pub(crate) const SEGMENT_HEADER: u64 = SEGMENT_MAGIC.len() as u64;
/// The first field of every record header.
pub(crate) const RECORD_MAGIC: u32 = 0x5250_4643;
/// Length of a record header: magic, len, appended_unix_ms, crc.
pub(crate) const RECORD_HEADER: u64 = 20;
/// Length of the cursor file: segment id, offset, crc.
pub(crate) const CURSOR_LEN: usize = 20;

/// How much a resync reads at a time while looking for the next magic.
const RESYNC_CHUNK: usize = 64 << 10;

/// The file name of segment `id`.
pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The id in a segment file name, or `None` if `name` is not one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checksum stored in a record header.
fn record_crc(len: u32, appended_unix_ms: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&appended_unix_ms.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// One record, header and payload, ready to write. `payload` must be at most
/// [`MAX_RECORD_BYTES`] long (the caller checks).
pub(crate) fn encode_record(payload: &[u8], appended_unix_ms: u64) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut buf = Vec::with_capacity(RECORD_HEADER as usize + payload.len());
    buf.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&appended_unix_ms.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, appended_unix_ms, payload).to_le_bytes());
    buf.extend_from_slice(payload);
    buf
}

/// The cursor file's contents for position (`segment`, `offset`).
pub(crate) fn encode_cursor(segment: u64, offset: u64) -> [u8; CURSOR_LEN] {
    let mut buf = [0; CURSOR_LEN];
    buf[..8].copy_from_slice(&segment.to_le_bytes());
    buf[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&buf[..16]);
    buf[16..].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// The (segment, offset) in a cursor file, or `None` if it is not valid.
pub(crate) fn decode_cursor(buf: &[u8]) -> Option<(u64, u64)> {
    if buf.len() != CURSOR_LEN {
        return None;
    }
    let crc = u32::from_le_bytes(buf[16..20].try_into().ok()?);
    if crc32fast::hash(&buf[..16]) != crc {
        return None;
    }
    let segment = u64::from_le_bytes(buf[..8].try_into().ok()?);
    let offset = u64::from_le_bytes(buf[8..16].try_into().ok()?);
    Some((segment, offset))
}

/// Positional reads of one segment up to `limit`, through a window buffer so
/// that a sequential scan of small records costs few syscalls.
pub(crate) struct Reader<'a> {
    file: &'a File,
    limit: u64,
    window: usize,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Reader<'a> {
    /// Reads `file` up to `limit` bytes, `window` bytes at a time at least.
    pub(crate) fn new(file: &'a File, limit: u64, window: usize) -> Self {
        Self {
            file,
            limit,
            window,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// The end of the readable part of the segment.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// `len` bytes at `off`; the caller keeps `off + len <= limit`.
    pub(crate) fn get(&mut self, off: u64, len: usize) -> io::Result<&[u8]> {
        let end = off + len as u64;
        let buf_end = self.start + self.buf.len() as u64;
        if off < self.start || end > buf_end {
            let room = usize::try_from(self.limit.saturating_sub(off)).unwrap_or(usize::MAX);
            let want = len.max(self.window).min(room.max(len));
            self.buf.clear();
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            self.start = off;
        }
        let at = usize::try_from(off - self.start).unwrap_or(usize::MAX);
        Ok(&self.buf[at..at + len])
    }
}

/// What is at one offset of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The offset is the end of the readable part.
    End,
    /// A valid record; its payload is `len` bytes at `start + RECORD_HEADER`.
    Record {
        start: u64,
        len: usize,
        end: u64,
        appended_unix_ms: u64,
    },
    /// Bytes from the offset up to `next` (a valid record or the end) are
    /// one corrupt region.
    Corrupt { next: u64 },
}

/// What a record header at one offset claims.
enum Check {
    Valid { end: u64, len: usize, ms: u64 },
    BadCrc { end: u64 },
    Bad,
}

/// Validates the record at `off`: magic, a sane length inside the limit, crc.
fn check(r: &mut Reader<'_>, off: u64) -> io::Result<Check> {
    if r.limit().saturating_sub(off) < RECORD_HEADER {
        return Ok(Check::Bad);
    }
    let hdr = r.get(off, RECORD_HEADER as usize)?;
    let field = |at: usize| -> [u8; 4] { [hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]] };
    let magic = u32::from_le_bytes(field(0));
    let len32 = u32::from_le_bytes(field(4));
    let ms = u64::from_le_bytes([
        hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
    ]);
    let crc = u32::from_le_bytes(field(16));
    let len = len32 as usize;
    let end = off + RECORD_HEADER + u64::from(len32);
    if magic != RECORD_MAGIC || len > MAX_RECORD_BYTES || end > r.limit() {
        return Ok(Check::Bad);
    }
    let payload = r.get(off + RECORD_HEADER, len)?;
    if record_crc(len32, ms, payload) == crc {
        Ok(Check::Valid { end, len, ms })
    } else {
        Ok(Check::BadCrc { end })
    }
}

/// What is at `off`: the end, a valid record, or a corrupt region up to the
/// next valid record (or the end).
///
/// A record whose checksum fails is skipped by its length only when a valid
/// record follows it: otherwise its length is suspect too, and the scanner
/// resyncs byte by byte, so one damaged spot is one region (and a torn last
/// record is a region running to the end).
pub(crate) fn scan(r: &mut Reader<'_>, off: u64) -> io::Result<Scan> {
    if off >= r.limit() {
        return Ok(Scan::End);
    }
    match check(r, off)? {
        Check::Valid { end, len, ms } => Ok(Scan::Record {
            start: off,
            len,
            end,
            appended_unix_ms: ms,
        }),
        Check::BadCrc { end } => {
            // A bad length can also land exactly on the limit, so the end
            // only vouches for the length when it is a valid record.
            if end < r.limit() && matches!(check(r, end)?, Check::Valid { .. }) {
                Ok(Scan::Corrupt { next: end })
            } else {
                Ok(Scan::Corrupt {
                    next: resync(r, off + 1)?,
                })
            }
        }
        Check::Bad => Ok(Scan::Corrupt {
            next: resync(r, off + 1)?,
        }),
    }
}

/// The first offset at or after `from` where a whole record validates, or
/// the limit if there is none.
fn resync(r: &mut Reader<'_>, from: u64) -> io::Result<u64> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut off = from;
    let mut candidates = Vec::new();
    while off + RECORD_HEADER <= r.limit() {
        let room = usize::try_from(r.limit() - off).unwrap_or(usize::MAX);
        let chunk_len = room.min(RESYNC_CHUNK);
        let chunk = r.get(off, chunk_len)?;
        candidates.clear();
        candidates.extend(
            chunk
                .windows(magic.len())
                .enumerate()
                .filter(|(_, w)| *w == magic)
                .map(|(i, _)| off + i as u64),
        );
        for &at in &candidates {
            if matches!(check(r, at)?, Check::Valid { .. }) {
                return Ok(at);
            }
        }
        // Overlap by magic.len() - 1 bytes so a magic across chunks is seen.
        off += (chunk_len - (magic.len() - 1)) as u64;
    }
    Ok(r.limit())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;

    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        (f, bytes.len() as u64)
    }

    fn scan_all(bytes: &[u8], window: usize) -> Vec<Scan> {
        let (f, len) = file_with(bytes);
        let mut r = Reader::new(f.as_file(), len, window);
        let mut off = 0;
        let mut out = Vec::new();
        loop {
            let s = scan(&mut r, off).unwrap();
            out.push(s);
            off = match s {
                Scan::End => return out,
                Scan::Record { end, .. } => end,
                Scan::Corrupt { next } => next,
            };
        }
    }

    #[test]
    fn segment_names_round_trip_and_reject_strangers() {
        assert_eq!(segment_name(7), "00000000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_name(7)), Some(7));
        assert_eq!(parse_segment_name("7.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000007.tmp"), None);
        assert_eq!(parse_segment_name("+0000000000000000007.seg"), None);
    }

    #[test]
    fn cursor_round_trips_and_rejects_damage() {
        let buf = encode_cursor(3, 1234);
        assert_eq!(decode_cursor(&buf), Some((3, 1234)));
        let mut bad = buf;
        bad[9] ^= 1;
        assert_eq!(decode_cursor(&bad), None);
        assert_eq!(decode_cursor(&buf[..19]), None);
    }

    #[test]
    fn scan_reads_back_encoded_records_with_any_window() {
        let mut bytes = encode_record(b"hello", 11);
        bytes.extend(encode_record(b"", 12));
        bytes.extend(encode_record(&[7; 300], 13));
        for window in [0, 1, 25, 4096] {
            let got = scan_all(&bytes, window);
            assert_eq!(got.len(), 4, "window {window}");
            assert!(matches!(
                got[0],
                Scan::Record {
                    start: 0,
                    len: 5,
                    end: 25,
                    appended_unix_ms: 11
                }
            ));
            assert!(matches!(
                got[1],
                Scan::Record {
                    len: 0,
                    end: 45,
                    ..
                }
            ));
            assert!(matches!(got[2], Scan::Record { len: 300, .. }));
            assert_eq!(got[3], Scan::End);
        }
    }

    #[test]
    fn bad_payload_byte_is_skipped_by_length() {
        let a = encode_record(b"aaaa", 1);
        let mut b = encode_record(b"bbbb", 2);
        let c = encode_record(b"cccc", 3);
        b[21] ^= 0xff;
        let bytes = [a.clone(), b.clone(), c].concat();
        let got = scan_all(&bytes, 4096);
        let b_end = (a.len() + b.len()) as u64;
        assert_eq!(got[1], Scan::Corrupt { next: b_end });
        assert!(matches!(got[2], Scan::Record { start, .. } if start == b_end));
    }

    #[test]
    fn bad_length_resyncs_to_the_next_valid_record_as_one_region() {
        for flip in [0x01u8, 0x80, 0x40] {
            for byte in [4usize, 7] {
                let a = encode_record(b"aaaaaaaaaaaa", 1);
                let mut b = encode_record(b"bbbbbbbbbbbb", 2);
                let c = encode_record(b"cccccccccccc", 3);
                let d = encode_record(b"dddddddddddd", 4);
                b[byte] ^= flip;
                let bytes = [a.clone(), b.clone(), c.clone(), d].concat();
                let got = scan_all(&bytes, 16);
                let c_start = (a.len() + b.len()) as u64;
                assert_eq!(
                    got[1],
                    Scan::Corrupt { next: c_start },
                    "flip {flip:#x} in byte {byte}"
                );
                assert!(matches!(
                    got[2],
                    Scan::Record {
                        appended_unix_ms: 3,
                        ..
                    }
                ));
                assert!(matches!(
                    got[3],
                    Scan::Record {
                        appended_unix_ms: 4,
                        ..
                    }
                ));
                assert_eq!(got[4], Scan::End);
            }
        }
    }

    #[test]
    fn resync_finds_records_across_chunk_boundaries() {
        let mut bytes = vec![0x43u8; RESYNC_CHUNK - 2];
        bytes.extend(encode_record(b"found", 9));
        let got = scan_all(&bytes, 1000);
        assert_eq!(
            got[0],
            Scan::Corrupt {
                next: (RESYNC_CHUNK - 2) as u64
            }
        );
        assert!(matches!(
            got[1],
            Scan::Record {
                appended_unix_ms: 9,
                ..
            }
        ));
    }

    #[test]
    fn garbage_to_the_end_is_one_region() {
        let a = encode_record(b"aaaa", 1);
        let b = encode_record(b"bbbb", 2);
        let mut bytes = [a.clone(), b].concat();
        bytes.truncate(bytes.len() - 3);
        let got = scan_all(&bytes, 4096);
        assert_eq!(
            got[1],
            Scan::Corrupt {
                next: bytes.len() as u64
            }
        );
        assert_eq!(got.len(), 3);
        // A header cut short is also one region.
        let got = scan_all(&[a.as_slice(), &b"\x43\x46"[..]].concat(), 4096);
        assert_eq!(
            got[1],
            Scan::Corrupt {
                next: a.len() as u64 + 2
            }
        );
    }
}
