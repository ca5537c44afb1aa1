//! A recorder that keeps every counter and gauge, so tests can read the
//! self-metrics a listener reported; and small helpers.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use conflux_net::Labels;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

#[derive(Default)]
pub struct TestRecorder {
    cells: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

fn render(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
        let id = render(key.name(), &labels);
        self.cells.lock().unwrap().entry(id).or_default().clone()
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let cells = self.cells.lock().unwrap();
        cells
            .get(&render(name, labels))
            .map(|c| c.load(Ordering::SeqCst))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

static RECORDER: OnceLock<&'static TestRecorder> = OnceLock::new();

fn recorder() -> &'static TestRecorder {
    RECORDER.get_or_init(|| {
        let r: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(r).unwrap();
        r
    })
}

/// Labels of a test listener; installs the recorder first. Every test uses
/// its own listener name, so tests running at once do not share series.
pub fn labels(listener: &str) -> Labels {
    recorder();
    Labels::new(listener, "test")
}

/// A counter's value (0 when never registered).
pub fn counter(name: &str, listener: &str, extra: &[(&str, &str)]) -> u64 {
    let mut l = vec![("listener", listener), ("dialect", "test")];
    l.extend_from_slice(extra);
    recorder().get(name, &l).unwrap_or(0)
}

/// A gauge's value (0 when never registered).
pub fn gauge(name: &str, listener: &str) -> f64 {
    recorder()
        .get(name, &[("listener", listener), ("dialect", "test")])
        .map_or(0.0, f64::from_bits)
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Guard against a hang: a test that waits this long has failed anyway.
/// Not a timing assertion; the bound is far above any expected duration.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test hung")
}

/// Wait until `cond` holds (polled every 10 ms, under [`within`]).
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
