#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::format::SEGMENT_MAGIC;

use super::*;

/// 31 bytes on disk, so three fill a 100-byte segment (8 + 93 = 101).
fn rec(i: u32) -> Vec<u8> {
    format!("record-{i:04}").into_bytes()
}

const REC_BYTES: u64 = 31;

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        segment_bytes: 100,
        when_full: WhenFull::Block,
        // Long enough never to tick in a test; Drop syncs the rest.
        fsync: Fsync::Interval(Duration::from_secs(3600)),
    }
}

/// Segments large enough that every test record lands in the first.
fn one_segment(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 1 << 20,
        ..cfg(dir)
    }
}

fn open(cfg: SpoolConfig) -> (Spool, Recovered) {
    Spool::open(cfg).unwrap()
}

fn seg_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| format::parse_segment_name(e.unwrap().file_name().to_str()?))
        .collect();
    ids.sort_unstable();
    ids
}

fn seg_file(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

fn disk_bytes(dir: &Path) -> u64 {
    seg_ids(dir)
        .into_iter()
        .map(|id| fs::metadata(seg_file(dir, id)).unwrap().len())
        .sum()
}

fn read_all(s: &Spool) -> Vec<Record> {
    std::iter::from_fn(|| s.read_next().unwrap()).collect()
}

fn datas(recs: &[Record]) -> Vec<Vec<u8>> {
    recs.iter().map(|r| r.data.clone()).collect()
}

fn recs(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(rec).collect()
}

async fn append_all(s: &Spool, range: std::ops::Range<u32>) -> Vec<Pos> {
    let mut out = Vec::new();
    for i in range {
        out.push(s.append(&rec(i), None).await.unwrap());
    }
    out
}

fn flip(path: &Path, at: u64, mask: u8) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, at).unwrap();
}

fn truncate(path: &Path, by: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - by).unwrap();
}

/// Offset of record `i` (0-based) in a segment of `rec` records.
fn rec_offset(i: u64) -> u64 {
    SEGMENT_HEADER + i * REC_BYTES
}

#[test]
fn spool_is_send_sync_and_append_is_send() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = rt.block_on(async { open(cfg(dir.path())) });
    send_sync(&s);
    send(s.append(b"x", None));
    send(s.appended());
}

#[tokio::test]
async fn records_round_trip_in_order_across_segments_and_commit_deletes_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (s, rec0) = open(cfg(dir.path()));
    assert_eq!(rec0, Recovered::default());
    assert_eq!(s.dir(), dir.path());
    assert_eq!(s.stats().bytes, SEGMENT_HEADER);
    assert_eq!(s.read_next().unwrap(), None);

    let before = now_unix_ms();
    let pos = append_all(&s, 0..10).await;
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "positions increase");
    assert_eq!(seg_ids(dir.path()), vec![1, 2, 3, 4]);
    let st = s.stats();
    assert_eq!(st.bytes, 4 * SEGMENT_HEADER + 10 * REC_BYTES);
    assert_eq!(st.bytes, disk_bytes(dir.path()));
    assert_eq!((st.records, st.unread), (10, 10));
    assert!(
        st.oldest_unix_ms
            .is_some_and(|ms| ms >= before && ms <= now_unix_ms())
    );
    assert_eq!(s.unread(), 10);

    let first: Vec<Record> = (0..4).map(|_| s.read_next().unwrap().unwrap()).collect();
    assert_eq!(datas(&first), recs(0..4));
    assert_eq!(first.iter().map(|r| r.pos).collect::<Vec<_>>(), pos[..4]);
    let st = s.stats();
    assert_eq!((st.records, st.unread), (10, 6));
    assert_eq!(st.oldest_unix_ms, Some(first[0].appended_unix_ms));

    // Record 3 is the first of segment 2: segment 1 is wholly delivered.
    s.commit(first[3].pos).unwrap();
    assert_eq!(seg_ids(dir.path()), vec![2, 3, 4]);
    let st = s.stats();
    assert_eq!(st.bytes, 3 * SEGMENT_HEADER + 7 * REC_BYTES);
    assert_eq!((st.records, st.unread), (6, 6));

    let rest = read_all(&s);
    assert_eq!(datas(&rest), recs(4..10));
    s.commit(rest[5].pos).unwrap();
    // The active segment stays.
    assert_eq!(seg_ids(dir.path()), vec![4]);
    let st = s.stats();
    assert_eq!(st.bytes, SEGMENT_HEADER + REC_BYTES);
    assert_eq!((st.records, st.unread, st.oldest_unix_ms), (0, 0, None));
    assert_eq!(s.read_next().unwrap(), None);

    append_all(&s, 10..11).await;
    assert_eq!(datas(&read_all(&s)), recs(10..11));
    assert_eq!(st.corrupt_records + st.dropped_records, 0);
}

