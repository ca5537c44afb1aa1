//! Graphite benchmarks: the plaintext parser on the shared benchmark data
//! (plain paths and Graphite 1.1 tagged paths), with and without templates,
//! the pickle decoder, and the graphite serializer.
//!
//! Data: `CONFLUX_BENCH_DATA` names a folder made by
//! `shared/bench/gen/gen.py --out DIR` (its `graphite-plain.txt` and
//! `graphite-tagged.txt` are read; `DIR/data/…` works too). The first 4 MiB of
//! each file are used. Without it, built-in samples of the same shapes are
//! generated, so `cargo bench -p conflux-graphite` always runs.
//! Figures: `docs/performance.md`.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conflux_core::Batch;
use conflux_graphite::codec::encode::{Serializer, SerializerConfig};
use conflux_graphite::codec::{ParseOptions, Parser, Templates};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// How much of each data file is used.
const INPUT_BYTES: usize = 4 * 1024 * 1024;
/// What one TCP read hands the parser (`conflux-net`'s initial read buffer).
const CHUNK_BYTES: usize = 64 * 1024;

/// `file` from the data folder, cut to whole lines, and where it came from.
fn input(file: &str, sample: fn(usize) -> String) -> (Vec<u8>, String) {
    if let Some(dir) = std::env::var_os("CONFLUX_BENCH_DATA") {
        let dir = PathBuf::from(dir);
        let path = [dir.join(file), dir.join("data").join(file)]
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {file} under {}", dir.display()));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return (cut(data), path.display().to_string());
    }
    (
        cut(sample(INPUT_BYTES / 100).into_bytes()),
        "built-in sample".to_owned(),
    )
}

fn cut(mut data: Vec<u8>) -> Vec<u8> {
    if data.len() > INPUT_BYTES {
        let end = data[..INPUT_BYTES]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(INPUT_BYTES, |i| i + 1);
        data.truncate(end);
    }
    data
}

fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *x >> 33
}

/// Telegraf-template paths, as `gen.py` writes `graphite-plain.txt`.
fn plain_sample(lines: usize) -> String {
    let mut out = String::new();
    let mut x = 42;
    let fields = ["usage_user", "usage_system", "usage_idle", "usage_iowait"];
    for i in 0..lines {
        let host = i / 40;
        out.push_str(&format!(
            "host-{host:05}.x86_64.us-east-1a.cpu{}.prod.linux.r{}.us-east-1.cache.payments.cpu.{} {}.{} {}\n",
            i % 8,
            host % 40,
            fields[i % 4],
            lcg(&mut x) % 100,
            lcg(&mut x),
            1_700_000_000 + (i / 40) as u64 * 10
        ));
    }
    out
}

/// Graphite 1.1 tagged paths, as `gen.py` writes `graphite-tagged.txt`.
fn tagged_sample(lines: usize) -> String {
    let mut out = String::new();
    let mut x = 42;
    let fields = ["usage_user", "usage_system", "usage_idle", "usage_iowait"];
    for i in 0..lines {
        let host = i / 40;
        out.push_str(&format!(
            "cpu.{};arch=x86_64;az=us-east-1a;cpu=cpu{};env=prod;host=host-{host:05};os=linux;rack=r{};region=us-east-1;service=cache;team=payments {}.{} {}\n",
            fields[i % 4],
            i % 8,
            host % 40,
            lcg(&mut x) % 100,
            lcg(&mut x),
            1_700_000_000 + (i / 40) as u64 * 10
        ));
    }
    out
}

fn count_lines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Chunks of about `CHUNK_BYTES` ending on a newline, as the TCP server hands them over.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = if rest.len() <= CHUNK_BYTES {
            rest.len()
        } else {
            rest[..CHUNK_BYTES]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1)
        };
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

fn bench_parser(c: &mut Criterion, group: &str, data: &[u8], templates: Templates) {
    let lines = count_lines(data);
    let opts = ParseOptions::new(1_700_000_000_000_000_000);
    let mut parser = Parser::new(Arc::new(templates));
    let mut batch = Batch::with_capacity(lines as usize, data.len());
    let mut errors = Vec::new();
    let n = parser.parse(data, &opts, &mut batch, &mut errors);
    assert!(errors.is_empty(), "{:?}", errors.first());
    assert_eq!(n as u64, lines);
    let pieces = chunks(data);
    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(data.len() as u64)),
        ("lines", Throughput::Elements(lines)),
    ] {
        let mut g = c.benchmark_group(format!("{group}_{unit}"));
        g.throughput(throughput);
        g.sample_size(20).measurement_time(Duration::from_secs(5));
        g.bench_function("reused_batch", |b| {
            b.iter(|| {
                batch.clear();
                errors.clear();
                black_box(parser.parse(black_box(data), &opts, &mut batch, &mut errors))
            })
        });
        // What the listener does: a fresh batch per 64 KiB read.
        g.bench_function("listener_chunks", |b| {
            b.iter(|| {
                let mut n = 0;
                for piece in &pieces {
                    let mut batch = Batch::with_capacity(piece.len() / 200 + 1, piece.len());
                    errors.clear();
                    n += parser.parse(black_box(piece), &opts, &mut batch, &mut errors);
                    black_box(&batch);
                }
                n
            })
        });
        g.finish();
    }
}

