//! Refusing a request whose `unique_id` was already answered.
//!
//! A request older than `max_request_age` is refused as stale, so an id only
//! needs remembering for twice that. Ids are kept as 128-bit keyed hashes
//! (a few dozen bytes each, whatever the id's length) and at most
//! [`MAX_REMEMBERED`] of them: a client that sends more requests than that
//! within the window is refused until old ones expire, instead of growing
//! the tap's memory without end.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// Ids remembered at most (about 4 MB).
pub const MAX_REMEMBERED: usize = 100_000;

pub struct Replays {
    seen: HashMap<u128, Instant>,
    keys: (RandomState, RandomState),
    keep: Duration,
    pruned: Instant,
}

impl Replays {
    /// Remembers ids for `2 × max_request_age`.
    pub fn new(max_request_age: Duration) -> Replays {
        Replays {
            seen: HashMap::new(),
            keys: (RandomState::new(), RandomState::new()),
            keep: max_request_age.saturating_mul(2),
            pruned: Instant::now(),
        }
    }

    fn key(&self, id: &str) -> u128 {
        (u128::from(self.keys.0.hash_one(id)) << 64) | u128::from(self.keys.1.hash_one(id))
    }

    /// Ok (and remembered) for an id not seen within the window; the reason
    /// to refuse it otherwise.
    pub fn check(&mut self, id: &str) -> Result<(), String> {
        let full = self.seen.len() >= MAX_REMEMBERED;
        if full || self.pruned.elapsed() > Duration::from_secs(1) {
            let keep = self.keep;
            self.seen.retain(|_, at| at.elapsed() <= keep);
            self.pruned = Instant::now();
        }
        let key = self.key(id);
        if self
            .seen
            .get(&key)
            .is_some_and(|at| at.elapsed() <= self.keep)
        {
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
        self.seen.insert(key, Instant::now());
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
        assert_eq!(r.len(), MAX_REMEMBERED);
        let e = r.check("one more").unwrap_err();
        assert!(e.starts_with("too many requests: 100000"), "{e}");
        // Ids are forgotten after the window.
        let mut r = Replays::new(Duration::from_millis(1));
        assert!(r.check("u1").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(r.check("u1").is_ok());
    }
}
