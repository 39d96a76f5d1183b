//! Logs whose path is a pattern (`/var/log/nginx/*.log`): which files they
//! follow.
//!
//! A channel per pattern runs `list.sh`, which lists the regular files
//! under the pattern's root once per poll interval; the tap matches them
//! against the pattern and `exclude` itself ([`choose`]). Each matching
//! file is followed by a member ([`crate::follow::Follow`] with the file's
//! path): its own identity, offsets and checkpoint entry (`NAME:PATH`), the
//! log's topic, `path` in every line's metadata. A file is known by inode
//! and first bytes, so a rotation that renames `api.log` to `api.log.1` is
//! the same file rotating, never a new one (even with `*.log*`), and a
//! copytruncate copy is not a new file either.
//!
//! The first pass of a log that no checkpoint knows reads its files from
//! `read_from` (their end, by default); a file that appears later is read
//! from its start: it is new. A member whose file is gone (deleted, renamed
//! out of the pattern) finishes it, and once the index confirmed its lines
//! it is retired: out of the checkpoint and the status.
//!
//! - [`listing`]: decoding what `list.sh` prints.
//! - [`choose`]: what a pass means (pure).

pub mod choose;
pub mod listing;

use std::collections::HashSet;
use std::time::Instant;

use rill_config::{Log, TapSettings};
use rill_proto::LogStatus;
use tracing::{info, warn};

use crate::checkpoint::{Checkpoints, KnownFile, PatternCheckpoint, Verify};
use crate::durable::Durable;
use crate::follow::channel::{Channel, Opener};
use crate::follow::Follow;
use crate::script::{RunAs, Script, StartAt};
use crate::status::StatusBoard;
use choose::{choose, MemberView};
use listing::{Listing, Pass};

/// How long to wait before listing again after the listing channel failed.
const RELIST_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes read from a listing channel per turn.
const READ_PER_TURN: usize = 256 * 1024;

/// One pattern log on one host.
pub struct Pattern {
    pub log: Log,
    settings: TapSettings,
    lister: Option<(Box<dyn Channel>, usize)>,
    listing: Listing,
    relist_at: Option<Instant>,
    /// Files the log read, by inode and first bytes (see
    /// [`PatternCheckpoint::known`]), with the members' own.
    known: Vec<(u64, Verify)>,
    /// A pass was seen before (now or by an earlier run): new files are
    /// read from their start, not from `read_from`.
    seen: bool,
    ignored: HashSet<(u64, String)>,
    /// The members' numbers among the tap's logs.
    pub members: Vec<usize>,
    /// The pattern's row in the status board.
    row: usize,
    /// What was last logged about the pattern, so a state is logged once.
    said: Option<String>,
    /// Who runs the listing and the members' programs.
    run_as: RunAs,
}

impl Pattern {
    /// The pattern `log` on this host, with the members its checkpoint
    /// names restored into `follows` (each waits for the first listing).
    pub fn restore(
        log: Log,
        (settings, run_as): (TapSettings, RunAs),
        saved: &Checkpoints,
        follows: &mut Vec<Follow>,
        board: &mut StatusBoard,
    ) -> Pattern {
        let mine = saved.patterns.get(&log.name);
        let row = board.add_pattern(&log);
        let mut p = Pattern {
            settings,
            lister: None,
            listing: Listing::default(),
            relist_at: Some(Instant::now()),
            known: mine
                .map(|c| c.known.iter().map(|k| (k.ino, k.verify)).collect())
                .unwrap_or_default(),
            seen: mine.is_some(),
            ignored: HashSet::new(),
            members: Vec::new(),
            row,
            said: None,
            run_as,
            log,
        };
        let prefix = format!("{}:", p.log.name);
        let mut paths: Vec<&str> = saved
            .logs
            .keys()
            .chain(saved.draining.keys())
            .filter_map(|k| k.strip_prefix(&prefix))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        for path in paths {
            let key = format!("{prefix}{path}");
            let f = Follow::member(
                p.member_log(path),
                settings,
                saved.logs.get(&key).copied(),
                saved.draining.get(&key).cloned().unwrap_or_default(),
                saved.history.get(&key).cloned().unwrap_or_default(),
                None,
            );
            p.adopt(f, follows, board);
        }
        p
    }

