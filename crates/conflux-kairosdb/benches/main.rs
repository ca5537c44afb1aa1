//! KairosDB REST JSON benchmarks: the streaming parser on one body of the
//! shared benchmark data (about 10.7 MB, 42,500 points), next to
//! `serde_json::Value` (building the whole tree, nothing else) for scale; and
//! the sink's encoder.
//!
//! Data: `CONFLUX_BENCH_DATA` names a `.json` file, or a folder made by
//! `shared/bench/gen/gen.py --out DIR` (then `DIR/kairosdb/batch-000.json`).
//! Without it a built-in sample of the same shape is generated, so
//! `cargo bench -p conflux-kairosdb` always runs. Figures: `docs/performance.md`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use conflux_core::Batch;
use conflux_kairosdb::codec::{EncodeOptions, Encoder, ParseOptions, parse};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The input and where it came from.
fn input() -> (Vec<u8>, String) {
    if let Some(path) = std::env::var_os("CONFLUX_BENCH_DATA") {
        let mut path = PathBuf::from(path);
        if path.is_dir() {
            let nested = path.join("kairosdb/batch-000.json");
            path = if nested.exists() {
                nested
            } else {
                path.join("batch-000.json")
            };
        }
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return (data, path.display().to_string());
    }
    (sample(42_500), "built-in sample".to_owned())
}

/// One object per point with ten tags, as `gen.py` writes them.
fn sample(points: usize) -> Vec<u8> {
    let mut out = String::from("[");
    let mut x: u64 = 42;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    for i in 0..points {
        if i > 0 {
            out.push(',');
        }
        let host = i / 160;
        let ts = 1_700_000_000_000i64 + (i / 1600) as i64 * 10_000;
        let value = if i % 3 == 0 {
            format!("{}", next() % 100_000)
        } else {
            format!("{}.{}", next() % 100, next())
        };
        out.push_str(&format!(
            r#"{{"name":"cpu.usage_{}","datapoints":[[{ts},{value}]],"tags":{{"arch":"x86_64","az":"us-east-1a","cpu":"cpu{}","env":"prod","host":"host-{host:05}","os":"linux","rack":"r17","region":"us-east-1","service":"cache","team":"payments"}}}}"#,
            i % 10,
            i % 8
        ));
    }
    out.push(']');
    out.into_bytes()
}

fn parsers(c: &mut Criterion) {
    let (data, source) = input();
    let opts = ParseOptions::default();
    let mut batch = Batch::with_capacity(data.len() / 256 + 1, data.len() / 2);
    let mut errors = Vec::new();
    let summary = parse(&data, &opts, &mut batch, &mut errors);
    assert!(errors.is_empty(), "{:?}", errors.first());
    let points = batch.len() as u64;
    eprintln!(
        "kairosdb bench input: {source}, {} bytes, {} objects, {points} points",
        data.len(),
        summary.objects
    );

    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(data.len() as u64)),
        ("points", Throughput::Elements(points)),
    ] {
        let mut group = c.benchmark_group(format!("kairosdb_parse_{unit}"));
        group.throughput(throughput);
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(8));
        group.bench_function("conflux_into_batch", |b| {
            b.iter(|| {
                batch.clear();
                errors.clear();
                black_box(parse(black_box(&data), &opts, &mut batch, &mut errors))
            })
        });
        group.bench_function("serde_json_value_tree_only", |b| {
            b.iter(|| {
                let v: serde_json::Value = serde_json::from_slice(black_box(&data)).unwrap();
                black_box(v.as_array().map(Vec::len))
            })
        });
        group.finish();
    }
}

fn encoder(c: &mut Criterion) {
    let (data, _) = input();
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    parse(&data, &ParseOptions::default(), &mut batch, &mut errors);
    // The sink's batch: 5,000 metrics (its default `batch_max_metrics`).
    let refs: Vec<_> = batch.iter().take(5_000).collect();
    let mut encoder = Encoder::new(EncodeOptions::default());
    let mut out = Vec::with_capacity(data.len());
    let mut group = c.benchmark_group("kairosdb_encode");
    group.throughput(Throughput::Elements(refs.len() as u64));
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    group.bench_function("conflux_encode_grouped", |b| {
        b.iter(|| {
            out.clear();
            black_box(encoder.encode(&refs, &mut out));
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, parsers, encoder);
criterion_main!(benches);
