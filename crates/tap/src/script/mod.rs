//! What runs on the server: a portable POSIX sh script per followed file.
//!
//! The scripts are real files under `script/` (`common.sh`, then
//! `follow.sh` or `finish.sh`, then `run.sh`), constant text checked by
//! shellcheck in the tests. Every value (the path, its folder and name,
//! intervals, offsets, a claim to test) reaches them as a positional parameter:
//! a path is always a path, whatever it holds. The login shell only runs
//! `exec sh -c BOOT rill SCRIPT ARGS...`, each word escaped so that sh,
//! bash, zsh, fish and tcsh all pass it on unchanged
//! ([`rill_ssh::remote::escape`]).
//!
//! Every script opens its file once (`exec 4<FILE`) and from then on reads
//! it through `/dev/fd/4`, so a rename or a delete never changes which file
//! it reads (where `/dev/fd` is missing it falls back to the name). It prints
//! one header line,
//!
//! ```text
//! RILL <dev> <ino> <verify len> <verify fp> <start> <stream|chunks>
//! ```
//!
//! then the file's bytes from `start` on, in one of two ways:
//!
//! - **stream** (hosts with GNU `tail` and `/dev/fd`): the bytes exactly as
//!   `tail -c +N -f` prints them, a line within `tap.stream_poll` (GNU
//!   tail cannot use inotify on `/dev/fd/4`, a symlink, so it polls the
//!   open file: one `fstat` and `read` per turn, no fork). GNU
//!   tail notices a truncation itself and reads the file again from 0; with
//!   its messages on the same stream (`2>&1`) its "file truncated" sits
//!   exactly between the old bytes and the new ones. A log line can read
//!   the same; the reader stops at either, and the next one, resumed at the
//!   last line's end, is told which it was by what the file holds there
//!   (the claim test, [`stream`]). Nothing on the server's command lines
//!   is secret: `ps` shows them to every user.
//!   Rotation, the file's size when it changed, a draining file's final
//!   size and a grown fingerprint are reported on stderr.
//! - **chunks** (any other `tail`: BusyBox, BSD, which re-read a truncated
//!   file silently): every poll the script sends what is new as
//!   `RILL-CHUNK <off> <len>`, the bytes, then `RILL-OK` once it checked that
//!   the file was not truncated meanwhile (a chunk without `RILL-OK` is
//!   dropped and the script ends, so the tap resumes before it). Control
//!   lines come on the same stream, in order. A line arrives within the poll
//!   interval, like BusyBox's own `tail -f`.
//!
//! While the file does not exist the script prints `RILL-WAIT`
//! (`RILL-WAIT-DIR` when its directory is missing too) once and polls.
//!
//! No leftovers: sshd gives the script a pipe as stdin that closes when the
//! channel or the connection goes away. A watchdog (`cat` on that stdin) then
//! kills the worker, so no remote process outlives its channel by more than
//! one poll interval.

use std::time::Duration;

use rill_ssh::remote::sh as command;

use crate::checkpoint::Verify;

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the current end of the file (new lines only). A file that does not
    /// exist yet is read from its beginning once it appears.
    End,
    /// At byte 0 (a file that replaced the one we followed).
    Beginning,
    /// At `offset` if the file still has inode `ino`, is at least that long
    /// and its first bytes still match `verify`; otherwise from 0 (it was
    /// replaced or truncated).
    Resume {
        ino: u64,
        offset: u64,
        verify: Verify,
    },
}

/// How the follow script sends the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Streams where GNU tail is found, chunks elsewhere.
    Auto,
    /// Always chunks (tests of the chunk reader on any host).
    Chunks,
}

/// The scripts, as they are on disk under `script/`: constant text. Every
/// value (path, interval, offsets, claim) reaches them as a positional
/// parameter, never by substitution into the text.
const COMMON: &str = include_str!("common.sh");
const FOLLOW: &str = include_str!("follow.sh");
const FINISH: &str = include_str!("finish.sh");
const LIST: &str = include_str!("list.sh");
const GENERATIONS: &str = include_str!("generations.sh");
const JOURNAL: &str = include_str!("journal.sh");
const RUN: &str = include_str!("run.sh");

/// `path`'s folder and file name.
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (".", path),
    }
}

/// The arguments every script starts with: PATH DIR NAME INTERVAL FP_BYTES
/// CHUNK_BYTES.
fn common_args(path: &str, interval: Duration) -> Vec<String> {
    let (dir, base) = split(path);
    vec![
        path.to_owned(),
        dir.to_owned(),
        base.to_owned(),
        seconds(interval),
        FINGERPRINT_BYTES.to_string(),
        CHUNK_BYTES.to_string(),
    ]
}

