//! How long to wait before starting a child again that exited.

use std::time::Duration;

/// Exponential backoff between restarts: 250 ms doubling to `max`, back to
/// the start once a child has run for `healthy_after`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    healthy_after: Duration,
}

impl Backoff {
    pub const START: Duration = Duration::from_millis(250);

    pub fn new(max: Duration) -> Self {
        Backoff {
            next: Self::START,
            max,
            healthy_after: Duration::from_secs(30),
        }
    }

    /// The delay before the next start, given how long the last run lasted.
    pub fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.next = Self::START;
        }
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Starts the delays over from [`Backoff::START`], keeping `max`.
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max_and_resets_after_a_healthy_run() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let short = Duration::from_millis(10);
        assert_eq!(b.after_run(short), Duration::from_millis(250));
        assert_eq!(b.after_run(short), Duration::from_millis(500));
        assert_eq!(b.after_run(short), Duration::from_secs(1));
        assert_eq!(b.after_run(short), Duration::from_secs(2));
        assert_eq!(b.after_run(short), Duration::from_secs(2));
        assert_eq!(
            b.after_run(Duration::from_secs(60)),
            Duration::from_millis(250)
        );
    }
}
