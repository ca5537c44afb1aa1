//! OpenTSDB codec benchmarks: the telnet parser on the shared benchmark data
//! (`put` lines with ten tags), the `/api/put` JSON parser on the same points,
//! and the encoder.
//!
//! Data: `CONFLUX_BENCH_DATA` names an `opentsdb.txt` file, or a folder made by
//! `shared/bench/gen/gen.py --out DIR` (then `DIR/opentsdb.txt` is used); the
//! first 50,000 lines are taken. Without it a built-in sample of the same
//! shape is generated, so `cargo bench -p conflux-opentsdb` always runs.
//!
//! The shared data holds tag values such as `server=http://localhost:8080/health`,
//! which OpenTSDB's characters refuse: the parser runs with `:` allowed
//! (`allow_special_chars = ":"`, what the shared benchmark's config sets), and
//! once with KairosDB's `any_but_space` to show what the character check costs.
//! Figures: `docs/performance.md`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use conflux_core::Batch;
use conflux_opentsdb::codec::{Characters, Encoder, ParseOptions, parse, parse_put};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Lines taken from the data file.
const LINES: usize = 50_000;

/// The telnet input and where it came from.
fn input() -> (Vec<u8>, String) {
    if let Some(path) = std::env::var_os("CONFLUX_BENCH_DATA") {
        let mut path = PathBuf::from(path);
        if path.is_dir() {
            path = path.join("opentsdb.txt");
        }
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let end = memchr_nth(&data, LINES);
        return (data[..end].to_vec(), path.display().to_string());
    }
    (sample(LINES), "built-in sample".to_owned())
}

/// The end of the first `n` lines.
fn memchr_nth(data: &[u8], n: usize) -> usize {
    data.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .nth(n - 1)
        .map_or(data.len(), |(i, _)| i + 1)
}

/// Lines shaped like `shared/bench/gen/gen.py`'s `opentsdb.txt`.
fn sample(lines: usize) -> Vec<u8> {
    let mut out = String::new();
    let mut x: u64 = 42;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let fields = [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
    ];
    for i in 0..lines {
        let host = i / 40;
        let ts = 1_700_000_000 + (i / 4000) as i64 * 10;
        let field = fields[i % fields.len()];
        let value = if i % 3 == 0 {
            format!("{}", next() % 100_000)
        } else {
            format!("{}.{}", next() % 100, next())
        };
        out.push_str(&format!(
            "put cpu.{field} {ts} {value} arch=x86_64 az=us-east-1a cpu=cpu{} env=prod host=host-{host:05} os=linux rack=r{} region=us-east-1 service=cache team=payments\n",
            i % 8,
            host % 40
        ));
    }
    out.into_bytes()
}

/// OpenTSDB's rules with `:` allowed, as the shared benchmark's config sets.
fn bench_options() -> ParseOptions {
    ParseOptions {
        special_chars: ":".to_owned(),
        ..ParseOptions::default()
    }
}

fn count_lines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

fn parsers(c: &mut Criterion) {
    let (data, source) = input();
    let lines = count_lines(&data);
    let opts = bench_options();
    let any = ParseOptions {
        characters: Characters::AnyButSpace,
        ..ParseOptions::default()
    };
    eprintln!(
        "opentsdb bench input: {source}, {} bytes, {lines} lines",
        data.len()
    );
    let mut batch = Batch::with_capacity(lines as usize, data.len());
    let mut events = Vec::new();
    parse(&data, &opts, &mut batch, &mut events);
    assert!(events.is_empty(), "{:?}", events.first());
    assert_eq!(batch.len() as u64, lines);

    // The same points as one `/api/put` array.
    let mut enc = Encoder::default();
    let mut json = Vec::with_capacity(data.len() * 2);
    enc.json_begin(&mut json);
    for m in batch.iter() {
        enc.json_points(&m, &mut json);
    }
    enc.json_end(&mut json);
    // Not equal to `batch`: the encoder's sanitizer turns `:` into `_`.
    let check = parse_put(&json, &opts, false).unwrap();
    assert!(check.errors.is_empty(), "{:?}", check.errors.first());
    assert_eq!(check.batch.len(), batch.len());

    for (unit, telnet_tp, json_tp) in [
        (
            "bytes",
            Throughput::Bytes(data.len() as u64),
            Throughput::Bytes(json.len() as u64),
        ),
        (
            "lines",
            Throughput::Elements(lines),
            Throughput::Elements(lines),
        ),
    ] {
        let mut group = c.benchmark_group(format!("opentsdb_parse_{unit}"));
        group
            .sample_size(30)
            .measurement_time(Duration::from_secs(6));
        group.throughput(telnet_tp);
        group.bench_function("telnet_into_batch", |b| {
            b.iter(|| {
                batch.clear();
                events.clear();
                black_box(parse(black_box(&data), &opts, &mut batch, &mut events))
            })
        });
        group.bench_function("telnet_any_but_space", |b| {
            b.iter(|| {
                batch.clear();
                events.clear();
                black_box(parse(black_box(&data), &any, &mut batch, &mut events))
            })
        });
        group.throughput(json_tp);
        group.bench_function("api_put_json_into_batch", |b| {
            b.iter(|| black_box(parse_put(black_box(&json), &opts, false).map(|p| p.total)))
        });
        group.finish();
    }
}

fn encoder(c: &mut Criterion) {
    let (data, _) = input();
    let mut batch = Batch::new();
    let mut events = Vec::new();
    parse(&data, &bench_options(), &mut batch, &mut events);
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut enc = Encoder::default();
    let mut group = c.benchmark_group("opentsdb_encode");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    group.bench_function("put_lines", |b| {
        b.iter(|| {
            out.clear();
            for m in batch.iter() {
                enc.put_lines(&m, &mut out);
            }
            black_box(out.len())
        })
    });
    group.bench_function("api_put_json", |b| {
        b.iter(|| {
            out.clear();
            enc.json_begin(&mut out);
            for m in batch.iter() {
                enc.json_points(&m, &mut out);
            }
            enc.json_end(&mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, parsers, encoder);
criterion_main!(benches);