fn plaintext(c: &mut Criterion) {
    let (plain, source) = input("graphite-plain.txt", plain_sample);
    eprintln!(
        "graphite plain input: {source}, {} bytes, {} lines",
        plain.len(),
        count_lines(&plain)
    );
    bench_parser(c, "graphite_parse_plain", &plain, Templates::default());
    // Telegraf's default output template, read back into host, tags and field.
    let t = Templates::new(
        ".",
        &["host.arch.az.cpu.env.os.rack.region.service.team.measurement.field".to_owned()],
    )
    .unwrap();
    bench_parser(c, "graphite_parse_plain_template", &plain, t);

    let (tagged, source) = input("graphite-tagged.txt", tagged_sample);
    eprintln!(
        "graphite tagged input: {source}, {} bytes, {} lines",
        tagged.len(),
        count_lines(&tagged)
    );
    bench_parser(c, "graphite_parse_tagged", &tagged, Templates::default());
}

/// The plain input as one protocol 2 pickle per 500 lines (carbon clients batch).
fn pickles(data: &[u8]) -> Vec<Vec<u8>> {
    let text = std::str::from_utf8(data).unwrap();
    let mut frames = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for batch in lines.chunks(500) {
        let mut p = vec![0x80, 2, b']', b'('];
        for line in batch {
            let mut it = line.split(' ');
            let (path, value, ts) = (
                it.next().unwrap(),
                it.next().unwrap().parse::<f64>().unwrap(),
                it.next().unwrap().parse::<i32>().unwrap(),
            );
            p.push(b'X');
            p.extend_from_slice(&(path.len() as u32).to_le_bytes());
            p.extend_from_slice(path.as_bytes());
            p.push(b'J');
            p.extend_from_slice(&ts.to_le_bytes());
            p.push(b'G');
            p.extend_from_slice(&value.to_be_bytes());
            p.extend_from_slice(&[0x86, 0x86]);
        }
        p.extend_from_slice(b"e.");
        frames.push(p);
    }
    frames
}

fn pickle(c: &mut Criterion) {
    let (plain, _) = input("graphite-plain.txt", plain_sample);
    let frames = pickles(&plain);
    let bytes: usize = frames.iter().map(Vec::len).sum();
    let lines = count_lines(&plain);
    let opts = ParseOptions::new(1_700_000_000_000_000_000);
    let mut parser = Parser::default();
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    let mut g = c.benchmark_group("graphite_pickle");
    g.throughput(Throughput::Elements(lines));
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("decode_into_batch", |b| {
        b.iter(|| {
            let mut n = 0;
            for f in &frames {
                batch.clear();
                errors.clear();
                n += parser
                    .parse_pickle(black_box(f), &opts, &mut batch, &mut errors)
                    .unwrap();
            }
            assert_eq!(n as u64, lines);
            n
        })
    });
    g.finish();
    eprintln!(
        "graphite pickle input: {} frames, {bytes} bytes",
        frames.len()
    );
}

fn encoder(c: &mut Criterion) {
    let (tagged, _) = input("graphite-tagged.txt", tagged_sample);
    let mut batch = Batch::new();
    let mut errors = Vec::new();
    Parser::default().parse(
        &tagged,
        &ParseOptions::new(1_700_000_000_000_000_000),
        &mut batch,
        &mut errors,
    );
    let cfg = SerializerConfig {
        tag_support: true,
        ..SerializerConfig::default()
    };
    let mut s = Serializer::new(&cfg).unwrap();
    let mut out = Vec::with_capacity(tagged.len() * 2);
    let mut g = c.benchmark_group("graphite_encode");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("tag_support", |b| {
        b.iter(|| {
            out.clear();
            for m in batch.iter() {
                s.encode(&m, &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, plaintext, pickle, encoder);
criterion_main!(benches);