#[tokio::test]
async fn stale_and_deleted_positions_commit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    append_all(&s, 0..7).await;
    let r = read_all(&s);
    s.commit(r[4].pos).unwrap();
    assert_eq!(seg_ids(dir.path()), vec![2, 3]);
    let cursor = fs::read(dir.path().join(CURSOR_FILE)).unwrap();
    s.commit(r[3].pos).unwrap();
    s.commit(r[0].pos).unwrap();
    assert_eq!(fs::read(dir.path().join(CURSOR_FILE)).unwrap(), cursor);
    assert_eq!(s.stats().records, 2);
}

#[tokio::test]
async fn committing_an_unread_position_reads_up_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    let pos = append_all(&s, 0..8).await;
    s.commit(pos[4]).unwrap();
    let st = s.stats();
    assert_eq!((st.records, st.unread), (3, 3));
    assert_eq!(datas(&read_all(&s)), recs(5..8));
}

#[tokio::test]
async fn reopen_replays_uncommitted_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    append_all(&s, 0..10).await;
    let r: Vec<Record> = (0..5).map(|_| s.read_next().unwrap().unwrap()).collect();
    s.commit(r[2].pos).unwrap();
    drop(s);

    let (s, found) = open(cfg(dir.path()));
    assert_eq!(found.records, 7);
    assert_eq!(found.torn_tails, 0);
    assert_eq!(found.bytes, disk_bytes(dir.path()));
    assert_eq!(datas(&read_all(&s)), recs(3..10));
    drop(s);

    // Read but not committed: everything comes back again.
    let (s, found) = open(cfg(dir.path()));
    assert_eq!(found.records, 7);
    assert_eq!(datas(&read_all(&s)), recs(3..10));
    // Appends after reopen follow the old records.
    append_all(&s, 10..12).await;
    assert_eq!(datas(&read_all(&s)), recs(10..12));
}

#[tokio::test]
async fn reopen_without_any_commit_replays_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    append_all(&s, 0..5).await;
    assert_eq!(read_all(&s).len(), 5);
    drop(s);
    let (s, found) = open(cfg(dir.path()));
    assert_eq!(found.records, 5);
    assert_eq!(datas(&read_all(&s)), recs(0..5));
}

#[tokio::test]
async fn torn_tail_is_cut_and_appends_follow_the_intact_records() {
    let dir = tempfile::tempdir().unwrap();
    let big = one_segment(dir.path());
    let (s, _) = open(big.clone());
    append_all(&s, 0..5).await;
    drop(s);
    let path = seg_file(dir.path(), 1);
    truncate(&path, 5);

    let (s, found) = open(big);
    assert_eq!(
        found,
        Recovered {
            records: 4,
            bytes: rec_offset(4),
            torn_tails: 1
        }
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), rec_offset(4));
    assert_eq!(s.stats().corrupt_records, 1);
    s.append(&rec(99), None).await.unwrap();
    let mut want = recs(0..4);
    want.push(rec(99));
    assert_eq!(datas(&read_all(&s)), want);
    assert_eq!(s.stats().corrupt_records, 1);
}

#[tokio::test]
async fn torn_header_is_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    append_all(&s, 0..2).await;
    drop(s);
    // Cut inside the second record's header.
    truncate(&seg_file(dir.path(), 1), REC_BYTES - 7);
    let (s, found) = open(cfg(dir.path()));
    assert_eq!((found.records, found.torn_tails), (1, 1));
    assert_eq!(datas(&read_all(&s)), recs(0..1));
}

