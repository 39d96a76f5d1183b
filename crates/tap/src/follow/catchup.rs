//! Going back over a gap: lines a live reader read while the durable window
//! was full are left in the server's file, and a catch-up reader reads them
//! again for the index once there is room (at most one per log at a time).
//!
//! The live stream has the tap's CPU and the connection first: a gap is not
//! read while the live reader is in a burst ([`LIVE_FIRST_QUIET`]), for at
//! most [`LIVE_FIRST_MAX`].

use std::time::{Duration, Instant};

use rill_proto::FileId;
use tracing::{debug, warn};

use super::channel::Opener;
use super::io::Io;
use super::reader::Reader;
use super::role::Role;
use super::{Follow, REOPEN_AFTER};
use crate::checkpoint::{LogCheckpoint, Verify};
use crate::durable::{Durable, Gap};

/// A gap is read again once the live reader had no bytes for this long...
const LIVE_FIRST_QUIET: Duration = Duration::from_millis(100);
/// ...or once it waited this long, however busy the live reader is.
const LIVE_FIRST_MAX: Duration = Duration::from_secs(5);

/// A log's catch-up: its reader and when the next may open.
#[derive(Default)]
pub(super) struct CatchUp {
    pub reader: Option<Reader>,
    /// Not before this (the last catch-up ended short of its gap).
    pub after: Option<Instant>,
    /// Since when a gap waits for the live reader's burst to pass.
    pub held: Option<Instant>,
    /// This file's gap is read from its copytruncate copy: the file at its
    /// inode no longer has those bytes.
    pub copy_of: Option<FileId>,
}

impl Follow {
    /// Opens a catch-up reader for the oldest gap, when one is due.
    pub(super) fn open_catchup(
        &mut self,
        conns: &mut dyn Opener,
        durable: &Durable,
        i: usize,
    ) -> anyhow::Result<()> {
        let now = Instant::now();
        // The hold's clock runs only while the gap could otherwise be read:
        // not while the window is full or a failed catch-up waits.
        let could_read =
            self.gap_waiting(durable, i) && self.catchup.after.is_none_or(|t| now >= t);
        if could_read && self.live_busy(now) {
            self.catchup.held.get_or_insert(now);
        } else {
            self.catchup.held = None;
        }
        let Some(mut gap) = self.due_gap(durable, i, now) else {
            return Ok(());
        };
        if let Some(v) = self.known_verify(gap.file_id) {
            if v.len > gap.verify.len {
                gap.verify = v;
            }
        }
        let copy = self.catchup.copy_of == Some(gap.file_id);
        let at = LogCheckpoint::new(gap.file_id, gap.from, gap.verify);
        let holder = self.holder_of(gap.file_id);
        let script = self.finish_script(at, copy, holder);
        let ch = conns.open(&self.run_as.wrap(script)).inspect_err(|_| {
            self.catchup.after = Some(Instant::now() + REOPEN_AFTER);
        })?;
        debug!(log = %self.log.name, file_id = %gap.file_id, from = gap.from, copy, ?holder, "reading a gap again for the index");
        let mut r = Reader::new(ch, self.settings, None, Role::catch_up(copy));
        r.expect = Some(at);
        self.catchup.reader = Some(r);
        self.catchup.after = None;
        self.catchup.held = None;
        Ok(())
    }

    /// The gap a catch-up reader should go over now, if any: none while one
    /// is open, while the window is full, or before [`Follow::catchup_at`].
    fn due_gap(&self, durable: &Durable, i: usize, now: Instant) -> Option<Gap> {
        if !self.gap_waiting(durable, i) || self.catchup_at(now) > now {
            return None;
        }
        durable.gaps(i).min_by_key(|g| (g.file_id.ino, g.from))
    }

    /// Whether a gap waits for a catch-up that could be opened, timing
    /// aside: none is open and the window has room.
    pub(super) fn gap_waiting(&self, durable: &Durable, i: usize) -> bool {
        self.catchup.reader.is_none() && !durable.full() && durable.gaps(i).next().is_some()
    }

