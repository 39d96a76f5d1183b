//! Issue 20: logs whose path is a pattern, and `read_from`, against a real
//! sshd. Files appear, rotate (renamed to names the pattern still matches),
//! are excluded and vanish; each line must be streamed live and indexed
//! exactly once, searchable by the `path` of its file, and no remote
//! process may outlive the collector.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use rill_e2e::*;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);

/// Points log `log` of the config at `path` (a pattern) instead of the
/// file the fixture gave it.
fn set_path(rill: &Rill, file: &Path, path: &str) {
    let text = std::fs::read_to_string(&rill.config).unwrap();
    let from = format!("path: '{}'", file.display());
    assert!(text.contains(&from), "{text}");
    std::fs::write(
        &rill.config,
        text.replace(&from, &format!("path: '{path}'")),
    )
    .unwrap();
}

/// Appends `n` lines `WORD i` to `name` in the scratch dir; remembers them.
fn write(remote: &RemoteDir, name: &str, word: &str, n: usize, written: &mut Vec<String>) {
    let mut text = String::new();
    for i in 0..n {
        let line = format!("{word} {i} of {name}");
        text.push_str(&line);
        text.push('\n');
        written.push(line);
    }
    remote.append(name, text.as_bytes()).unwrap();
}

/// The rows of `rill status --json` for web01's logs.
fn rows(rill: &Rill) -> Vec<Value> {
    rill.host_status("web01")
        .and_then(|h| h["logs"].as_array().cloned())
        .unwrap_or_default()
}

/// The row whose path is `path`.
fn row(rill: &Rill, path: &str) -> Option<Value> {
    rows(rill).into_iter().find(|r| r["path"] == path)
}

/// Whether `path` is followed (its file's identity is known).
fn followed(rill: &Rill, path: &str) -> bool {
    row(rill, path).is_some_and(|r| !r["file_id"].is_null())
}

/// Waits until `n` lines starting with `word ` were streamed; checks that
/// they came from `path` and that no line came twice.
fn expect(live: &mut Live, word: &str, n: usize, path: &str) {
    let prefix = format!("{word} ");
    let of_word = |v: &Value| v["body"].as_str().is_some_and(|b| b.starts_with(&prefix));
    live.wait(WITHIN, |ls, _| {
        ls.iter().filter(|v| of_word(v)).count() >= n
    });
    assert_eq!(
        live.count_starting(&prefix),
        n,
        "{word}: {:?}",
        live.bodies()
    );
    for v in live.lines.iter().filter(|v| of_word(v)) {
        assert_eq!(v["path"], path, "{v}");
    }
    let bodies = live.bodies();
    let unique: HashSet<&&str> = bodies.iter().collect();
    assert_eq!(
        unique.len(),
        bodies.len(),
        "a line streamed twice: {bodies:?}"
    );
}

/// Waits until `n` lines of `word` are indexed (and no more).
fn indexed(rill: &Rill, word: &str, n: u64) {
    assert_eq!(
        rill.wait_count(&format!("\"{word}\""), &[], n, WITHIN),
        Some(n),
        "{word} lines indexed; log:\n{}",
        rill.log()
    );
}

#[test]
fn files_of_a_pattern_appearing_rotating_and_vanishing_are_each_indexed_once() {
    appearing_rotating_vanishing(None);
}

#[test]
fn files_of_a_pattern_on_a_busybox_host_are_each_indexed_once() {
    appearing_rotating_vanishing(Some(BusyBoxHost::new()));
}

