//! A log gate: at most one message per interval, with a count of what was
//! held back, so that a client sending garbage cannot flood the log.

use std::time::{Duration, Instant};

/// Lets one event through per `interval` and counts the others.
#[derive(Debug)]
pub struct RateLimited {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// A gate that opens at most once per `interval`.
    pub fn new(interval: Duration) -> RateLimited {
        RateLimited {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when this event may be logged, `n` being how many were held
    /// back since the last one; `None` when it must be skipped.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_one_through_then_counts() {
        let mut g = RateLimited::new(Duration::from_secs(3600));
        assert_eq!(g.allow(), Some(0));
        assert_eq!(g.allow(), None);
        assert_eq!(g.allow(), None);
        let mut g2 = RateLimited::new(Duration::ZERO);
        assert_eq!(g2.allow(), Some(0));
        assert_eq!(g2.allow(), Some(0));
        g.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(g.allow(), Some(2));
    }
}
