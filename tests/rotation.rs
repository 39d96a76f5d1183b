//! Issue 3 (part): files rotated the way servers really rotate them, with the
//! real `logrotate`, while a writer keeps its file descriptor open and only
//! reopens when signalled (so lines land in the old inode after the rename).
//! Every number must arrive exactly once, in order per file, each line at the
//! byte offset it has in its file.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
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

/// Writes LINES numbered lines, rotating 3 times along the way; checks the index.
fn run(mode: Mode) {
    run_on(SshdOptions::default(), mode)
}

fn run_on(sshd: SshdOptions, mode: Mode) {
    run_with(sshd, mode, false)
}

/// With `crash`, ssh_tap is killed with SIGKILL around each rotation: right
/// after the rename (before it noticed), while it drains the old file, and
/// between rotations.
fn run_with(sshd: SshdOptions, mode: Mode, crash: bool) {
    let h = OneHost::start(OneHost::with_sshd(sshd, &["app"]), &["app"]);
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
    for quarter in 1..=3 {
        assert!(wait_until(Duration::from_secs(60), || written
            .load(Ordering::SeqCst)
            >= quarter * LINES / 4));
        let before = followed()["file_id"].clone();
        match &mode {
            Mode::Logrotate(_) => {
                let out = Command::new("logrotate")
                    .arg("-f")
                    .arg("-s")
                    .arg(&state)
                    .arg(&conf)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "logrotate: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Mode::DeleteRecreate => std::fs::remove_file(&path).unwrap(),
        }
        if crash && quarter == 1 {
            kill_tap(&h);
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
        if crash && quarter == 2 {
            let at = written.load(Ordering::SeqCst);
            assert!(wait_until(Duration::from_secs(30), || written
                .load(Ordering::SeqCst)
                >= at + 100));
            kill_tap(&h);
        }
    }
    writer.join().unwrap();

    let n = wait_for(Duration::from_secs(30), || {
        rill.count("*", &[]).filter(|&n| n as usize >= LINES)
    });
    let rotated: Vec<_> = std::fs::read_dir(&h.remote.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        n,
        Some(LINES as u64),
        "files now: {rotated:?}\nlog:\n{}",
        rill.log()
    );

    let out = rill.rill(&["search", "--json", "--limit", &(LINES * 2).to_string(), "*"]);
    let hits: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), LINES);
    let mut seen = HashSet::new();
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
    assert_eq!(
        per_file.len(),
        4,
        "3 rotations give 4 files: {:?}",
        per_file.keys().collect::<Vec<_>>()
    );
    for (file, lines) in per_file.iter_mut() {
        lines.sort();
        for (k, (offset, n)) in lines.iter().enumerate() {
            assert_eq!(
                *offset,
                (k * LINE_LEN) as u64,
                "{file}: line {n} at the wrong offset"
            );
            if k > 0 {
                assert!(*n > lines[k - 1].1, "{file}: numbers out of order");
            }
        }
    }
}

#[test]
fn logrotate_create() {
    run(Mode::Logrotate("create 0644"));
}

#[test]
fn logrotate_create_with_delaycompress() {
    run(Mode::Logrotate("create 0644\n  compress\n  delaycompress"));
}

#[test]
fn logrotate_create_with_compress() {
    run(Mode::Logrotate("create 0644\n  compress"));
}

#[test]
fn logrotate_dateext() {
    run(Mode::Logrotate(
        "create 0644\n  dateext\n  dateformat -%Y%m%d-%s",
    ));
}

#[test]
fn delete_and_recreate() {
    run(Mode::DeleteRecreate);
}

/// A host whose tools are BusyBox applets: the test user's PATH (set by sshd)
/// holds nothing else.
#[test]
fn busybox_host_logrotate_create() {
    let dir = tempfile::Builder::new()
        .prefix("rill-busybox")
        .tempdir()
        .unwrap();
    let busybox = which("busybox");
    for applet in [
        "tail", "ls", "stat", "wc", "head", "cat", "sleep", "cut", "md5sum", "find",
    ] {
        std::os::unix::fs::symlink(&busybox, dir.path().join(applet)).unwrap();
    }
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let opts = SshdOptions {
        extra_config: vec![format!("SetEnv PATH={}", dir.path().display())],
        ..Default::default()
    };
    // The host really has only BusyBox: GNU tail is not reachable.
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(opts.clone()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let probe = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
        ])
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.known_hosts_file().display()
        ))
        .arg("-i")
        .arg(&key.private)
        .args([
            "-p",
            &sshd.port().to_string(),
            "rilltest@127.0.0.1",
            "tail --help 2>&1 | head -1",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&probe.stdout).contains("BusyBox"),
        "{}",
        String::from_utf8_lossy(&probe.stdout)
    );
    drop((sshd, key));
    run_on(opts, Mode::Logrotate("create 0644"));
}

fn which(name: &str) -> std::path::PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed; run tests/install-deps.sh"))
}

/// SIGKILLs the running ssh_tap and waits until robust_ssh_tap started another.
fn kill_tap(h: &OneHost) {
    let config = h.rill.config.display().to_string();
    let taps = || -> Vec<u32> {
        local_processes_mentioning(&config)
            .into_iter()
            .filter(|(_, c)| c.contains("/ssh_tap "))
            .map(|(p, _)| p)
            .collect()
    };
    let old = taps();
    assert_eq!(old.len(), 1, "{old:?}");
    // SAFETY: killing the tap of the Rill under test.
    unsafe { libc::kill(old[0] as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(15), || taps()
            .iter()
            .any(|p| *p != old[0])),
        "no new ssh_tap"
    );
}

#[test]
fn ssh_tap_killed_around_rotations_loses_and_repeats_nothing() {
    run_with(
        SshdOptions::default(),
        Mode::Logrotate("create 0644\n  delaycompress\n  compress"),
        true,
    );
}