/// Files appear, rotate, are excluded and vanish on a GNU host, or on a
/// host whose tools are BusyBox's (`busybox`, kept alive meanwhile).
fn appearing_rotating_vanishing(busybox: Option<BusyBoxHost>) {
    let opts = busybox.as_ref().map(|b| b.opts.clone()).unwrap_or_default();
    let mut h = OneHost::with_sshd(opts, &["app"]);
    let dir = h.remote.path.display().to_string();
    let p = |name: &str| format!("{dir}/{name}");
    set_path(&h.rill, &h.file("app"), &p("*.log*"));
    h.rill
        .set_log_options("app", "exclude: ['*.gz', 'debug-*']");
    // What the files held before the collector first saw them is not read
    // (`read_from: end`, the default).
    let mut before = Vec::new();
    write(&h.remote, "a.log", "before", 3, &mut before);
    write(&h.remote, "debug-1.log", "before", 3, &mut before);
    h.rill.start();
    assert!(
        wait_until(WITHIN, || followed(&h.rill, &p("a.log"))),
        "a.log never followed: {:?}\n{}",
        rows(&h.rill),
        h.rill.log()
    );
    let pattern = row(&h.rill, &p("*.log*")).unwrap();
    assert_eq!(pattern["files"], 1, "{pattern}");
    assert!(pattern["error"].is_null(), "{pattern}");
    let user = TestUser::get().unwrap();
    let sessions = remote_sessions(&user, &dir);
    assert!(!sessions.is_empty());
    let mut live = Live::subscribe(&h.rill, "web01", "app", WITHIN);
    let mut written = Vec::new();

    write(&h.remote, "a.log", "alpha", 10, &mut written);
    // A file created later is new: read from its start, with the lines
    // it held before the collector found it.
    write(&h.remote, "b.log", "bravo", 10, &mut written);
    let odd = "odd $(id) 'q' \\ *.log";
    write(&h.remote, odd, "oddity", 2, &mut written);
    expect(&mut live, "alpha", 10, &p("a.log"));
    expect(&mut live, "bravo", 10, &p("b.log"));
    expect(&mut live, "oddity", 2, &p(odd));
    indexed(&h.rill, "alpha", 10);
    indexed(&h.rill, "bravo", 10);
    indexed(&h.rill, "oddity", 2);

    // A rename rotation: a.log becomes a.log.1 (which the pattern matches
    // too: the same file, not a new one), the writer adds to it before it
    // reopens by name.
    std::fs::rename(p("a.log"), p("a.log.1")).unwrap();
    write(&h.remote, "a.log.1", "charlie", 3, &mut written);
    write(&h.remote, "a.log", "delta", 10, &mut written);
    expect(&mut live, "charlie", 3, &p("a.log"));
    expect(&mut live, "delta", 10, &p("a.log"));
    indexed(&h.rill, "charlie", 3);
    indexed(&h.rill, "delta", 10);

    // The generations shift: a.log.1 -> a.log.2, a.log -> a.log.1.
    std::fs::rename(p("a.log.1"), p("a.log.2")).unwrap();
    std::fs::rename(p("a.log"), p("a.log.1")).unwrap();
    write(&h.remote, "a.log.1", "echo", 2, &mut written);
    write(&h.remote, "a.log", "foxtrot", 5, &mut written);
    expect(&mut live, "echo", 2, &p("a.log"));
    expect(&mut live, "foxtrot", 5, &p("a.log"));
    indexed(&h.rill, "echo", 2);
    indexed(&h.rill, "foxtrot", 5);
    // Rotated generations never got rows (files) of their own.
    let paths: HashSet<String> = rows(&h.rill)
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    let want: HashSet<String> = [p("*.log*"), p("a.log"), p("b.log"), p(odd)].into();
    assert_eq!(paths, want);
    // The count comes with the next listing (every poll interval) and
    // status report (every second) after the shift made a.log.2.
    let five = wait_until(WITHIN, || {
        row(&h.rill, &p("*.log*")).is_some_and(|r| r["files"] == 5)
    });
    let pattern = row(&h.rill, &p("*.log*")).unwrap();
    assert!(five, "a.log, .1, .2, b.log, odd: {pattern}");

    // Excluded names are never read; a deleted file is finished, then
    // dropped from the status.
    write(&h.remote, "debug-1.log", "golf", 3, &mut before);
    write(&h.remote, "c.log.gz", "golf", 3, &mut before);
    std::fs::remove_file(p("b.log")).unwrap();
    write(&h.remote, "a.log", "hotel", 4, &mut written);
    expect(&mut live, "hotel", 4, &p("a.log"));
    assert!(
        wait_until(WITHIN, || row(&h.rill, &p("b.log")).is_none()),
        "b.log still has a row: {:?}",
        rows(&h.rill)
    );

    // Each line once, found by its file's path; nothing of what was there
    // before or excluded.
    let total = written.len() as u64;
    assert_eq!(h.rill.wait_count("*", &[], total, WITHIN), Some(total));
    assert_eq!(
        h.rill.count(&format!("path:\"{}\"", p("b.log")), &[]),
        Some(10)
    );
    assert_eq!(
        h.rill.count(&format!("path:\"{}\"", p("a.log")), &[]),
        Some(total - 12)
    );
    assert_eq!(h.rill.count("before OR golf", &[]), Some(0));
    let out = h.rill.rill(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("app {}: 4 files match", p("*.log*"))),
        "{text}"
    );

    let status = h.rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        wait_until(Duration::from_secs(5), || remote_processes_in(
            &user, &sessions
        )
        .is_empty()),
        "left on the server: {:?}",
        remote_processes_in(&user, &sessions)
    );
    live.drain();
    live.assert_each_once(&written);
    assert_eq!(live.lines.len(), written.len(), "{:?}", live.bodies());
}

