//! Line protocol benchmarks: our parser against the `influxdb-line-protocol`
//! crate on one 5,000-line batch of the shared benchmark data, and the encoder.
//!
//! Data: `CONFLUX_BENCH_DATA` names a `.lp` file, or a folder made by
//! `shared/bench/gen/gen.py --out DIR` (then `DIR/influx/batch-000.lp` is used).
//! Without it a built-in Telegraf-like sample of 5,000 lines is generated, so
//! `cargo bench -p conflux-influx` always runs. Figures: `docs/performance.md`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use conflux_core::time::Precision;
use conflux_core::{Batch, Value};
use conflux_influx::codec::{ParseOptions, encode, parse};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The input and where it came from.
fn input() -> (Vec<u8>, String) {
    if let Some(path) = std::env::var_os("CONFLUX_BENCH_DATA") {
        let mut path = PathBuf::from(path);
        if path.is_dir() {
            let nested = path.join("influx/batch-000.lp");
            path = if nested.exists() {
                nested
            } else {
                path.join("batch-000.lp")
            };
        }
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return (data, path.display().to_string());
    }
    (sample(5_000), "built-in sample".to_owned())
}

/// Telegraf-shaped lines: sorted tags, float, int, uint, string and bool fields.
fn sample(lines: usize) -> Vec<u8> {
    let mut out = String::new();
    let mut x: u64 = 42;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    for i in 0..lines {
        let host = i / 16;
        let ts = 1_700_000_000_000_000_000i64 + (i / 16) as i64 * 10_000_000_000;
        let tags = format!("env=prod,host=host-{host:05},os=linux,region=us-east-1,service=cache");
        match i % 4 {
            0 => out.push_str(&format!(
                "cpu,{tags},cpu=cpu{} usage_user={}.{},usage_system={}.{},usage_idle={}.{},usage_iowait=0.{},usage_guest=0 {ts}\n",
                i % 8, next() % 100, next(), next() % 100, next(), next() % 100, next(), next()
            )),
            1 => out.push_str(&format!(
                "mem,{tags} active={}i,available={}i,available_percent={}.{},free={}i,total=17163091968i,used={}i {ts}\n",
                next(), next(), next() % 100, next(), next(), next()
            )),
            2 => out.push_str(&format!(
                "system,{tags} load1={}.{},n_cpus=8i,uptime={}u,uptime_format=\"{} days,  9:06\" {ts}\n",
                next() % 10, next(), next(), next() % 100
            )),
            _ => out.push_str(&format!(
                "http_response,{tags},method=GET,server=https://example.invalid content_length={}i,response_time=0.{},result_type=\"success\",up=true {ts}\n",
                next() % 10_000, next()
            )),
        }
    }
    out.into_bytes()
}

fn count_lines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Parse with ours, and with the crate alone and the crate plus filling a Batch
/// (what wrapping it would cost).
fn parsers(c: &mut Criterion) {
    let (data, source) = input();
    let lines = count_lines(&data);
    let opts = ParseOptions::new(Precision::Ns, 1_700_000_000_000_000_000);
    eprintln!(
        "influx bench input: {source}, {} bytes, {lines} lines",
        data.len()
    );

    // Check both parsers read the same number of points before timing them.
    let mut batch = Batch::with_capacity(lines as usize, data.len());
    let mut errors = Vec::new();
    parse(&data, &opts, &mut batch, &mut errors);
    assert!(errors.is_empty(), "{:?}", errors.first());
    let text = std::str::from_utf8(&data).unwrap();
    let theirs: usize = influxdb_line_protocol::parse_lines(text)
        .map(|l| l.unwrap().field_set.len())
        .sum();
    assert_eq!(theirs, batch.points());

    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(data.len() as u64)),
        ("lines", Throughput::Elements(lines)),
    ] {
        let mut group = c.benchmark_group(format!("influx_parse_{unit}"));
        group.throughput(throughput);
        group
            .sample_size(30)
            .measurement_time(Duration::from_secs(6));
        group.bench_function("conflux_into_batch", |b| {
            b.iter(|| {
                batch.clear();
                errors.clear();
                black_box(parse(black_box(&data), &opts, &mut batch, &mut errors))
            })
        });
        group.bench_function("iox_crate_parse_only", |b| {
            b.iter(|| {
                let text = std::str::from_utf8(black_box(&data)).unwrap();
                let mut n = 0;
                for line in influxdb_line_protocol::parse_lines(text) {
                    n += line.map_or(0, |l| l.field_set.len());
                }
                black_box(n)
            })
        });
        group.bench_function("iox_crate_into_batch", |b| {
            b.iter(|| {
                batch.clear();
                let text = std::str::from_utf8(black_box(&data)).unwrap();
                for line in influxdb_line_protocol::parse_lines(text).flatten() {
                    let mut m = batch.metric(&line.series.measurement);
                    for (k, v) in line.series.tag_set.iter().flatten() {
                        m.tag(k, v);
                    }
                    for (k, v) in &line.field_set {
                        let v = match v {
                            influxdb_line_protocol::FieldValue::F64(x) => Value::Float(*x),
                            influxdb_line_protocol::FieldValue::I64(x) => Value::Int(*x),
                            influxdb_line_protocol::FieldValue::U64(x) => Value::UInt(*x),
                            influxdb_line_protocol::FieldValue::Boolean(x) => Value::Bool(*x),
                            influxdb_line_protocol::FieldValue::String(s) => Value::Str(s),
                        };
                        m.field(k, v);
                    }
                    let _ = m.finish(line.timestamp.unwrap_or(0));
                }
                black_box(batch.len())
            })
        });
        group.finish();
    }
}

/// Encode the parsed batch back to line protocol.
fn encoder(c: &mut Criterion) {
    let (data, _) = input();
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    parse(&data, &ParseOptions::default(), &mut batch, &mut errors);
    let mut out = Vec::with_capacity(data.len() * 2);
    let mut group = c.benchmark_group("influx_encode");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    group.bench_function("conflux_encode_lines", |b| {
        b.iter(|| {
            out.clear();
            for m in batch.iter() {
                encode(&m, &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, parsers, encoder);
criterion_main!(benches);
