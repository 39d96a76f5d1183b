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

#[test]
fn the_script_names_the_file_and_resumes_only_into_the_same_one() {
    for (on, mode) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd name 'q' $x.log");
        let body = "0123456789".repeat(10) + "\nsecond\n";
        std::fs::write(&path, &body).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some());
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
        let mut l = follow(&path, resume(verify), on);
        l.until(|l| l.data() == b"second\n");
        assert_eq!(following(&l).unwrap().3, 101);
        // The file's size is reported, for the lag in `rill status`.
        l.until(|l| l.all_controls().contains(&Control::Size(body.len() as u64)));
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
            let mut l = follow(&path, start, on);
            l.until(|l| l.data() == body.as_bytes());
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
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some());
        let verify = following(&l).unwrap().2;
        assert_eq!(verify.len, 6);
        append(&path, "x".repeat(70).as_bytes());
        append(&path, b"\n");
        l.until(|l| {
            l.controls()
                .iter()
                .any(|c| matches!(c, Control::Fingerprint(v) if v.len == 64))
        });
        l.close();
        // Resuming with the short verification works.
        let mut l = follow(
            &path,
            StartAt::Resume {
                ino: std::fs::metadata(&path).unwrap().ino(),
                offset: 6,
                verify,
            },
            on,
        );
        l.until(|l| l.data().len() == 71);
        l.close();
    }
}

#[test]
fn a_renamed_file_is_drained_and_its_final_size_reported() {
    for (on, _) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, b"");
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some());
        append(&path, b"one\n");
        l.until(|l| l.data() == b"one\n");
        // logrotate's create mode: rename, create anew; the writer still
        // appends to the old inode before it is signalled, even after
        // the old file was deleted (the script holds it open).
        let old = dir.path().join("app.log.1");
        std::fs::rename(&path, &old).unwrap();
        append(&path, b"");
        append(&old, b"two\n");
        let mut w = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        l.until(|l| l.controls().contains(&Control::Rotated));
        std::fs::remove_file(&old).unwrap();
        w.write_all(b"three\n").unwrap();
        let all = b"one\ntwo\nthree\n";
        l.until(|l| l.data() == all && l.controls().contains(&Control::Final(all.len() as u64)));
        assert_eq!(l.controls()[0], Control::Rotated);
        l.close();
    }
}

/// logrotate `compress` without `delaycompress`: the file is renamed and
/// deleted at once. The reader that drained it holds it open until its
/// channel closes, and a finish reads the rest through it.
#[test]
fn a_deleted_file_is_read_through_the_script_that_holds_it() {
    for (on, _) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, b"");
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some() && l.holder().is_some());
        let body = "h".repeat(70) + "\nsecond\nthird\n";
        append(&path, body.as_bytes());
        l.until(|l| l.data() == body.as_bytes());
        let ino = std::fs::metadata(&path).unwrap().ino();
        let verify = verify_of(&path, on);
        std::fs::remove_file(&path).unwrap();
        l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
        // Drained, and still holding it: a finish from "second" on.
        let pid = l.holder().unwrap();
        let old = OldFile::Held { ino, pid };
        let mut f = finish_among(&path, (old, &[]), verify, 71, on);
        f.until(|f| f.controls().contains(&Control::Final(body.len() as u64)));
        assert_eq!(f.data(), b"second\nthird\n", "{on:?}");
        f.close();
        l.close();
        // Once the holder is gone (within a poll of its channel closing):
        // by inode, and gone.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < end,
                "the holder outlived its channel"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut f = finish_among(&path, (old, &[]), verify, 71, on);
        f.until(|f| f.header.is_some());
        assert_eq!(f.header, Some(Header::Gone), "{on:?}");
        f.close();
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
        let mut l = follow(&path, StartAt::Beginning, on);
        l.until(|l| l.data() == old.as_bytes());
        std::fs::copy(&path, dir.path().join("app.log.1")).unwrap();
        empty(&path);
        append(&path, b"new line\n");
        l.until(Local::truncation);
        assert_eq!(l.data_before_control(), old.as_bytes(), "{on:?} {mode:?}");
        if mode == Mode::Stream {
            assert_eq!(l.claims()[0].at, old.len() as u64);
        }
        l.close();
    }
}