#[test]
fn read_from_beginning_reads_what_files_hold_once_across_a_restart() {
    let mut h = OneHost::new(&["app", "many", "none", "capped"]);
    let dir = h.remote.path.display().to_string();
    let p = |name: &str| format!("{dir}/{name}");
    std::fs::create_dir_all(p("m")).unwrap();
    set_path(&h.rill, &h.file("many"), &p("m/**/*.log"));
    set_path(&h.rill, &h.file("none"), &p("nothing-here/*.log"));
    h.rill.set_log_options("app", "read_from: beginning");
    h.rill.set_log_options("many", "read_from: beginning");
    set_path(&h.rill, &h.file("capped"), &p("c/*.log"));
    h.rill
        .set_log_options("capped", "read_from: beginning\nmax_files: 2");
    h.rill
        .append_config("queries:\n  caps: 'capone OR captwo'\n");
    let mut written = Vec::new();
    write(&h.remote, "app.log", "plain", 5, &mut written);
    std::fs::create_dir_all(p("c")).unwrap();
    write(&h.remote, "c/1.log", "capone", 2, &mut written);
    write(&h.remote, "c/2.log", "captwo", 2, &mut written);
    // Past max_files (in path order): not read.
    write(&h.remote, "c/3.log", "capthree", 2, &mut Vec::new());
    write(&h.remote, "m/1.log", "one", 4, &mut written);
    std::fs::create_dir_all(p("m/deep/er")).unwrap();
    write(&h.remote, "m/deep/er/2.log", "two", 6, &mut written);
    h.rill.start();
    for word in ["plain", "one", "two", "capone", "captwo"] {
        let n = written.iter().filter(|l| l.starts_with(word)).count();
        indexed(&h.rill, word, n as u64);
    }
    let capped = row(&h.rill, &p("c/*.log")).unwrap();
    assert_eq!(capped["files"], 3, "{capped}");
    assert!(
        capped["error"]
            .as_str()
            .is_some_and(|e| e.contains("more than max_files (2): 1 not followed")),
        "{capped}"
    );
    let none = row(&h.rill, &p("nothing-here/*.log")).unwrap();
    assert_eq!(none["files"], 0, "{none}");
    assert!(
        none["error"]
            .as_str()
            .is_some_and(|e| e.contains("no file matches")),
        "{none}"
    );
    // One warning for it, not one per listing.
    std::thread::sleep(Duration::from_secs(3));
    let warned = h.rill.log().matches("no file matches").count();
    assert_eq!(warned, 1, "{}", h.rill.log());

    // A tap killed and restarted resumes from its checkpoints: nothing is
    // read twice, nothing written meanwhile is missed.
    h.rill.kill_tap();
    write(&h.remote, "app.log", "kilo", 2, &mut written);
    write(&h.remote, "m/1.log", "lima", 2, &mut written);
    write(&h.remote, "m/3.log", "three", 3, &mut written);
    let total = written.len() as u64;
    assert_eq!(
        h.rill.wait_count("*", &[], total, WITHIN),
        Some(total),
        "{}",
        h.rill.log()
    );
    assert_eq!(h.rill.count("capthree", &[]), Some(0));
    // A saved query, by name.
    let out = h.rill.rill(&["search", "--count", "--saved", "caps"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4", "{out:?}");
    let (status, body) = http_get(h.rill.search_port, "/count?saved=caps").unwrap();
    assert_eq!((status, body["count"].as_u64()), (200, Some(4)), "{body}");
    for word in [
        "plain", "one", "two", "kilo", "lima", "three", "capone", "captwo",
    ] {
        let n = written
            .iter()
            .filter(|l| l.starts_with(&format!("{word} ")))
            .count();
        assert_eq!(
            h.rill.count(&format!("\"{word}\""), &[]),
            Some(n as u64),
            "{word}"
        );
    }
    let status = h.rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// A combined-format line of `day`, a past date (`01/Dec/2026`), whose
/// request path holds `word`.
fn combined(word: &str, i: usize, day: &str) -> String {
    format!("10.0.0.{i} - - [{day}:10:00:{i:02} +0000] \"GET /{word}/{i} HTTP/1.1\" 200 12 \"-\" \"curl\"")
}

/// `text` compressed by `tool` (`gzip`, `xz`).
fn compressed(tool: &str, text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut c = std::process::Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn history_indexes_the_newest_rotated_generations_once_compressed_or_not() {
    let mut h = OneHost::new(&["app"]);
    h.rill
        .set_log_options("app", "read_from: beginning\nhistory: 3\nparser: combined");
    let day = (chrono::Utc::now() - chrono::Duration::days(2))
        .format("%d/%b/%Y")
        .to_string();
    let lines = |word: &str, n: usize| -> String {
        (0..n).map(|i| combined(word, i, &day) + "\n").collect()
    };
    // Oldest first, so their times order them: gen4 is past `history: 3`.
    let gens = [
        ("app.log.4.gz", "genfour", 6, Some("gzip")),
        ("app.log.3.xz", "genthree", 2, Some("xz")),
        ("app.log.2.gz", "gentwo", 5, Some("gzip")),
        ("app.log.1", "genone", 4, None),
    ];
    for (k, (name, word, n, tool)) in gens.into_iter().enumerate() {
        let text = lines(word, n);
        let bytes = tool.map_or_else(|| text.clone().into_bytes(), |t| compressed(t, &text));
        h.remote.append(name, &bytes).unwrap();
        // An hour apart, oldest first, whatever the file system's grain.
        let t = std::time::SystemTime::now() - Duration::from_secs(3600 * (10 - k as u64));
        std::fs::File::options()
            .write(true)
            .open(h.remote.file(name))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    h.remote
        .append("app.log", lines("current", 3).as_bytes())
        .unwrap();
    h.rill.start();
    let want = [
        ("genone", 4),
        ("gentwo", 5),
        ("genthree", 2),
        ("current", 3),
    ];
    for (word, n) in want {
        indexed(&h.rill, word, n);
    }
    assert_eq!(h.rill.count("genfour", &[]), Some(0), "past history: 3");
    // Their times are the lines' own, not when they were read.
    assert_eq!(h.rill.count("gentwo", &["--since", "1h"]), Some(0));
    assert_eq!(h.rill.count("gentwo", &["--since", "3d"]), Some(5));

    // Restarted, nothing is read twice; the file goes on.
    h.rill.kill_tap();
    h.remote
        .append("app.log", lines("later", 2).as_bytes())
        .unwrap();
    indexed(&h.rill, "later", 2);
    assert_eq!(h.rill.count("*", &[]), Some(4 + 5 + 2 + 3 + 2));
    let status = h.rill.stop(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
