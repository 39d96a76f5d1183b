//! Retention: events older than `index.retention` (by their timestamp) are
//! deleted while the parser runs, at start and then every minute (or every
//! retention/60 when that is shorter, at least every second).

use std::time::{Duration, Instant};

use rill_index::{IndexError, IndexWriter};
use tracing::debug;

pub struct Retention {
    keep: Option<Duration>,
    every: Duration,
    next: Instant,
}

impl Retention {
    pub fn new(keep: Option<Duration>) -> Retention {
        let every = keep.map_or(Duration::from_secs(60), |k| {
            (k / 60).clamp(Duration::from_secs(1), Duration::from_secs(60))
        });
        Retention {
            keep,
            every,
            next: Instant::now(),
        }
    }

    /// How often the sweep runs.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Deletes (and commits the deletion of) expired events when a sweep is due.
    pub fn tick(&mut self, index: &mut IndexWriter) -> Result<(), IndexError> {
        let Some(keep) = self.keep else {
            return Ok(());
        };
        if Instant::now() < self.next {
            return Ok(());
        }
        self.next = Instant::now() + self.every;
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        index.delete_older_than(cutoff)?;
        debug!(%cutoff, "retention: deleted events older than the cutoff");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_interval_follows_the_retention() {
        assert_eq!(Retention::new(None).every(), Duration::from_secs(60));
        assert_eq!(
            Retention::new(Some(Duration::from_secs(30 * 86400))).every(),
            Duration::from_secs(60)
        );
        assert_eq!(
            Retention::new(Some(Duration::from_secs(120))).every(),
            Duration::from_secs(2)
        );
        assert_eq!(
            Retention::new(Some(Duration::from_secs(60))).every(),
            Duration::from_secs(1)
        );
    }
}
