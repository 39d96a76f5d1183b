//! One followed log: the reader of the file at its path now, readers
//! finishing files it replaced, and a catch-up reader going back over a
//! gap the durable path left.
//!
//! ```text
//! Current ── rotated (path names another inode) ──> Finishing ── final size read ──> closed
//!    │         └── a new Current reader of the path from 0, opened at once
//!    └── truncated (copytruncate) ──> closed; the old bytes from the copy (a
//!              Finishing reader), a new Current reader of the path from 0
//!              under a new identity
//! ```
//!
//! A restarted tap finishes what its checkpoint says was unfinished and, if
//! the path's file changed while it was down (renamed away: found by inode;
//! truncated: its copy found by its first bytes), finishes the old file from
//! the checkpoint's offset before the new one is read from 0.
//!
//! - [`role`]: what a reader is for and how control records move it on.
//! - [`reader`]: one channel: header, bytes to lines, publishing.
//! - [`catchup`]: when a gap is read again, and the reader that does it.
//! - [`position`]: what this log saves in checkpoints, its lag, a rewind.
//! - [`channel`]: the channel and opener traits (SSH, or the model tests'
//!   simulated server).

mod catchup;
pub mod channel;
pub mod history;
mod io;
mod member;
mod position;
pub mod reader;
pub mod role;

#[cfg(test)]
mod model;
#[cfg(test)]
mod model_tests;

use std::time::{Duration, Instant};

use rill_config::{Log, ReadFrom, TapSettings};
use rill_proto::FileId;
use tracing::{debug, info, warn};

use crate::checkpoint::{self, LogCheckpoint, Unfinished};
use crate::durable::Durable;
use crate::script::{Claim, OldFile, Reading, RunAs, Script, StartAt};
use crate::status::StatusBoard;
use channel::Opener;
pub use io::Io;
use reader::{Following, Reader};
use role::{End, Role};

/// How long to wait before reopening a log whose follow script ended.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// How long to wait before asking `sudo` again after it refused.
const SUDO_RETRY: Duration = Duration::from_secs(30);

/// One followed log.
pub struct Follow {
    pub log: Log,
    settings: TapSettings,
    reading: Reading,
    current: Option<Reader>,
    finishing: Vec<Reader>,
    /// Readers of old files read to their end whose gap the index has not
    /// taken yet: kept open, so that their script holds the file open on
    /// the server (a catch-up reads it through them even once logrotate
    /// compressed or deleted it).
    held: Vec<Reader>,
    reopen_at: Option<Instant>,
    /// Not before this (a channel for a file to finish could not be opened).
    finish_after: Option<Instant>,
    /// Where the next current reader starts.
    next: StartAt,
    /// The current file's position, for the next resume.
    resume: Option<LogCheckpoint>,
    /// An identity the next new file must not get.
    avoid: Option<FileId>,
    /// What the last current reader stopped at, for the next to settle.
    claim: Option<Claim>,
    /// Files still to finish (from a checkpoint, or replaced while down).
    finishes: Vec<Unfinished>,
    /// Files read to their end whose last lines the index may not have
    /// confirmed yet: kept in checkpoints until it has.
    closed: Vec<Unfinished>,
    /// The last few files read to their end (newest last).
    history: Vec<Unfinished>,
    catchup: catchup::CatchUp,
    /// A file's identity was established or a rotation seen since the last
    /// checkpoint: save now, not at the next periodic save, so a restart
    /// never names the same file differently.
    pub identity_changed: bool,
    /// The file names of the other logs of the host in this log's folder:
    /// their copytruncate copies are not this log's.
    others: Vec<String>,
    /// A file of a pattern ([`crate::pattern`]): once what its path names
    /// changes, its next file is opened only when the pattern's listing
    /// says the path names a file no other file of the log is.
    member: bool,
    /// A member waiting for that word (see [`Follow::listed`]).
    waiting: bool,
    /// The last listing found nothing at a waiting member's path for it
    /// (no file, or a file another member knows).
    homeless: bool,
    /// Who runs this log's programs on the server (`sudo: true`: root).
    pub run_as: RunAs,
    /// `history: N` at first sight: the rotated generations to list.
    generations: history::Generations,
    /// A member done with: nothing open, nothing unconfirmed, no longer in
    /// checkpoints or status. Its slot stays (lines in flight name logs
    /// by their number).
    pub retired: bool,
}

