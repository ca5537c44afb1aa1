//! The counters every listener reports (STYLE.md): bytes, metrics and points
//! received, and rejected input by reason. Registered once per listener,
//! incremented once per batch.

use conflux_core::telemetry;
use metrics::Counter;

use crate::Labels;

/// A listener's received and rejected counters.
pub struct ListenerCounters {
    bytes: Counter,
    metrics: Counter,
    points: Counter,
    /// One per known reason, in the order given to [`ListenerCounters::new`].
    rejected: Vec<(&'static str, Counter)>,
    labels: Labels,
}

impl ListenerCounters {
    /// Counters for a listener whose parser rejects input for `reasons`
    /// (each dialect's fixed set of labels); they are registered now, so
    /// they show on `/metrics` at 0 before anything is rejected.
    pub fn new(
        labels: &Labels,
        reasons: impl IntoIterator<Item = &'static str>,
    ) -> ListenerCounters {
        ListenerCounters {
            bytes: labels.counter(telemetry::LISTENER_RECEIVED_BYTES),
            metrics: labels.counter(telemetry::LISTENER_RECEIVED_METRICS),
            points: labels.counter(telemetry::LISTENER_RECEIVED_POINTS),
            rejected: reasons
                .into_iter()
                .map(|r| (r, labels.reason_counter(telemetry::LISTENER_REJECTED, r)))
                .collect(),
            labels: labels.clone(),
        }
    }

    /// Bytes read (after decompression, for HTTP bodies).
    pub fn bytes(&self, n: usize) {
        self.bytes.increment(n as u64);
    }

    /// Metrics and points accepted by the pipeline.
    pub fn received(&self, metrics: usize, points: usize) {
        self.metrics.increment(metrics as u64);
        self.points.increment(points as u64);
    }

    /// `n` rejections for `reason`.
    pub fn reject(&self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match self.rejected.iter().find(|(r, _)| *r == reason) {
            Some((_, c)) => c.increment(n),
            // A reason outside the declared set still counts.
            None => self
                .labels
                .reason_counter(telemetry::LISTENER_REJECTED, reason)
                .increment(n),
        }
    }

    /// One rejection per item of `reasons` (a batch's errors), added up per
    /// reason first so that each counter is touched once.
    pub fn rejected(&self, reasons: impl IntoIterator<Item = &'static str>) {
        let mut counts = vec![0usize; self.rejected.len()];
        for reason in reasons {
            match self.rejected.iter().position(|(r, _)| *r == reason) {
                Some(i) => counts[i] += 1,
                None => self.reject(reason, 1),
            }
        }
        self.rejected_counts(&counts);
    }

    /// Rejections counted by the caller, aligned with the reasons given to
    /// [`ListenerCounters::new`].
    pub fn rejected_counts(&self, counts: &[usize]) {
        for ((_, c), &n) in self.rejected.iter().zip(counts) {
            if n > 0 {
                c.increment(n as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn rejected_by_reason(
        snapshot: Vec<(
            metrics_util::CompositeKey,
            Option<metrics::Unit>,
            Option<metrics::SharedString>,
            DebugValue,
        )>,
    ) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = snapshot
            .into_iter()
            .filter(|(k, ..)| k.key().name() == telemetry::LISTENER_REJECTED)
            .map(|(k, _, _, v)| {
                let reason = k
                    .key()
                    .labels()
                    .find(|l| l.key() == "reason")
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default();
                let n = match v {
                    DebugValue::Counter(n) => n,
                    _ => 0,
                };
                (reason, n)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn counts_per_reason_including_undeclared_ones() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let c = ListenerCounters::new(&Labels::new("l", "test"), ["a", "b"]);
            c.rejected(["a", "b", "a", "other"]);
            c.reject("b", 2);
            c.rejected_counts(&[1, 0]);
            c.received(3, 7);
        });
        assert_eq!(
            rejected_by_reason(snapshotter.snapshot().into_vec()),
            vec![
                ("a".to_owned(), 3),
                ("b".to_owned(), 3),
                ("other".to_owned(), 1)
            ]
        );
    }
}
