//! What runs on the server: a portable POSIX sh script per followed file.
//!
//! The scripts are real files under `script/` (`common.sh`, then
//! `follow.sh` or `finish.sh`, then `run.sh`), constant text checked by
//! shellcheck in the tests. Every value (the path, its folder and name,
//! intervals, offsets, the nonce) reaches them as a positional parameter:
//! a path is always a path, whatever it holds. The login shell only runs
//! `exec sh -c BOOT rill SCRIPT ARGS...`, each word escaped so that sh,
//! bash, zsh, fish and tcsh all pass it on unchanged ([`escape`]).
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
//! - **stream** (hosts with GNU `tail`): the bytes exactly as
//!   `tail -c +N -f` prints them, a line within `tap.stream_poll` (GNU
//!   tail cannot use inotify on `/dev/fd/4`, a symlink, so it polls the
//!   open file: one `fstat` and `read` per turn, no fork). GNU
//!   tail notices a truncation itself and reads the file again from 0; with
//!   its messages on the same stream (`2>&1`) its "file truncated" sits
//!   exactly between the old bytes and the new ones. It is given the file's
//!   name behind a random run of `/.` and `//.` segments (the [`Nonce`]), so
//!   its messages are told apart from any log line (`frames::StreamFilter`).
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

use crate::checkpoint::Verify;

/// `1`, `0.5`: seconds as `sleep` takes them.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

/// The largest chunk the chunk reader sends at once (the tap holds a chunk
/// until its `RILL-OK`).
pub const CHUNK_BYTES: u64 = 256 * 1024;

/// How many leading bytes a full fingerprint covers.
pub const FINGERPRINT_BYTES: u64 = rill_proto::FileId::FINGERPRINT_BYTES;

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

/// The run of `/.` and `//.` segments put before the file's name for tail,
/// different for every channel, so that a message of tail's names a path no
/// log line can guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    const BITS: u32 = 48;

    pub fn random() -> Nonce {
        Nonce::from_bits(uuid::Uuid::new_v4().as_u128() as u64)
    }

    fn from_bits(bits: u64) -> Nonce {
        let mut s = String::from("/.");
        for i in 0..Self::BITS {
            s.push_str(if bits >> i & 1 == 1 { "//." } else { "/." });
        }
        Nonce(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The scripts, as they are on disk under `script/`: constant text. Every
/// value (path, interval, offsets, nonce) reaches them as a positional
/// parameter, never by substitution into the text.
const COMMON: &str = include_str!("script/common.sh");
const FOLLOW: &str = include_str!("script/follow.sh");
const FINISH: &str = include_str!("script/finish.sh");
const RUN: &str = include_str!("script/run.sh");

/// What the login shell runs: `sh`, which turns each of its arguments back
/// into the bytes they stand for ([`escape`]), then runs the first as a
/// script with the rest as its positional parameters. It holds no `'`,
/// `\`, `!` or newline, so sh, bash, zsh, fish and tcsh all pass it to `sh`
/// unchanged inside single quotes.
const BOOT: &str = r#"for a in "$@"; do v=$(printf "%bx" "$a"); set -- "$@" "${v%x}"; shift; done; s=$1; shift; eval "$s""#;

/// `s` as a word that every login shell passes on unchanged inside single
/// quotes and that `printf %b` turns back into `s`: every byte but
/// printable ASCII other than `\`, `'` and `!` becomes `\0ooo`.
pub fn escape(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s {
        if c.is_ascii_graphic() && !matches!(c, b'\\' | b'\'' | b'!') || c == b' ' {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\0{c:03o}"));
        }
    }
    out
}

/// The command line for the login shell: `script` run by `sh` with `args`
/// as `$1`, `$2`, ...
fn command(script: &str, args: &[impl AsRef<str>]) -> String {
    let mut cmd = format!("exec sh -c '{BOOT}' rill '{}'", escape(script.as_bytes()));
    for a in args {
        cmd.push_str(" '");
        cmd.push_str(&escape(a.as_ref().as_bytes()));
        cmd.push('\'');
    }
    cmd
}

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
    nonce: &Nonce,
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
        nonce.as_str().to_owned(),
        seconds(stream_poll),
    ]);
    program(FOLLOW, &args)
}