/// The command for `kind` (follow.sh or finish.sh) with `args`.
fn program(kind: &str, args: &[String]) -> String {
    command(&[COMMON, kind, RUN].concat(), args)
}

/// The command to exec on the server to follow `path` from `start`, checking
/// every `interval` whether it was rotated, GNU tail looking for new lines
/// every `stream_poll`.
pub fn follow_command(
    path: &str,
    start: StartAt,
    (interval, stream_poll): (Duration, Duration),
    reading: Reading,
    claim: Option<&Claim>,
) -> String {
    let start = match start {
        StartAt::End => "end".to_owned(),
        StartAt::Beginning => "0".to_owned(),
        StartAt::Resume {
            ino,
            offset,
            verify,
        } => format!("{ino}:{offset}:{}:{}", verify.len, verify.fp),
    };
    let mode = match reading {
        Reading::Auto => "auto",
        Reading::Chunks => "chunks",
    };
    let mut args = common_args(path, interval);
    args.extend([
        start,
        mode.to_owned(),
        claim.map_or_else(|| "-".to_owned(), Claim::check),
        seconds(stream_poll),
    ]);
    program(FOLLOW, &args)
}

/// The password `sudo -S` is fed (from `sudo_password_env` or
/// `sudo_password_file`); its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SudoPassword(String);

impl SudoPassword {
    /// A password for `sudo -S`, which reads one line: none with a newline.
    pub fn new(p: String) -> Result<SudoPassword, String> {
        if p.contains(['\n', '\r']) {
            return Err("the sudo password holds a newline".into());
        }
        Ok(SudoPassword(p))
    }
}

impl std::fmt::Debug for SudoPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SudoPassword(..)")
    }
}

/// How a log's programs run on the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunAs {
    /// As the account logged in.
    #[default]
    User,
    /// As root through `sudo` (`logs.<name>.sudo`): `-n`, or `-S` fed this
    /// password.
    Root(Option<SudoPassword>),
}

impl RunAs {
    /// `script`, run this way.
    pub fn wrap(&self, script: Script) -> Script {
        match self {
            RunAs::User => script,
            RunAs::Root(password) => Script::AsRoot {
                script: Box::new(script),
                password: password.clone(),
            },
        }
    }
}

/// A script to run on the server for one reader, with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Another script, run as root through `sudo`.
    AsRoot {
        script: Box<Script>,
        password: Option<SudoPassword>,
    },
    /// Follow the file at `path` from `start` ([`follow_command`]).
    Follow {
        path: String,
        start: StartAt,
        interval: Duration,
        stream_poll: Duration,
        reading: Reading,
        /// What the previous reader stopped at, to be settled.
        claim: Option<Claim>,
    },
    /// Follow the systemd journal ([`journal_command`]).
    Journal {
        /// Where to start: `end`, `all` or `after:CURSOR`.
        from: String,
        /// journalctl's filter options, one word each.
        options: Vec<String>,
        interval: Duration,
    },
    /// List the rotated generations of `path` in its folder, oldest first
    /// ([`generations_command`]).
    Generations {
        path: String,
        interval: Duration,
        /// The file names of the other logs followed in that folder.
        others: Vec<String>,
    },
    /// List the files under `root` a pattern may match, every `interval`
    /// ([`list_command`]).
    List {
        root: String,
        depth: Option<usize>,
        /// Only names `find -name` matches with this (a filter before the
        /// tap's own match: it must never leave out a name the pattern
        /// matches).
        name: Option<String>,
        interval: Duration,
    },
    /// Read an old file of `path`'s folder to its end ([`finish_command`]).
    Finish {
        path: String,
        old: OldFile,
        verify: Verify,
        offset: u64,
        interval: Duration,
        /// The file names of the other logs followed in that folder.
        others: Vec<String>,
    },
}

impl Script {
    /// What the command's stdin gets first: the sudo password, three times
    /// (`sudo -S` tries as often: a wrong one then fails at once instead of
    /// waiting for a line that never comes; a right one leaves two lines to
    /// the script, whose watchdog reads its stdin to its end anyway).
    pub fn stdin(&self) -> Vec<u8> {
        match self {
            Script::AsRoot {
                password: Some(SudoPassword(p)),
                ..
            } => format!("{p}\n{p}\n{p}\n").into_bytes(),
            _ => Vec::new(),
        }
    }

    /// The script itself, whoever runs it.
    pub fn inner(&self) -> &Script {
        match self {
            Script::AsRoot { script, .. } => script.inner(),
            s => s,
        }
    }