    /// Whether the live reader is in a burst: it read bytes within
    /// [`LIVE_FIRST_QUIET`].
    fn live_busy(&self, now: Instant) -> bool {
        self.current
            .as_ref()
            .is_some_and(|r| now < r.last_data + LIVE_FIRST_QUIET)
    }

    /// When a gap may be read again: after `after` (a catch-up that ended
    /// short), and not while the live reader is in a burst, for at most
    /// [`LIVE_FIRST_MAX`].
    pub(super) fn catchup_at(&self, now: Instant) -> Instant {
        let after = self.catchup.after.unwrap_or(now);
        let burst = match (self.catchup.held, &self.current) {
            (Some(held), Some(r)) => (r.last_data + LIVE_FIRST_QUIET).min(held + LIVE_FIRST_MAX),
            _ => now,
        };
        after.max(burst)
    }

    /// Reads the catch-up channel while the window has room; closes it once
    /// its gap is closed, or when it ended short of it (then the gap is
    /// read again, from its copy if the file is gone, or given up when
    /// neither is there).
    pub(super) fn pump_catchup(&mut self, io: &mut Io, i: usize) -> anyhow::Result<()> {
        let Some(mut r) = self.catchup.reader.take() else {
            return Ok(());
        };
        let file_id = r.expect.expect("a catch-up knows its file").file_id;
        if io.out.durable.full() {
            // Waiting for room is not quiet: no partial line goes out for it.
            r.last_data = Instant::now();
            self.catchup.reader = Some(r);
            return Ok(());
        }
        if let Err(e) = r.pump(&self.log, io, i) {
            // Kept, like the other readers, so closing the log closes it.
            self.catchup.reader = Some(r);
            return Err(e);
        }
        if io.out.durable.gap(i, file_id).is_none() {
            debug!(log = %self.log.name, %file_id, "gap read again");
            r.close(&self.log, io, i, false)?;
            if !self.followed().any(|f| f.file_id == file_id) {
                io.out.durable.forget(i, file_id);
            }
            return Ok(());
        }
        if !r.drained() {
            self.catchup.reader = Some(r);
            return Ok(());
        }
        // Nothing there to read: the file is not where its inode was, or no
        // longer fits, or holds no byte of the gap (truncated).
        let from = io.out.durable.gap(i, file_id).map_or(0, |g| g.from);
        let final_size = r.role.old().and_then(|o| o.final_size);
        let short = r.following.is_none() || r.truncated() || final_size.is_some_and(|n| n <= from);
        if short {
            if r.role.copy() {
                warn!(log = %self.log.name, %file_id, "the rest of a file the index had not taken is gone from the server");
                io.board.log(i).error = Some(format!(
                    "lines of {} {file_id} were gone from the server before the index took them",
                    self.log.path
                ));
                io.out.durable.forget(i, file_id);
            } else {
                self.catchup.copy_of = Some(file_id);
            }
        }
        // Ended short (a last line without newline still waiting, the file
        // truncated): what it read goes in, the rest is read again.
        let flush = !r.cut();
        r.close(&self.log, io, i, flush)?;
        self.catchup.after = Some(Instant::now() + REOPEN_AFTER);
        Ok(())
    }

    /// The longest verification this log knows for `file_id` (its readers'
    /// are upgraded as the file grows past 64 bytes).
    fn known_verify(&self, file_id: FileId) -> Option<Verify> {
        let readers = self
            .followed()
            .filter(|f| f.file_id == file_id)
            .map(|f| f.verify);
        let lists = self
            .finishes
            .iter()
            .chain(&self.closed)
            .filter(|u| u.at.file_id == file_id)
            .map(|u| u.at.verify());
        readers.chain(lists).max_by_key(|v| v.len)
    }
}