/// A file empty at its start that grows and is rotated within one poll
/// is still known by its full fingerprint before its final size: what a
/// search for its compressed rotation matches it by.
#[test]
fn a_file_rotated_as_it_grows_is_fingerprinted_before_its_end() {
    for (on, mode) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, b"");
        let mut l = follow(&path, StartAt::Beginning, on);
        l.until(|l| l.header.is_some());
        append(&path, "x".repeat(100).as_bytes());
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        l.until(|l| l.controls().contains(&Control::Final(100)));
        let controls = l.controls();
        let fp = controls
            .iter()
            .position(|c| matches!(c, Control::Fingerprint(v) if v.len == 64));
        let end = controls.iter().position(|c| *c == Control::Final(100));
        assert!(fp < end && fp.is_some(), "{on:?} {mode:?}: {controls:?}");
        l.close();
    }
}

/// A log line that reads like tail's message stops the stream reader
/// where it stands; the next reader, resumed at the last line's end with
/// the claim, finds it in the file and reads it as a line.
#[test]
fn a_log_line_like_tails_message_is_read_as_a_line_by_the_next_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let forged = "tail: /dev/fd/4: file truncated\n";
    let body = format!("{}\nfirst\n{forged}after\n", "a".repeat(80));
    std::fs::write(&path, &body).unwrap();
    let mut l = follow(&path, StartAt::Beginning, On::Gnu);
    l.until(|l| !l.claims().is_empty());
    let claim = l.claims()[0].clone();
    let at = body.find(forged).unwrap() as u64;
    assert_eq!((claim.at, claim.truncated), (at, true));
    let (_, ino, verify, _, _) = following(&l).unwrap();
    l.close();
    let resume = StartAt::Resume {
        ino,
        offset: 81,
        verify,
    };
    let mut l = follow_settling(&path, resume, On::Gnu, Some(claim.clone()));
    l.until(|l| l.data().ends_with(b"after\n"));
    assert_eq!(following(&l).unwrap().3, 81, "resumed, not read from 0");
    assert_eq!(l.data(), &body.as_bytes()[81..]);
    assert!(l.claims().is_empty());
    // The same text again further on is a claim again.
    append(&path, forged.as_bytes());
    l.until(|l| !l.claims().is_empty());
    assert_eq!(l.claims()[0].at, body.len() as u64);
    l.close();
}

/// A real truncation whose file grew back past the old offset with the
/// same first bytes: the resume point alone would pass; the claim test
/// sends the file from 0.
#[test]
fn a_truncated_file_grown_back_is_read_again_from_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let head = "a".repeat(80) + "\n";
    std::fs::write(&path, format!("{head}an old line, longer than the new\n")).unwrap();
    let mut l = follow(&path, StartAt::Beginning, On::Gnu);
    l.until(|l| l.data().ends_with(b"new\n"));
    empty(&path);
    append(&path, format!("{head}new\n").as_bytes());
    l.until(Local::truncation);
    let claim = l.claims()[0].clone();
    let (_, ino, verify, _, _) = following(&l).unwrap();
    l.close();
    append(&path, b"more new lines, past the old end\n");
    let resume = StartAt::Resume {
        ino,
        offset: claim.at,
        verify,
    };
    let mut l = follow_settling(&path, resume, On::Gnu, Some(claim));
    l.until(|l| l.data().ends_with(b"end\n"));
    assert_eq!(following(&l).unwrap().3, 0, "read again from 0");
    assert_eq!(l.data(), std::fs::read(&path).unwrap());
    l.close();
}

#[test]
fn a_file_that_is_not_there_yet_nor_its_folder_is_waited_for() {
    for (on, _) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later/app.log");
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header == Some(Header::Waiting { dir_missing: true }));
        std::fs::create_dir(dir.path().join("later")).unwrap();
        append(&path, b"first\n");
        l.until(|l| l.data() == b"first\n");
        assert_eq!(following(&l).unwrap().3, 0, "a new file is read from 0");
        l.close();
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

    let mut l = finish(&path, OldFile::Inode(ino), verify, 71);
    l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
    assert_eq!(l.data(), b"last\n");
    assert_eq!(following(&l).unwrap().3, 71);
    l.close();

    // A copy (another inode) with the same first bytes.
    std::fs::copy(&rotated, dir.path().join("app.log-20261202")).unwrap();
    std::fs::remove_file(&rotated).unwrap();
    let mut l = finish(&path, OldFile::Copy, verify, 71);
    l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
    assert_eq!(l.data(), b"last\n");
    l.close();

    // Nothing matching (other first bytes, or shorter than the offset).
    for (old, verify, offset) in [
        (OldFile::Copy, Verify { len: 64, fp: 1 }, 71),
        (OldFile::Copy, verify, 1000),
        (OldFile::Inode(ino), verify, 71),
    ] {
        let mut l = finish(&path, old, verify, offset);
        l.until(|l| l.header.is_some());
        assert_eq!(l.header, Some(Header::Gone));
        l.close();
    }
    // Another log of the folder, `app.log.old`, whose copy is newer and
    // starts with the same bytes: not this log's; nor is a file named
    // after neither.
    let theirs = "x".repeat(70) + "\ntheirs, longer than ours\n";
    let ours_older = std::process::Command::new("touch")
        .args(["-d", "2020-01-01"])
        .arg(dir.path().join("app.log-20261202"))
        .status()
        .unwrap();
    assert!(ours_older.success());
    append(&dir.path().join("app.log.old.1"), theirs.as_bytes());
    append(&dir.path().join("copy"), theirs.as_bytes());
    let others = ["app.log.old".to_owned()];
    let mut l = finish_among(&path, (OldFile::Copy, &others), verify, 71, On::Gnu);
    l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
    assert_eq!(l.data(), b"last\n");
    l.close();
}

