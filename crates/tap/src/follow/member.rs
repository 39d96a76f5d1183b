//! A followed file that is one of a pattern's ([`crate::pattern`]).
//!
//! A member follows its path like any log (rotation, truncation, finishing
//! old files), with one difference: once the path names another file (a
//! rotation, the script ended, a restart), the member does not open that
//! file by itself. It waits until the pattern's next listing says what the
//! path names now ([`Follow::listed`]): a file no other file of the log is
//! (a new file, read from 0), the very file it was reading (resumed), or a
//! file another member knows (with `*.log*`, `api.log.1` after a rotation
//! is the former `api.log`): then it opens nothing, and once it has
//! nothing left to finish or confirm the pattern retires it.

use std::time::Instant;

use rill_config::{Log, TapSettings};

use super::Follow;
use crate::checkpoint::{LogCheckpoint, Unfinished, Verify};
use crate::durable::Durable;
use crate::script::StartAt;

impl Follow {
    /// A member for `log` (a pattern's log with one file's path): new, read
    /// from `start` at once; or restored from a checkpoint (`start` none):
    /// it waits for the first listing, to resume the saved file if the path
    /// still names it, else to read what the path names from its start.
    pub fn member(
        log: Log,
        settings: TapSettings,
        saved: Option<LogCheckpoint>,
        unfinished: Vec<Unfinished>,
        history: Vec<Unfinished>,
        start: Option<StartAt>,
    ) -> Follow {
        let mut f = Follow::new(log, settings, saved, unfinished, history);
        f.member = true;
        match start {
            Some(s) => f.next = s,
            None => {
                f.waiting = true;
                f.reopen_at = None;
                if saved.is_none() {
                    f.next = StartAt::Beginning;
                }
            }
        }
        f
    }

    /// The key of this log's entries in the checkpoint file: the log's
    /// name, and for a pattern's file `NAME:PATH` (a log name holds no ':').
    pub fn key(&self) -> String {
        if self.member {
            format!("{}:{}", self.log.name, self.log.path)
        } else {
            self.log.name.clone()
        }
    }

    /// Reads no rotated generations (a file found after the first
    /// listing is new: it has none of its own to index).
    pub fn without_history(mut self) -> Follow {
        if matches!(self.generations, super::history::Generations::Due(_)) {
            self.generations = super::history::Generations::Done;
            self.reopen_at = Some(Instant::now());
        }
        self
    }

    /// Whether this is a file of a pattern.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// A member whose path names another file now waits for the listing.
    pub(super) fn gate(&mut self) {
        if self.member {
            self.waiting = true;
            self.homeless = false;
            self.reopen_at = None;
        }
    }

    /// Whether this member holds its path: it follows the file there, or
    /// is about to open it. `Some(ino)` when it knows the file's inode.
    pub fn at_path(&self) -> Option<Option<u64>> {
        if self.retired || self.waiting {
            return None;
        }
        let ino = self
            .current
            .as_ref()
            .and_then(|r| r.following.as_ref())
            .map(|f| f.file_id.ino)
            .or(match self.next {
                StartAt::Resume { ino, .. } => Some(ino),
                _ => None,
            });
        Some(ino)
    }

    /// Every file this log has read or is reading, by inode and first
    /// bytes: the current file, files being finished or unconfirmed, and
    /// the last few finished.
    pub fn identities(&self) -> Vec<(u64, Verify)> {
        let mut v: Vec<(u64, Verify)> =
            self.followed().map(|f| (f.file_id.ino, f.verify)).collect();
        v.extend(self.resume.map(|c| (c.file_id.ino, c.verify())));
        v.extend(
            self.finishes
                .iter()
                .chain(&self.closed)
                .chain(&self.history)
                .map(|u| (u.at.file_id.ino, u.at.verify())),
        );
        v.sort_unstable_by_key(|&(ino, v)| (ino, v.len, v.fp));
        v.dedup();
        v
    }

    /// What the pattern's listing says the path names now: nothing
    /// (`None`), or the file with inode `ino`, `known` when another file of
    /// the log is that file (a rotated generation, a copy).
    pub fn listed(&mut self, at_path: Option<(u64, bool)>) {
        if !self.member || self.retired {
            return;
        }
        if !self.waiting {
            // Opened while the file was there; it is gone before the script
            // found it: stop waiting for it to come back.
            let stale = self.current.as_ref().is_some_and(|r| r.following.is_none());
            if at_path.is_none() && stale {
                if let Some(r) = self.current.take() {
                    r.abandon();
                }
                self.waiting = true;
                self.homeless = true;
                self.reopen_at = None;
            }
            return;
        }
        let Some((ino, known)) = at_path else {
            self.homeless = true;
            return;
        };
        self.homeless = false;
        match self.next {
            StartAt::Resume { ino: had, .. } if had == ino => {}
            _ if known => {
                // The file it was to resume was rotated away while we were
                // not looking: finish it where it went (by inode, in the
                // same folder), and open nothing at the path.
                if let (StartAt::Resume { .. }, Some(at)) = (self.next, self.resume.take()) {
                    if !self.finishes.iter().any(|u| u.at.file_id == at.file_id) {
                        self.finishes.push(Unfinished { at, copy: false });
                    }
                    self.next = StartAt::Beginning;
                    self.identity_changed = true;
                }
                self.homeless = true;
                return;
            }
            _ => {}
        }
        self.waiting = false;
        self.reopen_at = Some(Instant::now());
    }

    /// Whether this member waits with nothing open, nothing to finish and
    /// nothing the index has not confirmed, and the last listing found no
    /// file at its path for it: it can be retired.
    pub fn idle(&self, durable: &Durable, i: usize) -> bool {
        self.member
            && self.waiting
            && self.homeless
            && self.current.is_none()
            && self.finishing.is_empty()
            && self.held.is_empty()
            && self.finishes.is_empty()
            && self.closed.is_empty()
            && self.catchup.reader.is_none()
            && durable.gaps(i).next().is_none()
            && self
                .resume
                .is_none_or(|c| durable.first_unconfirmed(i, c.file_id).is_none())
    }

    /// Marks a member done with (see [`Follow::idle`]).
    pub fn retire(&mut self) {
        self.close();
        self.retired = true;
    }

    /// Whether a member waits for the listing (tests).
    #[cfg(test)]
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }
}