#[tokio::test]
async fn corrupt_middle_record_is_skipped_and_counted_once_with_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let big = one_segment(dir.path());
    let (s, _) = open(big.clone());
    append_all(&s, 0..6).await;
    drop(s);
    let path = seg_file(dir.path(), 1);
    flip(&path, rec_offset(2) + RECORD_HEADER + 3, 0x20);
    truncate(&path, 10);

    let (s, found) = open(big);
    assert_eq!((found.records, found.torn_tails), (4, 1));
    assert_eq!(s.stats().corrupt_records, 1);
    let got = read_all(&s);
    assert_eq!(datas(&got), [rec(0), rec(1), rec(3), rec(4)]);
    let st = s.stats();
    assert_eq!(st.corrupt_records, 2);
    assert_eq!((st.records, st.unread), (4, 0));
    // Reading again counts nothing more.
    assert_eq!(s.read_next().unwrap(), None);
    assert_eq!(s.stats().corrupt_records, 2);
}

#[tokio::test]
async fn damaged_length_resyncs_to_the_next_record_as_one_region() {
    // Low byte: a wrong but plausible length; high byte: an absurd one.
    for (byte, mask) in [(4u64, 0x01u8), (4, 0x40), (7, 0x80), (0, 0xff)] {
        let dir = tempfile::tempdir().unwrap();
        let big = one_segment(dir.path());
        let (s, _) = open(big.clone());
        append_all(&s, 0..6).await;
        drop(s);
        flip(&seg_file(dir.path(), 1), rec_offset(2) + byte, mask);

        let (s, found) = open(big);
        assert_eq!(
            (found.records, found.torn_tails),
            (5, 0),
            "byte {byte} ^ {mask:#x}"
        );
        let got = read_all(&s);
        assert_eq!(
            datas(&got),
            [rec(0), rec(1), rec(3), rec(4), rec(5)],
            "byte {byte} ^ {mask:#x}"
        );
        assert_eq!(s.stats().corrupt_records, 1, "byte {byte} ^ {mask:#x}");
    }
}

#[tokio::test]
async fn segment_with_garbage_header_is_deleted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    append_all(&s, 0..9).await;
    drop(s);
    let bad = seg_file(dir.path(), 2);
    OpenOptions::new()
        .write(true)
        .open(&bad)
        .unwrap()
        .write_all_at(b"GARBAGE!", 0)
        .unwrap();
    fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();

    let (s, found) = open(cfg(dir.path()));
    assert_eq!(found.records, 6);
    assert_eq!(s.stats().corrupt_records, 1);
    assert!(!bad.exists());
    assert!(dir.path().join("notes.txt").exists());
    assert_eq!(
        datas(&read_all(&s)),
        [rec(0), rec(1), rec(2), rec(6), rec(7), rec(8)]
    );
}

#[tokio::test]
async fn unfinished_new_segment_is_removed_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    append_all(&s, 0..2).await;
    drop(s);
    // A crash right after creating segment 2.
    fs::write(seg_file(dir.path(), 2), &SEGMENT_MAGIC[..3]).unwrap();

    let (s, found) = open(cfg(dir.path()));
    assert_eq!(found.records, 2);
    assert_eq!(s.stats().corrupt_records, 0);
    assert_eq!(seg_ids(dir.path()), vec![1]);
    append_all(&s, 2..4).await;
    assert_eq!(datas(&read_all(&s)), recs(0..4));
    // Ids keep increasing past the removed file's.
    append_all(&s, 4..6).await;
    assert_eq!(seg_ids(dir.path()), vec![1, 3]);
}

#[tokio::test(start_paused = true)]
async fn block_waits_for_room_and_gives_up_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // Two full segments plus one record of a third fit; the next does not.
    let (s, _) = open(SpoolConfig {
        max_bytes: 250,
        ..cfg(dir.path())
    });
    append_all(&s, 0..7).await;
    assert_eq!(s.stats().bytes, 2 * 101 + SEGMENT_HEADER + REC_BYTES);

    let deadline = Instant::now() + Duration::from_secs(5);
    let err = s.append(&rec(7), Some(deadline)).await.unwrap_err();
    assert!(matches!(err, SpoolError::Full), "{err:?}");
    assert!(Instant::now() >= deadline);
    assert_eq!(s.stats().records, 7);

    let waiter = tokio::spawn({
        let s = s.clone();
        async move { s.append(&rec(7), None).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());

    // Delivering a record short of a whole segment frees nothing.
    let r: Vec<Record> = (0..3).map(|_| s.read_next().unwrap().unwrap()).collect();
    s.commit(r[1].pos).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());

    s.commit(r[2].pos).unwrap();
    let pos = waiter.await.unwrap().unwrap();
    assert_eq!(pos.segment(), 3);
    assert!(s.stats().bytes <= 250);
    assert_eq!(datas(&read_all(&s)), recs(3..8));
}

