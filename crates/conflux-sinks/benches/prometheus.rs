//! The `prometheus` sink's encoder: the hand-written protobuf writer against
//! a `prost`-based one writing the same `WriteRequest` from the same loaded
//! batch (naming, labels, grouping done once by `Encoder::load`).
//!
//! - `prometheus_encode/*`: a whole batch to Snappy-compressed requests
//!   (load, protobuf, Snappy), per metric;
//! - `prometheus_protobuf/*`: the protobuf alone, from loaded tables, per
//!   byte of protobuf.
//!
//! `prost` builds owned messages (a `String` per label name and value);
//! `prost_reuse` keeps the messages between batches and refills their
//! strings in place, the best a `prost` encoder can do.
//!
//! Run: `cargo bench -p conflux-sinks --bench prometheus`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use conflux_core::naming::{Naming, Target};
use conflux_core::{Batch, MetricRef, Value};
use conflux_sinks::prometheus::encode::Encoder;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;

#[derive(Clone, PartialEq, prost::Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}
#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

const T: i64 = 1_700_000_000_000_000_000;

/// Telegraf's `cpu` input on 10 000 hosts: 4 tags, 3 float fields, every
/// series once (the common, unsorted path).
fn distinct() -> Batch {
    let mut b = Batch::new();
    for i in 0..10_000 {
        let mut m = b.metric("cpu");
        m.tag("cpu", "cpu-total")
            .tag("dc", "eu-west-1")
            .tag("host", &format!("web-{i:05}.example.com"))
            .tag("service", "frontend")
            .field("usage_idle", Value::Float(97.5 + f64::from(i % 7)))
            .field("usage_system", Value::Float(0.75))
            .field("usage_user", Value::Float(1.25 + f64::from(i % 3)));
        m.finish(T).unwrap();
    }
    b
}

/// 1 000 series, 10 samples each, timestamps shuffled: the grouping path.
fn repeated() -> Batch {
    let mut b = Batch::new();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut order: Vec<(u32, i64)> = (0..1_000)
        .flat_map(|s| (0..10).map(move |t| (s, t)))
        .collect();
    rng.shuffle(&mut order);
    for (s, t) in order {
        let mut m = b.metric("disk");
        m.tag("host", &format!("db-{s:04}"))
            .tag("path", "/var/lib/postgresql")
            .field("used_percent", Value::Float(f64::from(s) + t as f64 / 10.0));
        m.finish(T + t * 10_000_000_000).unwrap();
    }
    b
}

/// 6 000 Graphite plain points as the shared benchmark sends them: a
/// 90-byte dotted path each (its series name once sanitized), no tags,
/// every series once, 17-digit values.
fn graphite() -> Batch {
    let mut b = Batch::new();
    let mut rng = fastrand::Rng::with_seed(11);
    let fields = ["user", "system", "idle", "nice", "iowait", "irq"];
    for i in 0..6_000 {
        let path = format!(
            "host-{:05}.x86_64.us-east-1a.cpu{}.prod.linux.r17.us-east-1.cache.payments.cpu.usage_{}",
            i / 60,
            i / 6 % 10,
            fields[i % 6]
        );
        let mut m = b.metric(&path);
        m.field("value", Value::Float(rng.f64() * 100.0));
        m.finish(T).unwrap();
    }
    b
}

fn encoder() -> Encoder {
    Encoder::new(Naming::for_target(Target::Prometheus))
}

/// The loaded batch as prost messages, fresh.
fn prost_messages(enc: &Encoder) -> WriteRequest {
    WriteRequest {
        timeseries: enc
            .series()
            .map(|s| TimeSeries {
                labels: s
                    .labels()
                    .map(|(n, v)| Label {
                        name: n.to_owned(),
                        value: v.to_owned(),
                    })
                    .collect(),
                samples: s
                    .samples()
                    .map(|(value, timestamp)| Sample { value, timestamp })
                    .collect(),
            })
            .collect(),
    }
}