/// A rotated file compressed away (logrotate's `compress`, or any of the
/// usual tools) is read by what it decompresses to, from the offset asked,
/// over several chunks; by inode and as a copy; another log's compressed
/// rotation with the same first bytes is not taken.
#[test]
fn finish_reads_a_file_compressed_away_by_what_it_decompresses_to() {
    let body: String = (0..180_000)
        .map(|i| format!("line {i:06} of a rotated file\n"))
        .collect();
    assert!(body.len() as u64 > CHUNK_BYTES);
    let tools: [(&str, &[&str], &str); 4] = [
        ("gzip", &[], ".gz"),
        ("zstd", &["-q", "--rm"], ".zst"),
        ("xz", &[], ".xz"),
        ("bzip2", &[], ".bz2"),
    ];
    let compress = |file: &Path, tool: &str, args: &[&str]| {
        let ok = Command::new(tool).args(args).arg(file).status().unwrap();
        assert!(ok.success(), "{tool}");
    };
    for (tool, args, ext) in tools {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, body.as_bytes());
        let ino = std::fs::metadata(&path).unwrap().ino();
        // Debian's BusyBox fingerprints with md5sum (it has no cksum).
        let verify = |on| verify_of(&path, on);
        let verify = [verify(On::Gnu), verify(On::BusyBox)];
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        compress(&rotated, tool, args);
        assert!(!rotated.exists());
        assert!(dir.path().join(format!("app.log.1{ext}")).exists());
        append(&path, b"new file\n");
        // Another log's rotation, the same first bytes, newer: not ours.
        let theirs = dir.path().join("app.log.old.1");
        append(&theirs, format!("{body}theirs\n").as_bytes());
        compress(&theirs, tool, args);
        let others = ["app.log.old".to_owned()];
        for (old, on, verify) in [
            (OldFile::Inode(ino), On::Gnu, verify[0]),
            (OldFile::Copy, On::Gnu, verify[0]),
            (OldFile::Inode(ino), On::BusyBox, verify[1]),
        ] {
            if matches!(on, On::BusyBox) && tool != "gzip" {
                continue;
            }
            let mut l = finish_among(&path, (old, &others), verify, 100, on);
            l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
            assert_eq!(following(&l).unwrap().3, 100, "{tool} {old:?} {on:?}");
            assert!(l.data() == body.as_bytes()[100..], "{tool} {old:?} {on:?}");
            l.close();
        }
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
            let mut l = follow(&path, StartAt::Beginning, on);
            l.until(|l| l.data() == body.as_bytes());
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
            let mut l = finish_on(&path, OldFile::Inode(ino), verify, 71, on);
            l.until(|l| l.controls().contains(&Control::Final(90)));
            assert_eq!(l.data(), b"written while down\n", "{on:?} {rotated:?}");
            assert_eq!(following(&l).unwrap().1, ino);
            l.close();
        }
    }
}

#[test]
fn a_copytruncate_copy_is_found_whatever_else_its_name_holds() {
    for (on, _) in EVERY_HOST {
        let (_top, dir) = hostile_dir();
        let path = dir.join("app.log");
        let body = "c".repeat(70) + "\nlast\n";
        append(&path, body.as_bytes());
        let verify = verify_of(&path, on);
        let copy = dir.join("app.log.1 \n$(touch RILLPWN)");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::write(&path, "").unwrap();
        let mut l = finish_on(&path, OldFile::Copy, verify, 71, on);
        l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
        assert_eq!(l.data(), b"last\n", "{on:?}");
        assert_eq!(
            following(&l).unwrap().1,
            std::fs::metadata(&copy).unwrap().ino()
        );
        l.close();
    }
}