impl Follow {
    pub fn new(
        log: Log,
        settings: TapSettings,
        saved: Option<LogCheckpoint>,
        unfinished: Vec<Unfinished>,
        history: Vec<Unfinished>,
    ) -> Self {
        let first_sight = saved.is_none() && unfinished.is_empty();
        let generations = if first_sight && log.history > 0 {
            history::Generations::Due(log.history)
        } else {
            history::Generations::Done
        };
        // With generations to list, the current file waits for the list.
        let reopen_at = matches!(generations, history::Generations::Done).then(Instant::now);
        let next = match saved {
            Some(c) => resume_at(c),
            None if log.read_from == ReadFrom::Beginning => StartAt::Beginning,
            None => StartAt::End,
        };
        Follow {
            log,
            settings,
            reading: Reading::Auto,
            current: None,
            finishing: Vec::new(),
            held: Vec::new(),
            reopen_at,
            finish_after: None,
            next,
            resume: saved,
            avoid: None,
            claim: None,
            finishes: unfinished,
            closed: Vec::new(),
            history,
            catchup: catchup::CatchUp::default(),
            identity_changed: false,
            others: Vec::new(),
            member: false,
            waiting: false,
            homeless: false,
            generations,
            run_as: RunAs::User,
            retired: false,
        }
    }

    /// Tells each of `follows` the file names of the others in its folder.
    pub fn know_each_other(follows: &mut [Follow]) {
        let split = |p: &str| {
            p.rsplit_once('/')
                .map(|(d, n)| (d.to_owned(), n.to_owned()))
        };
        // A pattern's files are not each other's "others": with `*.log*`,
        // `api.log.1` is where `api.log`'s copytruncate copy goes.
        let places: Vec<Option<(String, String, String)>> = follows
            .iter()
            .map(|f| {
                (!f.retired)
                    .then(|| split(&f.log.path))
                    .flatten()
                    .map(|(d, n)| (d, n, f.log.name.clone()))
            })
            .collect();
        for (i, f) in follows.iter_mut().enumerate() {
            let Some((dir, name, log)) = &places[i] else {
                continue;
            };
            f.others = places
                .iter()
                .flatten()
                .filter(|(d, n, l)| d == dir && n != name && l != log)
                .map(|(_, n, _)| n.clone())
                .collect();
        }
    }

    /// Sets how the follow script sends the file (the model tests' simulated
    /// server speaks only chunks).
    #[cfg(test)]
    pub fn reading(mut self, reading: Reading) -> Self {
        self.reading = reading;
        self
    }

    /// Whether a catch-up reader is open.
    #[cfg(test)]
    pub fn catchup_open(&self) -> bool {
        self.catchup.reader.is_some()
    }

    /// The script that finishes `at` (in the inode it had, held open by
    /// server process `holder`, or in its copy).
    fn finish_script(&self, at: LogCheckpoint, copy: bool, holder: Option<u32>) -> Script {
        let ino = at.file_id.ino;
        Script::Finish {
            path: self.log.path.clone(),
            old: match (copy, holder) {
                (true, _) => OldFile::Copy,
                (false, Some(pid)) => OldFile::Held { ino, pid },
                (false, None) => OldFile::Inode(ino),
            },
            verify: at.verify(),
            offset: at.offset,
            interval: self.settings.poll_interval,
            others: self.others.clone(),
        }
    }