/// The loaded batch into `wr`, reusing its messages and strings.
fn prost_refill(enc: &Encoder, wr: &mut WriteRequest) {
    let mut n = 0;
    for s in enc.series() {
        if n == wr.timeseries.len() {
            wr.timeseries.push(TimeSeries::default());
        }
        let ts = &mut wr.timeseries[n];
        let mut k = 0;
        for (name, value) in s.labels() {
            if k == ts.labels.len() {
                ts.labels.push(Label::default());
            }
            let l = &mut ts.labels[k];
            l.name.clear();
            l.name.push_str(name);
            l.value.clear();
            l.value.push_str(value);
            k += 1;
        }
        ts.labels.truncate(k);
        ts.samples.clear();
        ts.samples.extend(
            s.samples()
                .map(|(value, timestamp)| Sample { value, timestamp }),
        );
        n += 1;
    }
    wr.timeseries.truncate(n);
}

fn snappy(snap: &mut snap::raw::Encoder, proto: &[u8], out: &mut Vec<u8>) -> usize {
    out.resize(snap::raw::max_compress_len(proto.len()), 0);
    snap.compress(proto, out).unwrap()
}

fn bench(c: &mut Criterion) {
    for (case, batch) in [
        ("distinct", distinct()),
        ("repeated", repeated()),
        ("graphite", graphite()),
    ] {
        let metrics: Vec<MetricRef<'_>> = batch.iter().collect();

        // Both writers must write the same bytes before they are timed.
        let mut enc = encoder();
        enc.load(&metrics);
        let mut hand = Vec::new();
        enc.write_protobuf(&mut hand);
        assert_eq!(prost_messages(&enc).encode_to_vec(), hand);
        let proto_bytes = hand.len();

        let mut g = c.benchmark_group("prometheus_encode");
        g.throughput(Throughput::Elements(metrics.len() as u64));
        g.bench_function(BenchmarkId::new("hand", case), |b| {
            let mut enc = encoder();
            b.iter(|| black_box(enc.encode(black_box(&metrics), 100_000).unwrap()));
        });
        g.bench_function(BenchmarkId::new("prost", case), |b| {
            let mut enc = encoder();
            let (mut snap, mut proto, mut out) =
                (snap::raw::Encoder::new(), Vec::new(), Vec::new());
            b.iter(|| {
                enc.load(black_box(&metrics));
                proto.clear();
                prost_messages(&enc).encode(&mut proto).unwrap();
                black_box(snappy(&mut snap, &proto, &mut out))
            });
        });
        g.bench_function(BenchmarkId::new("prost_reuse", case), |b| {
            let mut enc = encoder();
            let mut wr = WriteRequest::default();
            let (mut snap, mut proto, mut out) =
                (snap::raw::Encoder::new(), Vec::new(), Vec::new());
            b.iter(|| {
                enc.load(black_box(&metrics));
                prost_refill(&enc, &mut wr);
                proto.clear();
                wr.encode(&mut proto).unwrap();
                black_box(snappy(&mut snap, &proto, &mut out))
            });
        });
        g.finish();

        let mut g = c.benchmark_group("prometheus_protobuf");
        g.throughput(Throughput::Bytes(proto_bytes as u64));
        g.bench_function(BenchmarkId::new("hand", case), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                enc.write_protobuf(&mut out);
                black_box(out.len())
            });
        });
        g.bench_function(BenchmarkId::new("prost", case), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                prost_messages(&enc).encode(&mut out).unwrap();
                black_box(out.len())
            });
        });
        g.bench_function(BenchmarkId::new("prost_reuse", case), |b| {
            let mut out = Vec::new();
            let mut wr = WriteRequest::default();
            b.iter(|| {
                prost_refill(&enc, &mut wr);
                out.clear();
                wr.encode(&mut out).unwrap();
                black_box(out.len())
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
