//! The scripts run locally under sh, bash, BusyBox and tcsh, their output
//! decoded as the tap decodes it.

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::shells::{busybox, Shell, IV};
use super::*;

mod finish;
mod follow;
mod hostile;
mod list;

/// What `stdout` says, as it comes, from a thread of its own.
fn read_on_a_thread(mut stdout: std::process::ChildStdout) -> mpsc::Receiver<Vec<u8>> {
    let (tx, out) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    out
}

/// A script running locally under `sh`, as sshd would run it: its output
/// decoded the way the tap decodes it.
struct Local {
    child: std::process::Child,
    out: mpsc::Receiver<Vec<u8>>,
    err: mpsc::Receiver<String>,
    header: Option<Header>,
    output: Output,
    pieces: Vec<Piece>,
    stderr: Vec<String>,
    /// Keeps BusyBox's applet folder while the script runs.
    _shell: Shell,
    /// The script's working directory: must stay empty.
    cwd: tempfile::TempDir,
}

impl Local {
    fn start_on(shell: Shell, script: String, pass: Option<Claim>) -> Local {
        let mut cmd = shell.sh();
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
        let out = read_on_a_thread(child.stdout.take().unwrap());
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
        Local {
            child,
            out,
            err,
            header: None,
            output: Output::new(pass),
            pieces: Vec::new(),
            stderr: Vec::new(),
            _shell: shell,
            cwd,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        let mut pieces = Vec::new();
        self.output.feed(bytes, &mut pieces).unwrap();
        for p in pieces {
            match p {
                Piece::Header(h) => self.header = Some(h),
                p => self.pieces.push(p),
            }
        }
    }

    /// Collects output until `done` holds, or fails after 10 s.
    fn until(&mut self, mut done: impl FnMut(&Local) -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            while let Ok(b) = self.out.try_recv() {
                self.take(&b);
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
        super::output::data(&self.pieces)
    }

    /// Control records from the stream and from stderr, in arrival order
    /// per source, size reports and ticks left out.
    fn controls(&self) -> Vec<Control> {
        self.all_controls()
            .into_iter()
            .filter(|c| !matches!(c, Control::Size(_) | Control::Tick | Control::Pid(_)))
            .collect()
    }

    /// The claims of stream mode ([`Claim`]), in order.
    fn claims(&self) -> Vec<Claim> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Claim(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// The reader said the file was truncated: `RILL-TRUNCATED` (chunks)
    /// or tail's message (stream).
    fn truncation(&self) -> bool {
        self.controls().contains(&Control::Truncated) || self.claims().iter().any(|c| c.truncated)
    }

    /// The process holding the file open (`RILL-PID`), once said.
    fn holder(&self) -> Option<u32> {
        self.all_controls().into_iter().find_map(|c| match c {
            Control::Pid(p) => Some(p),
            _ => None,
        })
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

/// Truncates `path` to 0 bytes, as copytruncate does.
fn empty(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
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

fn follow(path: &Path, start: StartAt, on: On) -> Local {
    follow_settling(path, start, on, None)
}

/// A follow from `start` that settles `claim`, where the last reader
/// stopped.
fn follow_settling(path: &Path, start: StartAt, on: On, claim: Option<Claim>) -> Local {
    let reading = match on {
        On::GnuChunks => Reading::Chunks,
        _ => Reading::Auto,
    };
    let script = follow_command(
        path.to_str().unwrap(),
        start,
        (IV, Duration::from_millis(20)),
        reading,
        claim.as_ref(),
    );
    Local::start_on(shell_for(on), script, claim)
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
    let mut l = follow(path, StartAt::End, on);
    l.until(|l| l.header.is_some());
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

fn finish(path: &Path, old: OldFile, verify: Verify, offset: u64) -> Local {
    finish_on(path, old, verify, offset, On::Gnu)
}

fn finish_on(path: &Path, old: OldFile, verify: Verify, offset: u64, on: On) -> Local {
    finish_among(path, (old, &[]), verify, offset, on)
}

/// A finish of `path`'s old file where `others` are the other logs
/// followed in its folder.
fn finish_among(
    path: &Path,
    (old, others): (OldFile, &[String]),
    verify: Verify,
    offset: u64,
    on: On,
) -> Local {
    let cmd = finish_command(path.to_str().unwrap(), (old, others), verify, offset, IV);
    Local::start_on(shell_for(on), cmd, None)
}
