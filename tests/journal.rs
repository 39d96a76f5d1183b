//! Issue 20: logs that are the systemd journal, against a real sshd and
//! real journal files (written by `systemd-journal-remote` from the export
//! format, read by `journalctl --directory`, no systemd running). Each entry
//! is indexed once with its fields searchable and `MESSAGE` as its text,
//! across a lost connection and a killed tap.

use std::io::Write;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rill_e2e::*;

const WITHIN: Duration = Duration::from_secs(30);

/// Appends entries `(unit, priority, message)` to the journal file
/// `file` (created if missing, then given to `uid`).
fn journal(file: &Path, uid: u32, entries: &[(&str, u8, String)]) {
    let mut export = String::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    for (n, (unit, priority, message)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
             _SYSTEMD_UNIT={unit}\nPRIORITY={priority}\nSYSLOG_IDENTIFIER={}\nMESSAGE={message}\n\n",
            now + n as u128,
            now + n as u128,
            unit.trim_end_matches(".service"),
        ));
    }
    let mut c = Command::new("/lib/systemd/systemd-journal-remote")
        .arg(format!("--output={}", file.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote is not installed; run tests/install-deps.sh");
    c.stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    chown(file, Some(uid), None).unwrap();
    let mut perm = std::fs::metadata(file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o640);
    std::fs::set_permissions(file, perm).unwrap();
}

/// Points log `log` of the config at the journal in `dir` with `extra`
/// keys, instead of the file the fixture gave it.
fn set_journal(h: &OneHost, log: &str, dir: &Path, extra: &str) {
    let text = std::fs::read_to_string(&h.rill.config).unwrap();
    let from = format!("    path: '{}'\n", h.file(log).display());
    assert!(text.contains(&from), "{text}");
    let to = format!(
        "    journal: {{directory: '{}', units: [nginx.service]}}\n{extra}",
        dir.display()
    );
    std::fs::write(&h.rill.config, text.replace(&from, &to)).unwrap();
}

fn entries(unit: &str, priority: u8, word: &str, n: usize) -> Vec<(&'static str, u8, String)> {
    let unit: &'static str = if unit == "nginx" {
        "nginx.service"
    } else {
        "sshd.service"
    };
    (0..n)
        .map(|i| (unit, priority, format!("{word} {i} from {unit}")))
        .collect()
}

#[test]
fn journal_entries_are_indexed_once_across_a_lost_connection_and_a_killed_tap() {
    let mut h = OneHost::new(&["units"]);
    let dir = h.remote.path.join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir, Some(h.user.uid), None).unwrap();
    let file = dir.join("remote.journal");
    // Before the collector starts: read too (read_from: beginning), the
    // sshd entries never (not the unit asked for).
    journal(
        &file,
        h.user.uid,
        &[
            entries("nginx", 6, "alpha", 5),
            entries("sshd", 6, "bravo", 3),
        ]
        .concat(),
    );
    set_journal(&h, "units", &dir, "    read_from: beginning\n");
    h.rill.start();
    assert_eq!(
        h.rill.wait_count("alpha", &[], 5, WITHIN),
        Some(5),
        "{}",
        h.rill.log()
    );
    let mut live = Live::subscribe(&h.rill, "web01", "units", WITHIN);

    // Entries written while it follows, live and indexed.
    journal(&file, h.user.uid, &entries("nginx", 3, "charlie", 4));
    live.wait(WITHIN, |ls, _| ls.len() >= 4);
    assert_eq!(live.lines.len(), 4, "{:?}", live.bodies());
    let entry: serde_json::Value = serde_json::from_str(live.bodies()[0]).unwrap();
    assert_eq!(entry["MESSAGE"], "charlie 0 from nginx.service", "{entry}");
    assert_eq!(h.rill.wait_count("charlie", &[], 4, WITHIN), Some(4));
    // The journal's fields, searchable; MESSAGE is the text.
    assert_eq!(h.rill.count("fields.PRIORITY:3", &[]), Some(4));
    assert_eq!(
        h.rill.count("fields._SYSTEMD_UNIT:\"nginx.service\"", &[]),
        Some(9)
    );
    assert_eq!(h.rill.count("bravo", &[]), Some(0));
    let out = h.rill.rill(&["search", "--json", "charlie 2"]);
    let hit: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(hit["body"], "charlie 2 from nginx.service", "{hit}");

    // The connection is cut: the tap reconnects and resumes after the
    // last entry the index holds.
    for pid in h.sshd.connection_pids() {
        // SAFETY: a session process of the test's own sshd.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(
        wait_until(WITHIN, || h.rill.log().contains("connection lost")),
        "{}",
        h.rill.log()
    );
    journal(&file, h.user.uid, &entries("nginx", 6, "delta", 3));
    assert_eq!(
        h.rill.wait_count("delta", &[], 3, WITHIN),
        Some(3),
        "{}",
        h.rill.log()
    );
    // The tap itself is killed: the checkpoint's cursor.
    h.rill.kill_tap();
    journal(&file, h.user.uid, &entries("nginx", 6, "echo", 2));
    assert_eq!(
        h.rill.wait_count("echo", &[], 2, WITHIN),
        Some(2),
        "{}",
        h.rill.log()
    );
    assert_eq!(
        h.rill.count("*", &[]),
        Some(5 + 4 + 3 + 2),
        "{}",
        h.rill.log()
    );
    let status = h.rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn a_journal_read_from_its_end_takes_only_entries_written_after() {
    let mut h = OneHost::new(&["units"]);
    let dir = h.remote.path.join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir, Some(h.user.uid), None).unwrap();
    let file = dir.join("remote.journal");
    journal(&file, h.user.uid, &entries("nginx", 6, "foxtrot", 4));
    set_journal(&h, "units", &dir, "");
    h.rill.start();
    assert!(h.rill.wait_following("web01", WITHIN), "{}", h.rill.log());
    let mut live = Live::subscribe(&h.rill, "web01", "units", WITHIN);
    journal(&file, h.user.uid, &entries("nginx", 6, "golf", 3));
    assert_eq!(
        h.rill.wait_count("golf", &[], 3, WITHIN),
        Some(3),
        "{}",
        h.rill.log()
    );
    live.wait(WITHIN, |ls, _| ls.len() >= 3);
    assert_eq!(live.lines.len(), 3, "{:?}", live.bodies());
    assert_eq!(
        h.rill.count("foxtrot", &[]),
        Some(0),
        "written before the start"
    );
    let status = h.rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn an_empty_journal_is_waited_for_and_read_from_its_first_entry() {
    let mut h = OneHost::new(&["units"]);
    let dir = h.remote.path.join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir, Some(h.user.uid), None).unwrap();
    set_journal(&h, "units", &dir, "");
    h.rill.start();
    assert!(h.rill.wait_following("web01", WITHIN), "{}", h.rill.log());
    // Not a single entry yet; then some, of another unit first.
    let file = dir.join("remote.journal");
    journal(&file, h.user.uid, &entries("sshd", 6, "hotel", 2));
    journal(&file, h.user.uid, &entries("nginx", 6, "india", 3));
    assert_eq!(
        h.rill.wait_count("india", &[], 3, WITHIN),
        Some(3),
        "{}",
        h.rill.log()
    );
    assert_eq!(h.rill.count("hotel", &[]), Some(0));
    let status = h.rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
