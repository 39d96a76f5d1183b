//! Issue 3: files rotated the way servers really rotate them, with the real
//! `logrotate`, while a writer keeps its file descriptor open and only
//! reopens when signalled (so lines land in the old inode after the rename).
//! Each mode runs against a GNU host (stream reader) and a host whose shell
//! and tools are BusyBox applets only (chunk reader). Every number must
//! arrive exactly once, in order per file, each line at the byte offset it
//! has in its file; and once the rotations are over, only the one channel
//! following the current file may still have processes on the server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rill_e2e::*;
use serde_json::Value;

const LINES: usize = 4000;
/// Every line has this length, so offsets within a file are multiples of it.
const LINE_LEN: usize = "n=000000 the quick brown fox jumps over the lazy dog\n".len();

fn line(n: usize) -> String {
    format!("n={n:06} the quick brown fox jumps over the lazy dog\n")
}

/// How the test rotates the file.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `logrotate` with these directives (besides `rotate 5`, `su`, `missingok`).
    Logrotate(&'static str),
    /// The file is deleted; the writer creates it anew.
    DeleteRecreate,
}

impl Mode {
    /// copytruncate loses what the writer adds between logrotate's copy and
    /// its truncation; those lines are in no file on the server.
    fn loses_lines_itself(self) -> bool {
        matches!(self, Mode::Logrotate(d) if d.contains("copytruncate"))
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Host {
    Gnu,
    BusyBox,
}

/// Where ssh_tap is killed with SIGKILL.
#[derive(Clone, Copy, PartialEq)]
enum Crash {
    Never,
    /// Right after the first rotation (before the tap noticed it) and after
    /// the second, once the writer reopened.
    AroundRotations,
}

/// Writes LINES numbered lines, rotating 3 times along the way; checks the
/// index against what was written and what is on the server.
fn run(host: Host, mode: Mode, crash: Crash) {
    let busybox = (host == Host::BusyBox).then(BusyBoxHost::new);
    let opts = busybox.as_ref().map(|b| b.opts.clone()).unwrap_or_default();
    let h = OneHost::start(OneHost::with_sshd(opts, &["app"]), &["app"]);
    let path = h.file("app");
    let conf = h.rill.dir.path().join("logrotate.conf");
    let state = h.rill.dir.path().join("logrotate.state");
    if let Mode::Logrotate(directives) = &mode {
        let text = format!(
            "\"{}\" {{\n  su {u} {u}\n  rotate 5\n  missingok\n  {directives}\n}}\n",
            path.display(),
            u = h.user.name
        );
        std::fs::write(&conf, text).unwrap();
    }

    let written = Arc::new(AtomicUsize::new(0));
    let reopen = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, reopen, path) = (Arc::clone(&written), Arc::clone(&reopen), path.clone());
        std::thread::spawn(move || {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap()
            };
            let mut f = open();
            for n in 0..LINES {
                if reopen.swap(false, Ordering::SeqCst) {
                    f = open();
                }
                f.write_all(line(n).as_bytes()).unwrap();
                written.store(n + 1, Ordering::SeqCst);
                // The workload's pace: about 8 s of writing in all.
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let rill = &h.rill;
    let followed = || {
        rill.host_status("web01")
            .map(|s| s["logs"][0].clone())
            .unwrap_or_default()
    };
    let mut rotated_away = serde_json::Value::Null;
    for quarter in 1..=3 {
        assert!(wait_until(Duration::from_secs(60), || written
            .load(Ordering::SeqCst)
            >= quarter * LINES / 4));
        // Rotate only a file the tap follows: a file created and removed
        // again before the tap ever saw it cannot be read by anyone.
        assert!(
            wait_until(Duration::from_secs(20), || {
                let now = followed();
                now["error"].is_null()
                    && !now["file_id"].is_null()
                    && now["file_id"] != rotated_away
            }),
            "the tap never followed the file before rotation {quarter}: {}\n{}",
            followed(),
            rill.log()
        );
        let before = followed()["file_id"].clone();
        rotated_away = before.clone();
        match &mode {
            Mode::Logrotate(_) => {
                logrotate_now(&state, &conf);
            }
            Mode::DeleteRecreate => std::fs::remove_file(&path).unwrap(),
        }
        if crash == Crash::AroundRotations && quarter == 1 {
            h.rill.kill_tap();
        }
        // Like a daemon not yet signalled, the writer goes on appending to
        // the old inode, also after the tap moved on to the new file (or
        // started waiting for it); then its "postrotate": reopen by name.
        let moved_on = wait_until(Duration::from_secs(20), || {
            let now = followed();
            now["file_id"] != before
                || now["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("does not exist yet"))
        });
        assert!(
            moved_on,
            "the tap never noticed rotation {quarter}; log:\n{}",
            rill.log()
        );
        let at = written.load(Ordering::SeqCst);
        assert!(wait_until(Duration::from_secs(30), || written
            .load(Ordering::SeqCst)
            >= at + 20));
        reopen.store(true, Ordering::SeqCst);
        if crash == Crash::AroundRotations && quarter == 2 {
            let at = written.load(Ordering::SeqCst);
            assert!(wait_until(Duration::from_secs(30), || written
                .load(Ordering::SeqCst)
                >= at + 100));
            h.rill.kill_tap();
        }
    }
    writer.join().unwrap();

    // What the server's files hold now (rotated ones included). With
    // compress or delete, lines the writer adds to the old inode afterwards
    // are in no file any more; the tap still reads them from the inode it
    // holds open, so the index must have every line written. copytruncate
    // loses lines itself: there the server's files are the measure.
    let on_server = numbers_on_server(&h.remote.path);
    let expected = if mode.loses_lines_itself() {
        on_server.len()
    } else {
        LINES
    };
    let n = wait_for(Duration::from_secs(30), || {
        rill.count("*", &[]).filter(|&n| n as usize >= expected)
    });
    assert!(
        n.is_some(),
        "index has {:?} lines, the server's files {expected}; log:\n{}",
        rill.count("*", &[]),
        rill.log()
    );

    let out = rill.rill(&["search", "--json", "--limit", &(LINES * 2).to_string(), "*"]);
    let hits: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen = BTreeSet::new();
    let mut per_file: BTreeMap<String, Vec<(u64, usize)>> = BTreeMap::new();
    for hit in &hits {
        let body = hit["body"].as_str().unwrap();
        let n: usize = body[2..8].parse().unwrap();
        assert_eq!(format!("{body}\n"), line(n));
        assert!(seen.insert(n), "line {n} twice");
        per_file
            .entry(hit["file_id"].as_str().unwrap().to_owned())
            .or_default()
            .push((hit["offset"].as_u64().unwrap(), n));
    }
    let missing: Vec<&usize> = on_server.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "lines on the server but not in the index: {missing:?}"
    );
    assert!(seen.iter().all(|&n| n < LINES), "only written lines");
    if mode.loses_lines_itself() {
        eprintln!(
            "{} lines written, {} on the server, {} indexed: logrotate's copy-then-truncate lost {}",
            LINES,
            on_server.len(),
            seen.len(),
            LINES - on_server.len()
        );
    } else {
        assert_eq!(seen.len(), LINES);
    }
    assert_eq!(
        per_file.len(),
        4,
        "3 rotations give 4 files: {:?}",
        per_file.keys().collect::<Vec<_>>()
    );
    // Within a file numbers rise with the offset, and each line sits where
    // it sits in the file (a file holds consecutive numbers).
    for (file, lines) in per_file.iter_mut() {
        lines.sort();
        let first = lines[0].1;
        for (offset, n) in lines.iter() {
            assert_eq!(
                *offset,
                ((n - first) * LINE_LEN) as u64,
                "{file}: line {n} at the wrong offset"
            );
        }
    }

    // Everything opened for the old files was closed with its channel.
    let scratch = h.remote.path.display().to_string();
    assert!(
        wait_until(Duration::from_secs(5), || remote_sessions(
            &h.user, &scratch
        )
        .len()
            == 1),
        "one remote follow left, not {:?}",
        remote_processes_in(&h.user, &remote_sessions(&h.user, &scratch))
    );
    drop(busybox);
}

/// The numbers in every file of `dir` (gzip-compressed ones unpacked),
/// checking no number is in two places.
fn numbers_on_server(dir: &Path) -> BTreeSet<usize> {
    let mut all = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let bytes = if p.extension().is_some_and(|e| e == "gz") {
            Command::new("gzip")
                .arg("-dc")
                .arg(&p)
                .output()
                .unwrap()
                .stdout
        } else {
            std::fs::read(&p).unwrap()
        };
        for l in String::from_utf8_lossy(&bytes).lines() {
            let n: usize = l[2..8].parse().unwrap();
            assert!(all.insert(n), "{n} twice on the server");
        }
    }
    all
}

const CREATE: Mode = Mode::Logrotate("create 0644");
const DELAYCOMPRESS: Mode = Mode::Logrotate("create 0644\n  compress\n  delaycompress");
const COMPRESS: Mode = Mode::Logrotate("create 0644\n  compress");
const DATEEXT: Mode = Mode::Logrotate("create 0644\n  dateext\n  dateformat -%Y%m%d-%s");
const COPYTRUNCATE: Mode = Mode::Logrotate("copytruncate");

#[test]
fn logrotate_create() {
    run(Host::Gnu, CREATE, Crash::Never);
}

#[test]
fn logrotate_create_with_delaycompress() {
    run(Host::Gnu, DELAYCOMPRESS, Crash::Never);
}

#[test]
fn logrotate_create_with_compress() {
    run(Host::Gnu, COMPRESS, Crash::Never);
}

#[test]
fn logrotate_dateext() {
    run(Host::Gnu, DATEEXT, Crash::Never);
}

#[test]
fn logrotate_copytruncate() {
    run(Host::Gnu, COPYTRUNCATE, Crash::Never);
}

#[test]
fn delete_and_recreate() {
    run(Host::Gnu, Mode::DeleteRecreate, Crash::Never);
}

#[test]
fn busybox_host_logrotate_create() {
    run(Host::BusyBox, CREATE, Crash::Never);
}

#[test]
fn busybox_host_logrotate_create_with_delaycompress() {
    run(Host::BusyBox, DELAYCOMPRESS, Crash::Never);
}

#[test]
fn busybox_host_logrotate_create_with_compress() {
    run(Host::BusyBox, COMPRESS, Crash::Never);
}

#[test]
fn busybox_host_logrotate_dateext() {
    run(Host::BusyBox, DATEEXT, Crash::Never);
}

#[test]
fn busybox_host_logrotate_copytruncate() {
    run(Host::BusyBox, COPYTRUNCATE, Crash::Never);
}

#[test]
fn busybox_host_delete_and_recreate() {
    run(Host::BusyBox, Mode::DeleteRecreate, Crash::Never);
}

#[test]
fn ssh_tap_killed_around_rotations_loses_and_repeats_nothing() {
    run(Host::Gnu, DELAYCOMPRESS, Crash::AroundRotations);
}

#[test]
fn ssh_tap_killed_around_copytruncate_loses_and_repeats_nothing() {
    run(Host::Gnu, COPYTRUNCATE, Crash::AroundRotations);
}

#[test]
fn busybox_host_ssh_tap_killed_around_rotations() {
    run(Host::BusyBox, DELAYCOMPRESS, Crash::AroundRotations);
}

/// The BusyBox host really is one: its `tail` is BusyBox's and there is no
/// `cksum` (the fingerprint falls back to `md5sum`).
#[test]
fn the_busybox_host_has_only_busybox() {
    let bb = BusyBoxHost::new();
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(bb.opts.clone()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let probe = sshd
        .client(
            &key,
            "tail --help 2>&1 | head -1; command -v cksum || echo no-cksum; readlink /proc/$$/exe",
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(out.contains("BusyBox"), "{out}");
    assert!(out.contains("no-cksum"), "{out}");
    assert!(out.trim_end().ends_with("busybox"), "the shell: {out}");
}