/// Which old file a finish reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldFile {
    /// The entry of the log's directory with this inode (a renamed file).
    Inode(u64),
    /// The newest file of the directory, other than the log itself, whose
    /// first bytes match (a copytruncate copy).
    Copy,
}

/// The command that reads an old file of `path`'s directory from `offset`
/// in chunks until it stops growing (`RILL-FINAL <size>`), with the same
/// header as a follow; `RILL-GONE` instead of a header when no file there is
/// at least `offset` long with first bytes matching `verify`.
pub fn finish_command(
    path: &str,
    old: OldFile,
    verify: Verify,
    offset: u64,
    interval: Duration,
) -> String {
    let ino = match old {
        OldFile::Inode(ino) => ino.to_string(),
        OldFile::Copy => "-".to_owned(),
    };
    let mut args = common_args(path, interval);
    args.extend([
        ino,
        verify.len.to_string(),
        verify.fp.to_string(),
        offset.to_string(),
    ]);
    program(FINISH, &args)
}

/// A control line: on stderr (stream mode) or in the stream (chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The path now names another inode, or nothing.
    Rotated,
    /// The file being drained stopped growing at this size.
    Final(u64),
    /// The file being read by name is no longer in the directory.
    Gone,
    /// The file shrank or its first bytes changed: it was truncated.
    Truncated,
    /// The file grew to a full fingerprint: verify it by this from now on.
    Fingerprint(Verify),
    /// The file at the path is now this long (reported when it changes).
    Size(u64),
    /// The script is alive (once per interval, however quiet the file).
    Tick,
}

/// Parses one control line; `None` for anything else (a real error message).
pub fn parse_control(line: &str) -> Option<Control> {
    let mut words = line.split_ascii_whitespace();
    let tag = words.next()?;
    let mut num = || words.next()?.parse::<u64>().ok();
    match tag {
        "RILL-ROTATED" => Some(Control::Rotated),
        "RILL-FINAL" => num().map(Control::Final),
        "RILL-GONE" => Some(Control::Gone),
        "RILL-TRUNCATED" => Some(Control::Truncated),
        "RILL-SIZE" => num().map(Control::Size),
        "RILL-TICK" => Some(Control::Tick),
        "RILL-FP" => {
            let len = num()?;
            let fp = u32::try_from(num()?).ok()?;
            Some(Control::Fingerprint(Verify { len, fp }))
        }
        _ => None,
    }
}

/// How the script sends the bytes after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stream,
    Chunks,
}

/// The script's first line(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The file does not exist yet (nor, with `dir_missing`, its folder);
    /// the script waits for it.
    Waiting { dir_missing: bool },
    /// Reading the file `dev`/`ino` from byte `start`.
    Following {
        dev: u64,
        ino: u64,
        verify: Verify,
        start: u64,
        mode: Mode,
    },
    /// (finish) The old file is not there any more.
    Gone,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unexpected output from the follow script: {0:?}")]
pub struct HeaderError(pub String);