#[tokio::test]
async fn drop_oldest_deletes_oldest_segments_and_counts_lost_records() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 250;
    let (s, _) = open(SpoolConfig {
        max_bytes,
        when_full: WhenFull::DropOldest,
        ..cfg(dir.path())
    });
    append_all(&s, 0..7).await;
    // Read one (in flight, not committed): it is lost too.
    assert_eq!(s.read_next().unwrap().unwrap().data, rec(0));
    assert_eq!(s.stats().dropped_records, 0);

    s.append(&rec(7), None).await.unwrap();
    assert_eq!(seg_ids(dir.path()), vec![2, 3]);
    let st = s.stats();
    assert_eq!(st.dropped_records, 3);
    assert!(st.bytes <= max_bytes);
    assert_eq!((st.records, st.unread), (5, 5));
    let r3 = s.read_next().unwrap().unwrap();
    assert_eq!(r3.data, rec(3));
    s.commit(r3.pos).unwrap();

    for i in 8..30 {
        s.append(&rec(i), None).await.unwrap();
        assert!(s.stats().bytes <= max_bytes, "after record {i}");
        assert_eq!(s.stats().bytes, disk_bytes(dir.path()));
    }
    let got = datas(&read_all(&s));
    let first = 30 - got.len() as u32;
    assert!(first > 4);
    assert_eq!(got, recs(first..30), "a contiguous suffix");
    // Every record is delivered, committed (record 3) or counted as dropped.
    assert_eq!(s.stats().dropped_records, u64::from(first) - 1);

    // An oversized record drops everything, active segment included.
    let huge = vec![7u8; 400];
    let dropped = s.stats().dropped_records;
    s.append(&huge, None).await.unwrap();
    let st = s.stats();
    assert!(st.bytes <= max_bytes + RECORD_HEADER + 400);
    assert_eq!(st.dropped_records, dropped + got.len() as u64);
    assert_eq!(datas(&read_all(&s)), [huge]);
}

#[tokio::test]
async fn oversized_record_is_accepted_only_into_an_empty_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(SpoolConfig {
        max_bytes: 100,
        segment_bytes: 1000,
        ..cfg(dir.path())
    });
    let now = Some(Instant::now());
    let huge = vec![1u8; 500];
    s.append(&huge, now).await.unwrap();
    assert_eq!(s.stats().bytes, SEGMENT_HEADER + RECORD_HEADER + 500);
    let err = s.append(&rec(0), now).await.unwrap_err();
    assert!(matches!(err, SpoolError::Full), "{err:?}");

    let r = s.read_next().unwrap().unwrap();
    assert_eq!(r.data, huge);
    s.commit(r.pos).unwrap();
    // Delivered data in the active segment is rotated away for new data.
    s.append(&rec(0), now).await.unwrap();
    assert_eq!(seg_ids(dir.path()), vec![2]);
    assert_eq!(s.stats().bytes, SEGMENT_HEADER + REC_BYTES);
    assert_eq!(s.stats().dropped_records, 0);
    assert_eq!(datas(&read_all(&s)), recs(0..1));
}

#[tokio::test]
async fn too_large_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    let data = vec![0u8; MAX_RECORD_BYTES + 1];
    let err = s.append(&data, None).await.unwrap_err();
    assert!(matches!(err, SpoolError::TooLarge { len } if len == MAX_RECORD_BYTES + 1));
    assert!(matches!(
        s.append_now(&data),
        Err(SpoolError::TooLarge { .. })
    ));
    assert_eq!(s.stats().records, 0);
}

