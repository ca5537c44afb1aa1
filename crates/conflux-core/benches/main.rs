//! Fan-out cost: one batch of Telegraf-like metrics submitted to 1, 4 and 16
//! sinks, each drained as it arrives.

// A benchmark may stop on bad setup: nothing here runs in production.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use conflux_core::filter::{Filter, FilterConfig};
use conflux_core::pipeline::{QueueConfig, SinkSpec, WhenFull};
use conflux_core::{Batch, Metric, Pipeline};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn telegraf_batch(lines: usize) -> Batch {
    let mut b = Batch::with_capacity(lines, lines * 200);
    for i in 0..lines {
        let m = Metric::new("cpu")
            .tag("host", format!("host-{}", i % 500))
            .tag("cpu", format!("cpu{}", i % 8))
            .tag("region", "eu-west-1")
            .tag("env", "prod")
            .field("usage_user", 1.5 * i as f64)
            .field("usage_system", 0.5)
            .field("usage_idle", 97.0)
            .field("usage_iowait", 0.25)
            .at(1_700_000_000_000_000_000 + i as i64);
        b.push(&m).expect("valid metric");
    }
    b
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let batch = std::sync::Arc::new(telegraf_batch(5_000));
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for sinks in [1usize, 4, 16] {
        for (label, filter) in [
            ("all", ""),
            (
                "namepass",
                "namepass = [\"cpu*\"]\n[tagdrop]\nenv = [\"dev\"]",
            ),
        ] {
            let cfg: FilterConfig = toml::from_str(filter).expect("filter");
            let specs = (0..sinks)
                .map(|i| SinkSpec {
                    name: format!("s{i}"),
                    filter: Filter::new(&cfg).expect("filter"),
                    queue: QueueConfig {
                        max_metrics: 1_000_000,
                        when_full: WhenFull::Block,
                    },
                    spool: None,
                    max_new_series_per_hour: None,
                })
                .collect();
            let (pipeline, mut receivers) = Pipeline::new(specs);
            let ingest = pipeline.ingest("bench");
            group.bench_with_input(BenchmarkId::new(label, sinks), &sinks, |b, _| {
                b.iter(|| {
                    rt.block_on(async {
                        let ack = ingest
                            .submit_until(batch.clone(), None)
                            .await
                            .expect("submit");
                        black_box(ack);
                        for r in receivers.iter_mut() {
                            black_box(r.try_recv());
                        }
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