    /// The pattern's row among the board's pattern rows.
    pub fn row(&self) -> usize {
        self.row
    }

    /// The log as one of its files sees it.
    fn member_log(&self, path: &str) -> Log {
        Log {
            path: path.to_owned(),
            glob: None,
            exclude: Vec::new(),
            ..self.log.clone()
        }
    }

    fn adopt(&mut self, mut f: Follow, follows: &mut Vec<Follow>, board: &mut StatusBoard) {
        f.run_as = self.run_as.clone();
        let i = follows.len();
        let row = board.add_log(&f.log);
        debug_assert_eq!(row, i, "status rows follow the logs");
        follows.push(f);
        self.members.push(i);
    }

    /// What to save, once a listing was applied (before that, a restart
    /// must still take the files it finds as seen for the first time).
    pub fn checkpoint(&self) -> Option<PatternCheckpoint> {
        self.seen.then(|| PatternCheckpoint {
            known: self
                .known
                .iter()
                .map(|&(ino, verify)| KnownFile { ino, verify })
                .collect(),
        })
    }

    /// Starts the listing when it is due.
    pub fn open_due(&mut self, conns: &mut dyn Opener) -> Result<(), rill_ssh::Error> {
        if self.lister.is_some() || self.relist_at.is_none_or(|t| Instant::now() < t) {
            return Ok(());
        }
        let glob = self.log.glob.as_ref().expect("a pattern log has a glob");
        let script = Script::List {
            root: glob.root().to_owned(),
            depth: glob.depth(),
            name: glob
                .file_name()
                .filter(|n| !n.contains('\\'))
                .map(str::to_owned),
            interval: self.settings.poll_interval,
        };
        match conns.open(&self.run_as.wrap(script)) {
            Ok(ch) => {
                self.lister = Some(ch);
                self.listing = Listing::default();
                self.relist_at = None;
                Ok(())
            }
            Err(e) => {
                self.relist_at = Some(Instant::now() + RELIST_AFTER * 5);
                Err(e)
            }
        }
    }