pub fn parse_header(line: &[u8]) -> Result<Header, HeaderError> {
    let text = String::from_utf8_lossy(line);
    let err = || HeaderError(text.clone().into_owned());
    match text.as_ref() {
        "RILL-WAIT" => return Ok(Header::Waiting { dir_missing: false }),
        "RILL-WAIT-DIR" => return Ok(Header::Waiting { dir_missing: true }),
        "RILL-GONE" => return Ok(Header::Gone),
        _ => {}
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let [tag, dev, ino, vn, fp, start, mode] = words[..] else {
        return Err(err());
    };
    if tag != "RILL" {
        return Err(err());
    }
    let num = |w: &str| w.parse::<u64>().map_err(|_| err());
    let mode = match mode {
        "stream" => Mode::Stream,
        "chunks" => Mode::Chunks,
        _ => return Err(err()),
    };
    Ok(Header::Following {
        dev: num(dev)?,
        ino: num(ino)?,
        verify: Verify {
            len: num(vn)?,
            fp: u32::try_from(num(fp)?).map_err(|_| err())?,
        },
        start: num(start)?,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{ChunkDecoder, Piece, StreamFilter};
    use std::io::{BufRead, Read, Write};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Instant;

    const IV: Duration = Duration::from_millis(200);

    /// Strings a careless or hostile config could hold: every placeholder
    /// the scripts ever used, shell syntax, quotes, escapes, newlines.
    const HOSTILE: [&str; 14] = [
        "@PATH@ @DIR@ @BASE@ @IV@ @FPB@ @CHUNK@ @START@ @MODE@ @NONCE@",
        "@STREAM_POLL@ @PRELUDE@ @BODY@ @INO@ @VLEN@ @VFP@ @OFFSET@",
        "x'; touch RILLPWN; echo '",
        "$(touch RILLPWN) `touch RILLPWN` ${HOME} $HOME",
        "\"double\" \\back\\slash \\c \\0101 %s %b %%",
        "bang! !! !$ history",
        "new\nline\n",
        "\ttab and trailing space ",
        "-n",
        "",
        "caf\u{e9} \u{1f600}",
        "a;b&&c||d|e>f<g",
        "{a,b} [x] * ? ~root #hash",
        "\u{7f}\u{1}\u{1b}[31m",
    ];

    /// The login shells a server account may have, each with the PATH its
    /// `sh` comes from. Tests run them all; a missing one fails (the test
    /// command installs them).
    fn login_shells() -> Vec<(String, Shell)> {
        vec![
            ("sh".to_owned(), Shell::Posix),
            ("bash".to_owned(), Shell::Posix),
            ("sh".to_owned(), busybox()),
            (which("tcsh"), Shell::Posix),
        ]
    }

    fn which(name: &str) -> String {
        rill_test_support::which(name).display().to_string()
    }

    #[test]
    fn every_login_shell_hands_the_script_its_arguments_unchanged() {
        let script = r#"for a in "$@"; do printf '<%s>' "$a" | od -An -c; done"#;
        let expected = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .args(HOSTILE)
            .output()
            .unwrap()
            .stdout;
        for (login, shell) in login_shells() {
            let mut cmd = match &shell {
                Shell::Posix => Command::new(&login),
                Shell::BusyBox(applets) => {
                    let mut c = Command::new(applets.path().join(&login));
                    c.env("PATH", applets.path());
                    c
                }
            };
            let dir = tempfile::tempdir().unwrap();
            let out = cmd
                .current_dir(dir.path())
                .arg("-c")
                .arg(command(script, &HOSTILE))
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&expected),
                "under {login}: stderr {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn the_command_line_holds_nothing_a_login_shell_interprets_in_quotes() {
        let cmd = follow_command(
            &HOSTILE.concat(),
            StartAt::End,
            (IV, IV),
            Reading::Auto,
            &Nonce::random(),
        );
        // Outside its quotes only `exec sh -c` and `rill`; inside, no quote,
        // backslash other than \0ooo, `!` or newline.
        let words: Vec<&str> = cmd.split('\'').collect();
        assert_eq!(words[0], "exec sh -c ");
        assert!(words
            .iter()
            .skip(2)
            .step_by(2)
            .all(|w| w.trim().is_empty() || *w == " rill "));
        for w in words.iter().skip(1).step_by(2) {
            assert!(!w.contains(['!', '\n', '\'']), "{w}");
            let b = w.as_bytes();
            for (i, _) in w.match_indices('\\') {
                assert!(b.len() > i + 4 && b[i + 1] == b'0', "{w}");
                assert!(
                    b[i + 2..i + 5].iter().all(|c| (b'0'..=b'7').contains(c)),
                    "{w}"
                );
            }
        }
    }

    #[test]
    fn shellcheck_finds_nothing_in_the_scripts() {
        for (name, kind) in [("follow", FOLLOW), ("finish", FINISH)] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(format!("{name}.sh"));
            std::fs::write(&file, [COMMON, kind, RUN].concat()).unwrap();
            let out = Command::new(which("shellcheck"))
                .args(["--shell=sh", "--severity=style"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "shellcheck on {name}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    #[test]
    fn intervals_render_as_sleep_takes_them() {
        assert_eq!(seconds(Duration::from_secs(1)), "1");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.25");
    }

    #[test]
    fn nonces_name_the_same_file_differently_each_time() {
        let (a, b) = (Nonce::random(), Nonce::random());
        assert_ne!(a, b);
        for n in [&a, &b, &Nonce::from_bits(u64::MAX)] {
            // Never a leading "//" (implementation-defined in POSIX).
            assert!(n.as_str().starts_with("/./") || n.as_str() == "/.");
            let p = format!("{}/etc/hostname", n.as_str());
            assert_eq!(
                std::fs::canonicalize(&p).unwrap(),
                Path::new("/etc/hostname")
            );
        }
    }

    #[test]
    fn headers_and_controls_parse() {
        assert_eq!(
            parse_header(b"RILL-WAIT"),
            Ok(Header::Waiting { dir_missing: false })
        );
        assert_eq!(
            parse_header(b"RILL-WAIT-DIR"),
            Ok(Header::Waiting { dir_missing: true })
        );
        assert_eq!(
            parse_header(b"RILL 2049 131 64 3735928559 42 stream"),
            Ok(Header::Following {
                dev: 2049,
                ino: 131,
                verify: Verify {
                    len: 64,
                    fp: 0xdeadbeef
                },
                start: 42,
                mode: Mode::Stream,
            })
        );
        assert!(parse_header(b"sh: ls: not found").is_err());
        assert!(parse_header(b"RILL 1 2 3 4 5").is_err());
        assert!(parse_header(b"RILL 1 2 3 4 5 sideways").is_err());
        assert_eq!(parse_control("RILL-FINAL 12"), Some(Control::Final(12)));
        assert_eq!(
            parse_control("RILL-FP 64 9"),
            Some(Control::Fingerprint(Verify { len: 64, fp: 9 }))
        );
        assert_eq!(parse_control("RILL-SIZE 7"), Some(Control::Size(7)));
        assert_eq!(parse_control("RILL-TICK"), Some(Control::Tick));
        assert_eq!(parse_control("RILL-FINAL x"), None);
        assert_eq!(parse_control("cat: oops"), None);
    }

    /// A script running locally under `sh`, as sshd would run it: its output
    /// decoded the way the tap decodes it.
    struct Local {
        child: std::process::Child,
        out: mpsc::Receiver<Vec<u8>>,
        err: mpsc::Receiver<String>,
        head: Vec<u8>,
        header: Option<Header>,
        decoder: Option<Decoder>,
        pieces: Vec<Piece>,
        stderr: Vec<String>,
        /// Keeps BusyBox's applet folder while the script runs.
        _shell: Shell,
        /// The script's working directory: must stay empty.
        cwd: tempfile::TempDir,
    }

    enum Decoder {
        Stream(Box<StreamFilter>),
        Chunks(ChunkDecoder),
    }

    /// Where the script runs: this machine's `sh` and tools, or BusyBox's
    /// `sh` with nothing but BusyBox applets on its PATH (a BusyBox host).
    enum Shell {
        Posix,
        BusyBox(tempfile::TempDir),
    }

    fn busybox() -> Shell {
        let busybox = which("busybox");
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(&busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            std::os::unix::fs::symlink(&busybox, dir.path().join(applet)).unwrap();
        }
        Shell::BusyBox(dir)
    }

    impl Local {
        fn start_on(shell: Shell, script: String, nonce: &Nonce) -> Local {
            let mut cmd = match &shell {
                Shell::Posix => Command::new("sh"),
                Shell::BusyBox(applets) => {
                    let mut c = Command::new(applets.path().join("sh"));
                    c.env("PATH", applets.path());
                    c
                }
            };
            let cwd = tempfile::tempdir().unwrap();
            let mut child = cmd
                .current_dir(cwd.path())
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (otx, out) = mpsc::channel();
            let mut stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 || otx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
            let (etx, err) = mpsc::channel();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if etx.send(line).is_err() {
                        break;
                    }
                }
            });
            let _ = nonce;
            Local {
                child,
                out,
                err,
                head: Vec::new(),
                header: None,
                decoder: None,
                pieces: Vec::new(),
                stderr: Vec::new(),
                _shell: shell,
                cwd,
            }
        }

        fn take(&mut self, mut bytes: &[u8], nonce: &Nonce) {
            while self.decoder.is_none() {
                let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                    self.head.extend_from_slice(bytes);
                    return;
                };
                self.head.extend_from_slice(&bytes[..nl]);
                bytes = &bytes[nl + 1..];
                let h = parse_header(&std::mem::take(&mut self.head)).unwrap();
                self.header = Some(h);
                match h {
                    Header::Following { mode, start, .. } => {
                        self.decoder = Some(match mode {
                            Mode::Stream => Decoder::Stream(Box::new(StreamFilter::new(nonce))),
                            Mode::Chunks => Decoder::Chunks(ChunkDecoder::new(start)),
                        })
                    }
                    Header::Waiting { .. } => {}
                    Header::Gone => return,
                }
            }
            match self.decoder.as_mut().unwrap() {
                Decoder::Stream(f) => f.feed(bytes, &mut self.pieces),
                Decoder::Chunks(d) => d.feed(bytes, &mut self.pieces).unwrap(),
            }
        }

        /// Collects output until `done` holds, or fails after 10 s.
        fn until(&mut self, nonce: &Nonce, mut done: impl FnMut(&Local) -> bool) {
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                while let Ok(b) = self.out.try_recv() {
                    self.take(&b, nonce);
                }
                while let Ok(l) = self.err.try_recv() {
                    self.stderr.push(l);
                }
                if done(self) {
                    return;
                }
                assert!(
                    Instant::now() < end,
                    "gave up: header {:?}, data {:?}, controls {:?}, stderr {:?}",
                    self.header,
                    String::from_utf8_lossy(&self.data()),
                    self.controls(),
                    self.stderr
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        fn data(&self) -> Vec<u8> {
            self.pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Data(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect()
        }

        /// Control records from the stream and from stderr, in arrival order
        /// per source, size reports and ticks left out.
        fn controls(&self) -> Vec<Control> {
            self.all_controls()
                .into_iter()
                .filter(|c| !matches!(c, Control::Size(_) | Control::Tick))
                .collect()
        }

        fn all_controls(&self) -> Vec<Control> {
            let mut c: Vec<Control> = self
                .pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Control(c) => Some(*c),
                    _ => None,
                })
                .collect();
            c.extend(self.stderr.iter().filter_map(|l| parse_control(l)));
            c
        }

        /// The data that came before the first control record in the stream
        /// (size reports aside).
        fn data_before_control(&self) -> Vec<u8> {
            self.pieces
                .iter()
                .take_while(|p| matches!(p, Piece::Data(_) | Piece::Control(Control::Size(_))))
                .filter_map(|p| match p {
                    Piece::Data(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect()
        }

        /// Closes stdin, as sshd does when the channel closes; the script
        /// must end by itself.
        fn close(mut self) {
            drop(self.child.stdin.take());
            let end = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < end, "script outlived its stdin");
                std::thread::sleep(Duration::from_millis(20));
            }
            let made: Vec<_> = std::fs::read_dir(self.cwd.path()).unwrap().collect();
            assert!(made.is_empty(), "the script made files: {made:?}");
        }
    }

    fn append(path: &Path, data: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(data)
            .unwrap();
    }

    /// How a host runs the follow script: GNU tools (stream mode), GNU
    /// tools forced to chunks, BusyBox only (chunks, found by itself).
    #[derive(Clone, Copy, Debug)]
    enum On {
        Gnu,
        GnuChunks,
        BusyBox,
    }

    const EVERY_HOST: [(On, Mode); 3] = [
        (On::Gnu, Mode::Stream),
        (On::GnuChunks, Mode::Chunks),
        (On::BusyBox, Mode::Chunks),
    ];

    fn follow(path: &Path, start: StartAt, on: On) -> (Local, Nonce) {
        let nonce = Nonce::random();
        let reading = match on {
            On::GnuChunks => Reading::Chunks,
            _ => Reading::Auto,
        };
        let script = follow_command(
            path.to_str().unwrap(),
            start,
            (IV, Duration::from_millis(20)),
            reading,
            &nonce,
        );
        (Local::start_on(shell_for(on), script, &nonce), nonce)
    }

    /// The shell a host of kind `on` runs scripts with.
    fn shell_for(on: On) -> Shell {
        match on {
            On::BusyBox => busybox(),
            On::Gnu | On::GnuChunks => Shell::Posix,
        }
    }

    /// What a checkpoint holds to recognise `path`'s file: its verification,
    /// as the follow script reports it.
    fn verify_of(path: &Path, on: On) -> Verify {
        let (mut l, n) = follow(path, StartAt::End, on);
        l.until(&n, |l| l.header.is_some());
        let verify = following(&l).unwrap().2;
        l.close();
        verify
    }

    fn following(l: &Local) -> Option<(u64, u64, Verify, u64, Mode)> {
        match l.header {
            Some(Header::Following {
                dev,
                ino,
                verify,
                start,
                mode,
            }) => Some((dev, ino, verify, start, mode)),
            _ => None,
        }
    }

    #[test]
    fn the_script_names_the_file_and_resumes_only_into_the_same_one() {
        for (on, mode) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("odd name 'q' $x.log");
            let body = "0123456789".repeat(10) + "\nsecond\n";
            std::fs::write(&path, &body).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| l.header.is_some());
            let (dev, ino, verify, start, got_mode) = following(&l).unwrap();
            assert_eq!((dev, ino), (meta.dev(), meta.ino()));
            assert_eq!(verify.len, 64);
            assert_eq!(start, body.len() as u64);
            assert_eq!(got_mode, mode, "{on:?}");
            l.close();

            let resume = |verify| StartAt::Resume {
                ino: meta.ino(),
                offset: 101,
                verify,
            };
            let (mut l, n) = follow(&path, resume(verify), on);
            l.until(&n, |l| l.data() == b"second\n");
            assert_eq!(following(&l).unwrap().3, 101);
            // The file's size is reported, for the lag in `rill status`.
            l.until(&n, |l| {
                l.all_controls().contains(&Control::Size(body.len() as u64))
            });
            l.close();
            // Other first bytes (a reused inode) or another inode: from 0.
            for start in [
                resume(Verify { len: 64, fp: 12345 }),
                StartAt::Resume {
                    ino: meta.ino() + 1,
                    offset: 101,
                    verify,
                },
            ] {
                let (mut l, n) = follow(&path, start, on);
                l.until(&n, |l| l.data() == body.as_bytes());
                assert_eq!(following(&l).unwrap().3, 0);
                l.close();
            }
        }
    }

    #[test]
    fn a_short_file_is_verified_by_what_it_had_and_upgraded_at_64_bytes() {
        for (on, _) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.log");
            std::fs::write(&path, "short\n").unwrap();
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| l.header.is_some());
            let verify = following(&l).unwrap().2;
            assert_eq!(verify.len, 6);
            append(&path, "x".repeat(70).as_bytes());
            append(&path, b"\n");
            l.until(&n, |l| {
                l.controls()
                    .iter()
                    .any(|c| matches!(c, Control::Fingerprint(v) if v.len == 64))
            });
            l.close();
            // Resuming with the short verification works.
            let (mut l, n) = follow(
                &path,
                StartAt::Resume {
                    ino: std::fs::metadata(&path).unwrap().ino(),
                    offset: 6,
                    verify,
                },
                on,
            );
            l.until(&n, |l| l.data().len() == 71);
            l.close();
        }
    }

    #[test]
    fn a_renamed_file_is_drained_and_its_final_size_reported() {
        for (on, _) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.log");
            append(&path, b"");
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| l.header.is_some());
            append(&path, b"one\n");
            l.until(&n, |l| l.data() == b"one\n");
            // logrotate's create mode: rename, create anew; the writer still
            // appends to the old inode before it is signalled, even after
            // the old file was deleted (the script holds it open).
            let old = dir.path().join("app.log.1");
            std::fs::rename(&path, &old).unwrap();
            append(&path, b"");
            append(&old, b"two\n");
            let mut w = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
            l.until(&n, |l| l.controls().contains(&Control::Rotated));
            std::fs::remove_file(&old).unwrap();
            w.write_all(b"three\n").unwrap();
            let all = b"one\ntwo\nthree\n";
            l.until(&n, |l| {
                l.data() == all && l.controls().contains(&Control::Final(all.len() as u64))
            });
            assert_eq!(l.controls()[0], Control::Rotated);
            l.close();
        }
    }

    /// copytruncate: the copy is made, the file truncated and written again.
    /// Both readers must say where the old bytes end.
    #[test]
    fn a_truncation_is_reported_exactly_where_the_old_bytes_end() {
        for (on, mode) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.log");
            let old = "a".repeat(80) + "\nold line\n";
            std::fs::write(&path, &old).unwrap();
            let (mut l, n) = follow(&path, StartAt::Beginning, on);
            l.until(&n, |l| l.data() == old.as_bytes());
            std::fs::copy(&path, dir.path().join("app.log.1")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            append(&path, b"new line\n");
            l.until(&n, |l| l.controls().contains(&Control::Truncated));
            assert_eq!(l.data_before_control(), old.as_bytes(), "{on:?} {mode:?}");
            l.close();
        }
    }

    #[test]
    fn a_file_that_is_not_there_yet_nor_its_folder_is_waited_for() {
        for (on, _) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("later/app.log");
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| {
                l.header == Some(Header::Waiting { dir_missing: true })
            });
            std::fs::create_dir(dir.path().join("later")).unwrap();
            append(&path, b"first\n");
            l.until(&n, |l| l.data() == b"first\n");
            assert_eq!(following(&l).unwrap().3, 0, "a new file is read from 0");
            l.close();
        }
    }

    fn finish(path: &Path, old: OldFile, verify: Verify, offset: u64) -> (Local, Nonce) {
        finish_on(path, old, verify, offset, On::Gnu)
    }

    fn finish_on(path: &Path, old: OldFile, verify: Verify, offset: u64, on: On) -> (Local, Nonce) {
        let nonce = Nonce::random();
        let cmd = finish_command(path.to_str().unwrap(), old, verify, offset, IV);
        (Local::start_on(shell_for(on), cmd, &nonce), nonce)
    }

    #[test]
    fn finish_reads_an_old_file_by_inode_or_a_copy_by_its_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let body = "x".repeat(70) + "\nlast\n";
        append(&path, body.as_bytes());
        let ino = std::fs::metadata(&path).unwrap().ino();
        let verify = verify_of(&path, On::Gnu);
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        append(&path, b"new file\n");

        let (mut l, n) = finish(&path, OldFile::Inode(ino), verify, 71);
        l.until(&n, |l| {
            l.controls().contains(&Control::Final(body.len() as u64))
        });
        assert_eq!(l.data(), b"last\n");
        assert_eq!(following(&l).unwrap().3, 71);
        l.close();

        // A copy (another inode) with the same first bytes.
        std::fs::copy(&rotated, dir.path().join("copy")).unwrap();
        std::fs::remove_file(&rotated).unwrap();
        let (mut l, n) = finish(&path, OldFile::Copy, verify, 71);
        l.until(&n, |l| {
            l.controls().contains(&Control::Final(body.len() as u64))
        });
        assert_eq!(l.data(), b"last\n");
        l.close();

        // Nothing matching (other first bytes, or shorter than the offset).
        for (old, verify, offset) in [
            (OldFile::Copy, Verify { len: 64, fp: 1 }, 71),
            (OldFile::Copy, verify, 1000),
            (OldFile::Inode(ino), verify, 71),
        ] {
            let (mut l, n) = finish(&path, old, verify, offset);
            l.until(&n, |l| l.header.is_some());
            assert_eq!(l.header, Some(Header::Gone));
            l.close();
        }
    }

    /// A folder name with a newline, quotes, shell syntax and every
    /// placeholder the scripts ever used.
    const HOSTILE_DIR: &str = "d @DIR@ @BASE@;touch RILLPWN;# $(touch RILLPWN) 'q'\nz";

    /// A fresh [`HOSTILE_DIR`] in a temp dir (kept while the first lives).
    fn hostile_dir() -> (tempfile::TempDir, std::path::PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join(HOSTILE_DIR);
        std::fs::create_dir(&dir).unwrap();
        (top, dir)
    }

    /// Regression: `@BASE@` in a path closed the script's quotes (a command
    /// ran on the server) and `@IV@` was rewritten (another file followed).
    #[test]
    fn hostile_folder_and_file_names_are_followed_literally() {
        let names = [
            "x@BASE@;touch RILLPWN;#",
            "t@IV@.log",
            "@PATH@@DIR@@FPB@@CHUNK@",
            "$(touch RILLPWN)`touch RILLPWN`",
            "it's \"q\" \\ !",
            " lead\nnew",
        ];
        for (on, _) in EVERY_HOST {
            let (top, dir) = hostile_dir();
            // What a substitution would have turned the names into.
            for decoy in ["t0.2.log", "t.log", "x", "d", "64"] {
                std::fs::write(dir.join(decoy), "decoy\n").unwrap();
            }
            for name in names {
                let path = dir.join(name);
                let body = format!("the line of {name:?}\n");
                std::fs::write(&path, &body).unwrap();
                let (mut l, n) = follow(&path, StartAt::Beginning, on);
                l.until(&n, |l| l.data() == body.as_bytes());
                let meta = std::fs::metadata(&path).unwrap();
                assert_eq!(following(&l).unwrap().1, meta.ino(), "{on:?} {name:?}");
                l.close();
            }
            let made: Vec<_> = walk(top.path())
                .into_iter()
                .filter(|p| p.file_name().is_some_and(|n| n == "RILLPWN"))
                .collect();
            assert!(made.is_empty(), "{on:?}: a name ran as a command: {made:?}");
        }
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
            out.push(e.path());
        }
        out
    }

    /// Regression: a rotated file was found by parsing `ls -ai` with
    /// `read -r i n`, which lost a name with a newline or a leading blank.
    #[test]
    fn finish_finds_a_renamed_file_by_inode_whatever_its_new_name() {
        for (on, _) in EVERY_HOST {
            for rotated in ["app.log.1\nx", " app.log.1", "app.log.1 ", "-n", "a\\b"] {
                let (_top, dir) = hostile_dir();
                let path = dir.join("app.log");
                let head = "h".repeat(70) + "\n";
                append(&path, head.as_bytes());
                let ino = std::fs::metadata(&path).unwrap().ino();
                let verify = verify_of(&path, on);
                // The tap is down: the file is written, renamed, replaced.
                append(&path, b"written while down\n");
                std::fs::rename(&path, dir.join(rotated)).unwrap();
                append(&path, b"the new file\n");
                let (mut l, n) = finish_on(&path, OldFile::Inode(ino), verify, 71, on);
                l.until(&n, |l| l.controls().contains(&Control::Final(90)));
                assert_eq!(l.data(), b"written while down\n", "{on:?} {rotated:?}");
                assert_eq!(following(&l).unwrap().1, ino);
                l.close();
            }
        }
    }

    #[test]
    fn a_copytruncate_copy_is_found_whatever_its_name() {
        for (on, _) in EVERY_HOST {
            let (_top, dir) = hostile_dir();
            let path = dir.join("app.log");
            let body = "c".repeat(70) + "\nlast\n";
            append(&path, body.as_bytes());
            let verify = verify_of(&path, on);
            let copy = dir.join(" app.log.1\n$(touch RILLPWN)");
            std::fs::copy(&path, &copy).unwrap();
            std::fs::write(&path, "").unwrap();
            let (mut l, n) = finish_on(&path, OldFile::Copy, verify, 71, on);
            l.until(&n, |l| {
                l.controls().contains(&Control::Final(body.len() as u64))
            });
            assert_eq!(l.data(), b"last\n", "{on:?}");
            assert_eq!(
                following(&l).unwrap().1,
                std::fs::metadata(&copy).unwrap().ino()
            );
            l.close();
        }
    }
}