#[tokio::test]
async fn second_open_of_a_locked_directory_fails_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    append_all(&s, 0..1).await;
    let err = Spool::open(cfg(dir.path())).unwrap_err();
    assert!(
        matches!(&err, SpoolError::Locked { dir: d } if d == dir.path()),
        "{err:?}"
    );
    // A clone shares the lock; only the last drop releases it.
    let clone = s.clone();
    drop(s);
    assert!(matches!(
        Spool::open(cfg(dir.path())),
        Err(SpoolError::Locked { .. })
    ));
    drop(clone);
    let (s, found) = open(cfg(dir.path()));
    assert_eq!(found.records, 1);
    drop(s);
}

#[tokio::test]
async fn missing_or_corrupt_cursor_replays_from_the_oldest_segment() {
    for damage in ["none", "missing", "garbage", "short"] {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(cfg(dir.path()));
        append_all(&s, 0..9).await;
        let r: Vec<Record> = (0..5).map(|_| s.read_next().unwrap().unwrap()).collect();
        s.commit(r[4].pos).unwrap();
        drop(s);
        let cursor = dir.path().join(CURSOR_FILE);
        match damage {
            "missing" => fs::remove_file(&cursor).unwrap(),
            "garbage" => {
                let mut b = fs::read(&cursor).unwrap();
                b[3] ^= 0x10;
                fs::write(&cursor, b).unwrap();
            }
            "short" => fs::write(&cursor, b"12345").unwrap(),
            _ => {}
        }
        let (s, _) = open(cfg(dir.path()));
        let want = if damage == "none" {
            recs(5..9)
        } else {
            // Segment 2 onwards: records 3 and 4 again, nothing lost.
            recs(3..9)
        };
        assert_eq!(datas(&read_all(&s)), want, "cursor {damage}");
    }
}

#[tokio::test]
async fn interval_fsync_syncs_in_the_background_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        fsync: Fsync::Interval(Duration::from_millis(5)),
        ..cfg(dir.path())
    };
    let (s, _) = open(c.clone());
    append_all(&s, 0..2).await;
    let mut synced = false;
    for _ in 0..2000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let st = s.inner.lock();
        if st.synced == st.written {
            synced = true;
            break;
        }
    }
    assert!(synced, "the background task synced");
    assert!(s.inner.lock().written > 0);
    let weak = Arc::downgrade(&s.inner);
    drop(s);
    assert!(
        weak.upgrade().is_none(),
        "the syncer holds no strong reference"
    );
    let (s, found) = open(c);
    assert_eq!(found.records, 2);
    assert_eq!(datas(&read_all(&s)), recs(0..2));
}

#[tokio::test]
async fn batch_fsync_returns_synced_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        fsync: Fsync::Batch,
        ..cfg(dir.path())
    };
    let (s, _) = open(c.clone());
    for i in 0..5 {
        s.append(&rec(i), None).await.unwrap();
        let st = s.inner.lock();
        assert_eq!(st.synced, st.written, "after append {i}");
    }
    drop(s);
    let (s, found) = open(c);
    assert_eq!(found.records, 5);
    assert_eq!(datas(&read_all(&s)), recs(0..5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_all_land_once_in_each_tasks_order() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(SpoolConfig {
        fsync: Fsync::Batch,
        segment_bytes: 2000,
        ..cfg(dir.path())
    });
    let (tasks, per_task) = (8u32, 40u32);
    // A reader running alongside sees only whole records.
    let reader = tokio::spawn({
        let s = s.clone();
        async move {
            let mut got = Vec::new();
            while got.len() < (tasks * per_task) as usize {
                let wake = s.appended();
                match s.read_next().unwrap() {
                    Some(r) => got.push(r),
                    None => wake.await,
                }
            }
            got
        }
    });
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    s.append(format!("{t}:{i}").as_bytes(), None).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    {
        let st = s.inner.lock();
        assert_eq!(st.synced, st.written);
    }
    assert!(seg_ids(dir.path()).len() > 1);
    let got = reader.await.unwrap();
    assert_eq!(got.len(), (tasks * per_task) as usize);
    assert_eq!(s.read_next().unwrap(), None);
    assert_eq!(s.stats().corrupt_records, 0);
    let mut next: HashMap<u32, u32> = HashMap::new();
    for r in &got {
        let text = String::from_utf8(r.data.clone()).unwrap();
        let (t, i) = text.split_once(':').unwrap();
        let (t, i): (u32, u32) = (t.parse().unwrap(), i.parse().unwrap());
        let want = next.entry(t).or_insert(0);
        assert_eq!(i, *want, "task {t} in order, once each");
        *want += 1;
    }
    assert!(next.values().all(|&n| n == per_task));
}

#[tokio::test]
async fn append_now_ignores_the_cap_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(SpoolConfig {
        max_bytes: 100,
        ..cfg(dir.path())
    });
    append_all(&s, 0..2).await;
    let err = s.append(&rec(2), Some(Instant::now())).await.unwrap_err();
    assert!(matches!(err, SpoolError::Full));
    for i in 2..6 {
        s.append_now(&rec(i)).unwrap();
    }
    let st = s.stats();
    assert!(st.bytes > 100);
    assert_eq!(st.records, 6);
    {
        let st = s.inner.lock();
        assert_eq!(st.synced, st.written);
    }
    assert_eq!(datas(&read_all(&s)), recs(0..6));
}

