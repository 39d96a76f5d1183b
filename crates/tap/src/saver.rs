//! Saving where each log stands (the checkpoint file) when it changed.

use std::time::{Duration, Instant};

use rill_config::Config;
use tracing::warn;

use crate::checkpoint::{self, Checkpoints};
use crate::durable::Durable;
use crate::follow::Follow;
use crate::journal::JournalLog;
use crate::pattern::Pattern;

/// How often checkpoints are saved when only positions moved (a new file
/// followed is saved at once). Each save is a new file and an fsync; a
/// staler position only means more lines read again after a crash, which
/// the index keeps once.
pub const SAVE_EVERY: Duration = Duration::from_secs(3);

/// Writes the checkpoint file when a log's position changed.
pub struct CheckpointSaver<'a> {
    cfg: &'a Config,
    host: &'a str,
    pub saved: Checkpoints,
    pub last: Instant,
}

impl<'a> CheckpointSaver<'a> {
    pub fn new(cfg: &'a Config, host: &'a str, saved: Checkpoints) -> Self {
        CheckpointSaver {
            cfg,
            host,
            saved,
            last: Instant::now(),
        }
    }

    pub fn save(
        &mut self,
        follows: &mut [Follow],
        patterns: &[Pattern],
        journals: &mut [JournalLog],
        durable: &Durable,
    ) {
        self.last = Instant::now();
        let mut now = self.saved.clone();
        for (i, f) in follows.iter_mut().enumerate() {
            f.identity_changed = false;
            let name = f.key();
            if f.retired {
                // A member done with (a newer member of the same path,
                // later in the list, writes its own entries).
                now.logs.remove(&name);
                now.draining.remove(&name);
                now.history.remove(&name);
                continue;
            }
            let (current, unfinished, history) = f.checkpoint(i, durable);
            match current {
                Some(c) => {
                    now.logs.insert(name.clone(), c);
                }
                None if f.is_member() => {
                    now.logs.remove(&name);
                }
                None => {}
            }
            if unfinished.is_empty() {
                now.draining.remove(&name);
            } else {
                now.draining.insert(name.clone(), unfinished);
            }
            if history.is_empty() {
                now.history.remove(&name);
            } else {
                now.history.insert(name, history);
            }
        }
        for p in patterns {
            if let Some(c) = p.checkpoint() {
                now.patterns.insert(p.log.name.clone(), c);
            }
        }
        for j in journals.iter_mut() {
            if let Some(cursor) = j.checkpoint(durable) {
                now.journals.insert(j.log.name.clone(), cursor);
            }
        }
        if now != self.saved {
            match checkpoint::save(self.cfg, self.host, &now) {
                Ok(()) => self.saved = now,
                Err(e) => warn!(error = %e, "could not save checkpoints"),
            }
        }
    }
}
