//! Refusing a request whose `unique_id` was already answered.
//!
//! A request older than `max_request_age` is refused as stale, so an id only
//! needs remembering for twice that. Ids are kept as 64-bit keyed hashes
//! with the second they were seen (about 20 bytes each, whatever the id's
//! length) and at most [`MAX_REMEMBERED`] of them: a client that sends more
//! requests than that within the window is refused until old ones expire,
//! instead of growing the tap's memory without end. (A false "duplicate"
//! from two ids sharing a hash is about one in 10^8 windows at the cap.)

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// Ids remembered at most (about 20 MB): 16,000 requests a second for the
/// default window of 60 s.
pub const MAX_REMEMBERED: usize = 1_000_000;

pub struct Replays {
    /// Hash of the id -> second (since `start`) it was seen.
    seen: HashMap<u64, u32>,
    key: RandomState,
    start: Instant,
    keep: Duration,
    pruned: Instant,
}

impl Replays {
    /// Remembers ids for `2 × max_request_age`.
    pub fn new(max_request_age: Duration) -> Replays {
        Replays {
            seen: HashMap::new(),
            key: RandomState::new(),
            start: Instant::now(),
            keep: max_request_age.saturating_mul(2),
            pruned: Instant::now(),
        }
    }

    /// Whole seconds since `start`.
    fn now(&self) -> u32 {
        u32::try_from(self.start.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Whether an id seen at second `at` is still within the window (a
    /// second more, as seconds are whole).
    fn fresh(&self, at: u32, now: u32) -> bool {
        u64::from(now.saturating_sub(at)) <= self.keep.as_secs() + 1
    }

    /// Ok (and remembered) for an id not seen within the window; the reason
    /// to refuse it otherwise.
    pub fn check(&mut self, id: &str) -> Result<(), String> {
        let now = self.now();
        // At most once a second, full or not: a full cache refuses
        // requests until ids expire, without a sweep per request.
        if self.pruned.elapsed() > Duration::from_secs(1) {
            let window = self.keep.as_secs() + 1;
            self.seen
                .retain(|_, at| u64::from(now.saturating_sub(*at)) <= window);
            self.pruned = Instant::now();
        }
        let key = self.key.hash_one(id);
        if self.seen.get(&key).is_some_and(|at| self.fresh(*at, now)) {
            return Err(format!(
                "duplicate unique_id {:?}: a request with it was already answered",
                id.chars().take(64).collect::<String>()
            ));
        }
        if self.seen.len() >= MAX_REMEMBERED {
            return Err(format!(
                "too many requests: {MAX_REMEMBERED} were answered within the last {}s; try again later",
                self.keep.as_secs()
            ));
        }
        self.seen.insert(key, now);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_id_is_refused_and_memory_stays_bounded() {
        let mut r = Replays::new(Duration::from_secs(30));
        assert!(r.check("u1").is_ok());
        assert!(r
            .check("u1")
            .unwrap_err()
            .starts_with("duplicate unique_id \"u1\""));
        for i in 0..MAX_REMEMBERED + 10 {
            let _ = r.check(&format!("id-{i}"));
        }
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(r.len(), MAX_REMEMBERED);
        let e = r.check("one more").unwrap_err();
        assert!(e.starts_with("too many requests: 1000000"), "{e}");
        // Ids are forgotten after the window (here 0 s, so 1 to 2 s).
        let mut r = Replays::new(Duration::ZERO);
        assert!(r.check("u1").is_ok());
        std::thread::sleep(Duration::from_millis(2100));
        assert!(r.check("u1").is_ok());
    }
}