    /// Opens the channels that are due.
    pub fn open_due(
        &mut self,
        conns: &mut dyn Opener,
        board: &mut StatusBoard,
        durable: &Durable,
        i: usize,
    ) -> anyhow::Result<()> {
        if let Err(e) = self.open_generations(conns) {
            // Follow the file alone rather than not at all.
            warn!(log = %self.log.name, error = %format!("{e:#}"), "could not list the rotated generations");
            self.generations = history::Generations::Done;
            self.reopen_at = Some(Instant::now());
            board.log(i).error = Some(format!("history: {e:#}"));
        }
        self.open_catchup(conns, durable, i)?;
        if self.finish_after.is_some_and(|t| Instant::now() >= t) {
            self.finish_after = None;
        }
        while let Some(u) = self
            .finishes
            .first()
            .copied()
            .filter(|_| self.finish_after.is_none())
        {
            let script = self.finish_script(u.at, u.copy, None);
            let ch = conns.open(&self.run_as.wrap(script)).inspect_err(|_| {
                self.finish_after = Some(Instant::now() + REOPEN_AFTER);
            })?;
            info!(log = %self.log.name, file_id = %u.at.file_id, offset = u.at.offset, copy = u.copy, "finishing an old file");
            let mut r = Reader::new(ch, self.settings, None, Role::finishing(u.copy));
            r.expect = Some(u.at);
            self.finishing.push(r);
            self.finishes.remove(0);
        }
        if self.current.is_none() && self.reopen_at.is_some_and(|t| Instant::now() >= t) {
            // A truncation claim is the script's to test; any claim is
            // data if the stream shows it again where it stood.
            let script = Script::Follow {
                path: self.log.path.clone(),
                start: self.next,
                interval: self.settings.poll_interval,
                stream_poll: self.settings.stream_poll,
                reading: self.reading,
                claim: self.claim.clone().filter(|c| c.truncated),
            };
            match conns.open(&self.run_as.wrap(script)) {
                Ok(ch) => {
                    debug!(log = %self.log.name, path = %self.log.path, start = ?self.next, "following");
                    let mut r = Reader::new(ch, self.settings, self.claim.take(), Role::Current);
                    r.expect = self.resume;
                    r.avoid = self.avoid;
                    self.current = Some(r);
                    self.reopen_at = None;
                    board.log(i).error = None;
                }
                Err(e) => {
                    board.log(i).error = Some(e.to_string());
                    self.reopen_at = Some(Instant::now() + REOPEN_AFTER * 5);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Reads every channel of this log.
    pub fn pump(&mut self, io: &mut Io, i: usize) -> anyhow::Result<()> {
        self.pump_generations(io.buf, io.heard, io.board, i);
        if let Some(r) = self.current.take() {
            self.pump_current(r, io, i)?;
        }
        let mut still = Vec::with_capacity(self.finishing.len());
        let mut readers = std::mem::take(&mut self.finishing).into_iter();
        while let Some(mut r) = readers.next() {
            let seen = match r.pump(&self.log, io, i) {
                Ok(seen) => seen,
                Err(e) => {
                    // The files stay unfinished (and in the checkpoint) for
                    // the next connection to finish.
                    still.push(r);
                    still.extend(readers);
                    self.finishing = still;
                    return Err(e);
                }
            };
            self.identity_changed |= seen.identified;
            if r.ended() && r.following.is_none() && r.refused.is_some() {
                // sudo refused: the file is still to finish, later.
                if let Some(at) = r.expect {
                    self.finishes.push(Unfinished {
                        at,
                        copy: r.role.copy(),
                    });
                    self.finish_after = Some(Instant::now() + SUDO_RETRY);
                }
                r.abandon();
            } else if r.drained() {
                self.finished(r, io, i)?;
            } else {
                still.push(r);
            }
        }
        self.finishing = still;
        self.pump_held(io, i);
        self.pump_catchup(io, i)
    }

    /// Lets go of the files whose gap the index took (their scripts end
    /// with their channels); hears the others' ticks.
    fn pump_held(&mut self, io: &mut Io, i: usize) {
        let (gone, kept): (Vec<Reader>, Vec<Reader>) =
            std::mem::take(&mut self.held).into_iter().partition(|r| {
                r.following
                    .as_ref()
                    .is_none_or(|f| io.out.durable.gap(i, f.file_id).is_none())
            });
        for r in gone {
            debug!(log = %self.log.name, "an old file's gap was read; letting it go");
            r.abandon();
        }
        self.held = kept;
        for r in &mut self.held {
            r.hear(&self.log, io, i);
        }
    }

    /// The server process holding `file_id` open for a gap, if any.
    pub(super) fn holder_of(&self, file_id: FileId) -> Option<u32> {
        self.held
            .iter()
            .find(|r| r.following.as_ref().is_some_and(|f| f.file_id == file_id))
            .and_then(|r| r.holder)
    }

    /// Reads the current file's channel and acts on what happened to the
    /// file: truncated, rotated, or the script ended.
    fn pump_current(&mut self, mut r: Reader, io: &mut Io, i: usize) -> anyhow::Result<()> {
        let seen = match r.pump(&self.log, io, i) {
            Ok(seen) => seen,
            Err(e) => {
                self.current = Some(r);
                return Err(e);
            }
        };
        self.identity_changed |= seen.identified || seen.controlled;
        if let Some(old) = seen.replaced {
            info!(log = %self.log.name, file_id = %old.at.file_id, copy = old.copy, "the file was replaced or truncated while we were away; finishing the old one");
            if old.copy {
                // Truncated: a gap of the old content is read from its copy.
                self.catchup.copy_of = Some(old.at.file_id);
            }
            self.finishes.push(old);
        }
        self.resume = r.position();
        if let Some(End::Claimed(claim)) = &r.end {
            // Tail's message or a log line: the next reader, resumed at the
            // last line's end, tells by what the file holds there. A
            // truncation is then read from 0 as a replaced file (above).
            info!(log = %self.log.name, claim = %String::from_utf8_lossy(&claim.text).trim_end(), "the stream read like a message of tail's; reading again from the last line to tell");
            self.claim = Some(claim.clone());
            self.next = self.resume.map_or(StartAt::Beginning, resume_at);
            self.reopen_at = Some(Instant::now());
            r.close(&self.log, io, i, false)
        } else if r.truncated() {
            // copytruncate (or any truncation): the old bytes not read yet
            // are in the copy, if there is one.
            let at = r.position().expect("a truncated reader has a file");
            info!(log = %self.log.name, file_id = %at.file_id, offset = at.offset, "file truncated; finishing the old content from its copy, reading the file again from 0");
            self.finishes.push(Unfinished { at, copy: true });
            // A gap of the old content is read from the copy too.
            self.catchup.copy_of = Some(at.file_id);
            self.avoid = Some(at.file_id);
            self.next = StartAt::Beginning;
            self.resume = None;
            self.reopen_at = Some(Instant::now());
            r.close(&self.log, io, i, false)
        } else if matches!(r.role, Role::Finishing(_)) {
            // Rotated during this pump: the path names another file now.
            info!(log = %self.log.name, "file rotated; draining the old one and following the new");
            self.avoid = self.resume.map(|c| c.file_id);
            self.finishing.push(r);
            self.next = StartAt::Beginning;
            self.resume = None;
            self.reopen_at = Some(Instant::now());
            self.gate();
            Ok(())
        } else if r.end == Some(End::Eof) && r.refused.is_some() {
            // Asking again at once would only be refused again.
            warn!(log = %self.log.name, refused = r.refused.as_deref().unwrap_or_default(), retry_in = ?SUDO_RETRY, "sudo refused to run the follow script");
            // (Not gated: a member would be reopened by the next listing.)
            self.reopen_at = Some(Instant::now() + SUDO_RETRY);
            r.close(&self.log, io, i, false)
        } else if r.end == Some(End::Eof) {
            warn!(log = %self.log.name, "remote follow script ended; reopening");
            // Resume at the start of a line still waiting for its newline:
            // it is read again whole.
            self.next = self.resume.map_or(StartAt::Beginning, resume_at);
            self.reopen_at = Some(Instant::now() + REOPEN_AFTER);
            self.gate();
            r.close(&self.log, io, i, false)
        } else {
            self.current = Some(r);
            Ok(())
        }
    }

    /// An old file was read to its end: close its reader and remember it
    /// until the index confirmed its last lines.
    fn finished(&mut self, r: Reader, io: &mut Io, i: usize) -> anyhow::Result<()> {
        info!(log = %self.log.name, "old file finished");
        let flush = !r.cut();
        let copy = r.role.copy();
        let end = r.end_position(flush);
        let gap = end.is_some_and(|at| io.out.durable.gap(i, at.file_id).is_some());
        if gap && flush && r.holder.is_some() {
            // Its script holds the file open until the gap is read.
            let mut r = r;
            r.flush(&self.log, io, i)?;
            self.held.push(r);
        } else {
            r.close(&self.log, io, i, flush)?;
        }
        if let Some(at) = end {
            if io.out.durable.gap(i, at.file_id).is_none() {
                io.out.durable.forget(i, at.file_id);
            }
            let u = Unfinished { at, copy };
            self.closed.push(u);
            self.history.retain(|h| h.at.file_id != at.file_id);
            self.history.push(u);
            if self.history.len() > checkpoint::HISTORY {
                self.history.remove(0);
            }
        }
        self.identity_changed = true;
        Ok(())
    }

    /// The files the current and finishing readers are reading.
    fn followed(&self) -> impl Iterator<Item = &Following> {
        self.current
            .iter()
            .chain(&self.finishing)
            .filter_map(|r| r.following.as_ref())
    }

    /// Every channel of this log that is read now: the current file's and
    /// the finishing ones unless the window holds them for a receipt, the
    /// catch-up unless the window is full ([`Durable::holds`]).
    fn readers<'a>(&'a self, durable: &Durable) -> impl Iterator<Item = &'a Reader> {
        let (live_held, catchup_held) = (durable.holds(false), durable.holds(true));
        let live = self.current.iter().chain(&self.finishing);
        let catchup = self.catchup.reader.iter().filter(move |_| !catchup_held);
        live.filter(move |_| !live_held).chain(catchup)
    }

    /// Bit N: a channel of this log read now is on connection N.
    pub fn connections(&self, durable: &Durable) -> u32 {
        let listing = self.generations_channel().map_or(0, |(conn, _)| 1 << conn);
        self.readers(durable).fold(listing, |m, r| m | 1 << r.conn)
    }

    /// Whether a channel of this log read now has data waiting (read it
    /// before sleeping).
    pub fn pending(&self, durable: &Durable) -> bool {
        self.generations_channel()
            .is_some_and(|(_, pending)| pending)
            || self.readers(durable).any(Reader::pending)
    }

    /// When this log next needs a turn of the loop without any new bytes:
    /// now for a file to finish, a gap to read or a channel to open that is
    /// due, the end of a wait for a receipt, else the first timer of its
    /// readers still to come.
    pub fn next_due(&self, now: Instant, durable: &Durable, i: usize) -> Option<Instant> {
        if self.retired {
            return None;
        }
        let finish = (!self.finishes.is_empty()).then(|| self.finish_after.unwrap_or(now));
        let reopen = self.current.is_none().then_some(self.reopen_at).flatten();
        let gap = self.gap_waiting(durable, i).then(|| self.catchup_at(now));
        let held = durable.holding_until().filter(|_| self.current.is_some());
        self.readers(durable)
            .filter_map(|r| r.next_due(now))
            .chain(reopen)
            .chain(finish)
            .chain(gap)
            .chain(held)
            .min()
    }

    pub fn poll_interval(&self) -> Duration {
        self.settings.poll_interval
    }

    /// Whether any channel of this log is open (and so should be heard from).
    pub fn has_channels(&self) -> bool {
        self.current.is_some()
            || !self.finishing.is_empty()
            || !self.held.is_empty()
            || self.generations_channel().is_some()
    }

    /// Closes every channel (at shutdown).
    pub fn close(&mut self) {
        if let history::Generations::Listing { mut channel, .. } =
            std::mem::take(&mut self.generations)
        {
            channel.close();
        }
        for r in self
            .current
            .take()
            .into_iter()
            .chain(self.finishing.drain(..))
            .chain(self.held.drain(..))
            .chain(self.catchup.reader.take())
        {
            r.abandon();
        }
    }
}

fn resume_at(c: LogCheckpoint) -> StartAt {
    StartAt::Resume {
        ino: c.file_id.ino,
        offset: c.offset,
        verify: c.verify(),
    }
}