    /// Reads the listing channel; returns the whole passes it held, in
    /// order (each is applied: a pass's new files are listed with their
    /// first bytes only once).
    pub fn pump(&mut self, buf: &mut [u8], heard: &mut Instant) -> Vec<Pass> {
        let mut passes = Vec::new();
        let Some((ch, _)) = self.lister.as_mut() else {
            return passes;
        };
        let mut failed: Option<String> = None;
        let mut taken = 0;
        while taken < READ_PER_TURN {
            match ch.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    taken += n;
                    *heard = Instant::now();
                    match self.listing.feed(&buf[..n]) {
                        Ok(done) => passes.extend(done),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        // Its ticks, and whatever else it says there: heard, not kept.
        while let Ok(n) = ch.read_stderr(buf) {
            if n == 0 {
                break;
            }
            *heard = Instant::now();
        }
        if failed.is_none() && ch.eof() && !ch.queued() {
            failed = Some("the listing script ended".into());
        }
        if let Some(why) = failed {
            warn!(log = %self.log.name, pattern = %self.log.path, error = %why, "listing again");
            if let Some((mut ch, _)) = self.lister.take() {
                ch.close();
            }
            self.relist_at = Some(Instant::now() + RELIST_AFTER);
        }
        passes
    }

    /// Acts on a pass: new files become members, members hear what their
    /// path names now, and the pattern's status row says what matched.
    pub fn apply(&mut self, pass: &Pass, follows: &mut Vec<Follow>, board: &mut StatusBoard) {
        // Every file the log knows, its members' included, while it is
        // still on the server (under any name the listing shows).
        let listed: HashSet<u64> = pass.files.iter().map(|f| f.ino).collect();
        let mut have: HashSet<(u64, Verify)> = self.known.iter().copied().collect();
        for &i in &self.members {
            for id in follows[i].identities() {
                if have.insert(id) {
                    self.known.push(id);
                }
            }
        }
        // An empty pass (the folder gone a moment, a failing mount) forgets
        // nothing: the files may be back at the next.
        if !pass.files.is_empty() {
            self.known.retain(|(ino, _)| listed.contains(ino));
        }
        let views: Vec<MemberView> = self
            .members
            .iter()
            .map(|&i| MemberView {
                path: follows[i].log.path.clone(),
            })
            .collect();
        let room = self.log.max_files.saturating_sub(self.members.len());
        let choice = choose(
            &self.log,
            pass,
            &views,
            &self.known,
            &mut self.ignored,
            room,
        );
        for (&i, at) in self.members.iter().zip(&choice.at_paths) {
            follows[i].listed(*at);
        }
        let start = if self.seen {
            StartAt::Beginning
        } else {
            match self.log.read_from {
                rill_config::ReadFrom::End => StartAt::End,
                rill_config::ReadFrom::Beginning => StartAt::Beginning,
            }
        };
        for path in &choice.add {
            info!(log = %self.log.name, path = %path, start = ?start, "a file of the pattern to follow");
            let mut f = Follow::member(
                self.member_log(path),
                self.settings,
                None,
                Vec::new(),
                Vec::new(),
                Some(start),
            );
            if self.seen {
                f = f.without_history();
            }
            self.adopt(f, follows, board);
        }
        if !choice.add.is_empty() {
            Follow::know_each_other(follows);
        }
        self.seen = true;
        self.report(pass, &choice, board);
    }

    /// The pattern's status row, and a log line when what it says changed.
    fn report(&mut self, pass: &Pass, c: &choose::Choice, board: &mut StatusBoard) {
        let glob = self.log.glob.as_ref().expect("a pattern log has a glob");
        let mut notes = Vec::new();
        if c.matched == 0 {
            notes.push(format!("no file matches {} yet", self.log.path));
        }
        if c.over > 0 {
            notes.push(format!(
                "{} files match, more than max_files ({}): {} not followed",
                c.matched, self.log.max_files, c.over
            ));
        }
        if pass.odd_names {
            notes.push("files whose name holds a newline are not followed".into());
        }
        if pass.not_utf8 > 0 {
            notes.push(format!(
                "{} files whose name is not UTF-8 are not followed",
                pass.not_utf8
            ));
        }
        if pass.cut {
            notes.push(format!(
                "more than {} files under {}: the rest are not listed",
                crate::script::LIST_LIMIT,
                glob.root()
            ));
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        if note != self.said {
            match &note {
                Some(n) => warn!(log = %self.log.name, pattern = %self.log.path, "{n}"),
                None => {
                    info!(log = %self.log.name, pattern = %self.log.path, files = c.matched, "files match")
                }
            }
            self.said.clone_from(&note);
        }
        let row: &mut LogStatus = board.pattern(self.row);
        row.files = Some(c.matched as u64);
        row.error = note;
    }

    /// Retires the members with nothing left to do.
    pub fn retire_idle(
        &mut self,
        follows: &mut [Follow],
        board: &mut StatusBoard,
        durable: &Durable,
    ) {
        let mut kept = Vec::with_capacity(self.members.len());
        for &i in &self.members {
            let f = &mut follows[i];
            if f.idle(durable, i) {
                info!(log = %self.log.name, path = %f.log.path, "file done with: no longer followed");
                for id in f.identities() {
                    if !self.known.contains(&id) {
                        self.known.push(id);
                    }
                }
                f.retire();
                f.identity_changed = true;
                board.hide(i);
            } else {
                kept.push(i);
            }
        }
        self.members = kept;
    }

    /// Whether the listing channel is open (and so should be heard from).
    pub fn has_channel(&self) -> bool {
        self.lister.is_some()
    }

    /// Whether the listing channel holds bytes no read took yet.
    pub fn pending(&self) -> bool {
        self.lister
            .as_ref()
            .is_some_and(|(ch, _)| ch.queued() || ch.eof())
    }

    /// Bit N: the listing channel is on connection N.
    pub fn connections(&self) -> u32 {
        self.lister.as_ref().map_or(0, |(_, conn)| 1 << conn)
    }

    /// When the listing is to be opened again.
    pub fn next_due(&self) -> Option<Instant> {
        self.relist_at
    }

    /// Closes the listing channel (at shutdown).
    pub fn close(&mut self) {
        if let Some((mut ch, _)) = self.lister.take() {
            ch.close();
        }
    }
}