    /// The command line for the account's login shell.
    pub fn command_line(&self) -> String {
        match self {
            Script::AsRoot { script, password } => {
                rill_ssh::remote::as_root(&script.command_line(), password.is_some())
            }
            Script::Follow {
                path,
                start,
                interval,
                stream_poll,
                reading,
                claim,
            } => follow_command(
                path,
                *start,
                (*interval, *stream_poll),
                *reading,
                claim.as_ref(),
            ),
            Script::Finish {
                path,
                old,
                verify,
                offset,
                interval,
                others,
            } => finish_command(path, (*old, others), *verify, *offset, *interval),
            Script::List {
                root,
                depth,
                name,
                interval,
            } => list_command(root, *depth, name.as_deref(), *interval),
            Script::Generations {
                path,
                interval,
                others,
            } => generations_command(path, *interval, others),
            Script::Journal {
                from,
                options,
                interval,
            } => journal_command(from, options, *interval),
        }
    }
}

/// Which old file a finish reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldFile {
    /// The entry of the log's directory with this inode (a renamed file).
    Inode(u64),
    /// The file with this inode that server process `pid` (another
    /// channel's script, `RILL-PID`) holds open, even if gone from the
    /// directory; else as [`OldFile::Inode`].
    Held { ino: u64, pid: u32 },
    /// The newest file of the directory whose first bytes match (a
    /// copytruncate copy) and that is the log's: named after it (`app.log.1`,
    /// `app.log-20261202`, or `app.1.log`, logrotate's `extension`), not
    /// after another log followed there (see finish.sh).
    Copy,
}

/// The command that reads an old file of `path`'s directory from `offset`
/// in chunks until it stops growing (`RILL-FINAL <size>`), with the same
/// header as a follow; `RILL-GONE` instead of a header when no file there is
/// at least `offset` long with first bytes matching `verify`. A file gone
/// from the folder is looked for among the log's compressed rotations
/// (`.gz`, `.zst`, `.xz`, `.bz2`: a copy of it named after the log, by what
/// it decompresses to), and read decompressed under the same offsets.
pub fn finish_command(
    path: &str,
    (old, others): (OldFile, &[String]),
    verify: Verify,
    offset: u64,
    interval: Duration,
) -> String {
    let ino = match old {
        OldFile::Inode(ino) => ino.to_string(),
        OldFile::Held { ino, pid } => format!("{ino}:{pid}"),
        OldFile::Copy => "-".to_owned(),
    };
    let mut args = common_args(path, interval);
    args.extend([
        ino,
        verify.len.to_string(),
        verify.fp.to_string(),
        offset.to_string(),
    ]);
    args.extend(others.iter().cloned());
    program(FINISH, &args)
}

/// The most files one listing pass reports.
pub const LIST_LIMIT: usize = 10_000;

/// The command that lists the regular files under `root`, at most `depth`
/// levels down (`None`: any), whose name `find -name` matches with `name`
/// (if given), once per `interval`, in passes of `RILL-LIST`, `N`/`S` lines
/// and `RILL-END` (see list.sh and [`crate::pattern::listing`]).
pub fn list_command(
    root: &str,
    depth: Option<usize>,
    name: Option<&str>,
    interval: Duration,
) -> String {
    let mut args = common_args(root, interval);
    args.extend([
        depth.map_or_else(|| "any".to_owned(), |d| d.to_string()),
        LIST_LIMIT.to_string(),
        name.unwrap_or("").to_owned(),
    ]);
    program(LIST, &args)
}

/// The command that follows the journal from `from` (`end`, `all`,
/// `after:CURSOR`) with journalctl's `options` (see journal.sh).
pub fn journal_command(from: &str, options: &[String], interval: Duration) -> String {
    let mut args = common_args("/", interval);
    args.push(from.to_owned());
    args.extend(options.iter().cloned());
    program(JOURNAL, &args)
}

/// The command that lists `path`'s rotated generations in its folder,
/// oldest first (`G <dev> <ino> <vlen> <vfp> <name>` lines, then
/// `RILL-END`; see generations.sh), then holds its channel until closed.
pub fn generations_command(path: &str, interval: Duration, others: &[String]) -> String {
    let mut args = common_args(path, interval);
    args.extend(others.iter().cloned());
    program(GENERATIONS, &args)
}

mod output;
mod params;
mod stream;

pub use output::{
    parse_control, parse_header, ChunkDecoder, Control, FrameError, Header, HeaderError, Mode,
    Output, OutputError, Piece, Said, StderrLines,
};
use params::seconds;
pub use params::{CHUNK_BYTES, FINGERPRINT_BYTES};
pub use stream::{cksum, Claim, StreamFilter, TAIL_NAME};

#[cfg(test)]
mod run_tests;
#[cfg(test)]
mod shells;
#[cfg(test)]
mod tests;