#[tokio::test]
async fn appended_wakes_a_waiter_and_keeps_a_permit() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(cfg(dir.path()));
    // No one waiting: the wakeup is kept for the next call.
    s.append(b"a", None).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), s.appended())
        .await
        .expect("permit kept");

    let waiter = tokio::spawn({
        let s = s.clone();
        async move {
            s.appended().await;
            s.read_next().unwrap()
        }
    });
    tokio::task::yield_now().await;
    s.append(b"b", None).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.data, b"a");
}

/// A fixed-seed xorshift, enough for reproducible random operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn random_operations_read_exactly_the_uncommitted_records_in_order() {
    for seed in 1..=12u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let dir = tempfile::tempdir().unwrap();
        let c = SpoolConfig {
            segment_bytes: 40 + rng.below(300),
            ..cfg(dir.path())
        };
        let (mut s, _) = open(c.clone());
        // Uncommitted records as appended, and how many of them were read.
        let mut model: VecDeque<(Vec<u8>, Pos)> = VecDeque::new();
        let mut read = 0usize;
        let mut counter = 0u64;
        for step in 0..400 {
            let ctx = format!("seed {seed} step {step}");
            match rng.below(100) {
                0..40 => {
                    counter += 1;
                    let mut data = counter.to_le_bytes().to_vec();
                    data.resize(8 + rng.below(60) as usize, seed as u8);
                    let pos = if rng.below(10) == 0 {
                        s.append_now(&data).unwrap()
                    } else {
                        s.append(&data, None).await.unwrap()
                    };
                    model.push_back((data, pos));
                }
                40..70 => {
                    let got = s.read_next().unwrap();
                    match model.get(read) {
                        Some((data, pos)) => {
                            let got = got.expect(&ctx);
                            assert_eq!(&got.data, data, "{ctx}");
                            assert_eq!(got.pos, *pos, "{ctx}");
                            read += 1;
                        }
                        None => assert_eq!(got, None, "{ctx}"),
                    }
                }
                70..94 if !model.is_empty() => {
                    // Mostly what was read; sometimes past it.
                    let bound = if rng.below(5) == 0 { model.len() } else { read };
                    if bound > 0 {
                        let k = rng.below(bound as u64) as usize;
                        s.commit(model[k].1).unwrap();
                        model.drain(..=k);
                        read = read.saturating_sub(k + 1);
                    }
                }
                94.. => {
                    drop(s);
                    let (again, found) = open(c.clone());
                    s = again;
                    assert_eq!(found.records, model.len() as u64, "{ctx}");
                    assert_eq!(found.torn_tails, 0, "{ctx}");
                    read = 0;
                }
                _ => {}
            }
            let st = s.stats();
            assert_eq!(st.records, model.len() as u64, "{ctx}");
            assert_eq!(st.unread, (model.len() - read) as u64, "{ctx}");
            assert_eq!(st.bytes, disk_bytes(dir.path()), "{ctx}");
            assert_eq!(st.corrupt_records + st.dropped_records, 0, "{ctx}");
        }
        // Drain: exactly the rest, in order.
        let rest = datas(&read_all(&s));
        let want: Vec<Vec<u8>> = model.iter().skip(read).map(|(d, _)| d.clone()).collect();
        assert_eq!(rest, want, "seed {seed}");
    }
}
