//! Issue 5, piece by piece: the index confirms what it holds and the taps
//! show it; a lost index is filled again from the files on the server; and
//! masspinger keeps up with thousands of hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rill_e2e::*;
use serde_json::Value;

fn line(n: usize) -> String {
    format!("n={n:05} some log line\n")
}

fn append_lines(h: &OneHost, log: &str, range: std::ops::Range<usize>) {
    let text: String = range.map(line).collect();
    h.append(log, text.as_bytes());
}

/// The numbers in the index, checking none is there twice.
fn numbers(rill: &Rill) -> BTreeSet<usize> {
    let out = rill.rill(&["search", "--json", "--limit", "1000000", "*"]);
    let mut seen = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let body = v["body"].as_str().unwrap();
        let digits = body[2..].split(' ').next().unwrap();
        let n: usize = digits.parse().unwrap();
        if let Some(first) = seen.insert(n, v.clone()) {
            panic!("line {n} twice: {first} and {v}");
        }
    }
    seen.into_keys().collect()
}

/// Writes a logrotate config for `<log>.log` (`how`: its directives), and
/// returns a function that rotates it now.
fn logrotate<'a>(h: &'a OneHost, log: &str, how: &str) -> impl Fn() + 'a {
    let conf = h.rill.dir.path().join(format!("logrotate-{log}.conf"));
    std::fs::write(
        &conf,
        format!(
            "\"{}\" {{\n  su {u} {u}\n  rotate 5\n  {how}\n}}\n",
            h.file(log).display(),
            u = h.user.name
        ),
    )
    .unwrap();
    move || {
        logrotate_now(&h.rill.dir.path().join("logrotate.state"), &conf);
    }
}

#[test]
fn status_shows_each_log_confirmed_by_the_index_to_the_end_of_its_file() {
    let h = OneHost::running(&["a"]);
    append_lines(&h, "a", 0..300);
    let size = std::fs::metadata(h.file("a")).unwrap().len();
    let rill = &h.rill;
    let caught_up = wait_for(Duration::from_secs(20), || {
        let s = rill.host_status("web01")?;
        let l = s["logs"][0].clone();
        (l["indexed_offset"].as_u64() == Some(size) && l["lag_bytes"].as_u64() == Some(0))
            .then_some(l)
    });
    let l = caught_up
        .unwrap_or_else(|| panic!("status never caught up: {:?}", rill.host_status("web01")));
    assert_eq!(l["remote_size"].as_u64(), Some(size), "{l}");
    assert_eq!(l["last_offset"].as_u64(), Some(size), "{l}");
    assert_eq!(rill.count("*", &[]), Some(300));
    // The checkpoint (saved every few seconds) comes to hold the confirmed
    // position, and the index's name.
    let checkpoint = || -> Value {
        serde_json::from_slice(
            &std::fs::read(rill.dir.path().join("state/checkpoints/web01.json")).unwrap(),
        )
        .unwrap()
    };
    let saved = wait_until(Duration::from_secs(10), || {
        checkpoint()["logs"]["a"]["offset"].as_u64() == Some(size)
    });
    let cp = checkpoint();
    assert!(saved, "the checkpoint never reached offset {size}: {cp}");
    let generation =
        std::fs::read_to_string(rill.dir.path().join("state/index/rill-generation")).unwrap();
    assert_eq!(cp["generation"].as_str(), Some(generation.trim()), "{cp}");
}

/// The parser confirms lines to the tap once they are in its write-ahead
/// log, before they are indexed: killed then, it indexes them after its
/// restart from the log (the tap holds them no more).
#[test]
fn lines_confirmed_but_not_yet_indexed_are_indexed_after_the_parser_is_killed() {
    const N: usize = 400_000;
    let h = OneHost::running(&["a"]);
    append_lines(&h, "a", 0..N);
    let size = std::fs::metadata(h.file("a")).unwrap().len();
    let rill = &h.rill;
    // Confirmed to the tap up to the end of the file...
    let confirmed = wait_until(Duration::from_secs(30), || {
        rill.host_status("web01")
            .is_some_and(|s| s["logs"][0]["indexed_offset"].as_u64() == Some(size))
    });
    assert!(
        confirmed,
        "never confirmed: {:?}",
        rill.host_status("web01")
    );
    let parser = rill.pid_of("parser");
    // ... and not all indexed yet.
    let searchable = rill.count("*", &[]).unwrap_or(0);
    eprintln!("searchable when the parser is killed: {searchable} of {N}");
    // SAFETY: killing the parser of the Rill under test.
    unsafe { libc::kill(parser as i32, libc::SIGKILL) };
    assert!(
        searchable < N as u64,
        "the index had every line before the kill ({searchable}): nothing left to show"
    );
    let all = wait_for(Duration::from_secs(90), || {
        rill.count("*", &[]).filter(|&n| n >= N as u64)
    });
    assert_eq!(
        all,
        Some(N as u64),
        "after the parser's restart: {:?}; log:\n{}",
        rill.count("*", &[]),
        rill.log()
    );
    assert_eq!(numbers(rill), (0..N).collect::<BTreeSet<_>>());
}

#[test]
fn a_lost_index_is_filled_again_from_the_files_still_on_the_server() {
    a_lost_index_is_filled_again("create 0644", ".1");
}

/// Rotated files compressed away (`compress`, no `delaycompress`; the
/// first renamed again to `a.log.2.gz`) are read decompressed, under the
/// same identities.
#[test]
fn a_lost_index_is_filled_again_from_compressed_rotations_too() {
    a_lost_index_is_filled_again("create 0644\n  compress", ".1.gz");
}

/// 1,000 lines over three files (two rotations by logrotate `how`, the
/// newest rotated file named `a.log<newest>`), all indexed; then the index
/// is lost and the tap reads every file again.
fn a_lost_index_is_filled_again(how: &str, newest: &str) {
    let mut h = OneHost::running(&["a"]);
    for (i, lines) in [0..400, 400..700, 700..1000].into_iter().enumerate() {
        let n = lines.end as u64;
        if i > 0 {
            logrotate(&h, "a", how)();
            assert!(h.remote.file(&format!("a.log{newest}")).exists());
            // The tap reads the new file and finishes the rotated one.
            assert!(wait_until(Duration::from_secs(20), || h
                .rill
                .host_status("web01")
                .is_some_and(|s| s["logs"][0]["last_offset"] == 0)));
        }
        append_lines(&h, "a", lines);
        assert_eq!(
            h.rill.wait_count("*", &[], n, Duration::from_secs(20)),
            Some(n)
        );
    }

    // The index is lost.
    assert!(h.rill.stop(Duration::from_secs(5)).is_some());
    std::fs::remove_dir_all(h.rill.dir.path().join("state/index")).unwrap();
    h.rill.start();
    let rill = &h.rill;
    let refilled = wait_for(Duration::from_secs(30), || {
        rill.count("*", &[]).filter(|&n| n == 1000)
    });
    let missing = || -> Vec<usize> {
        let got = numbers(rill);
        (0..1000).filter(|n| !got.contains(n)).collect()
    };
    assert_eq!(
        refilled,
        Some(1000),
        "index after the loss has {:?} lines, missing {:?}; log:\n{}",
        rill.count("*", &[]),
        missing(),
        rill.log()
    );
    assert_eq!(missing(), Vec::<usize>::new());
    assert!(
        rill.log().contains("the index was replaced"),
        "{}",
        rill.log()
    );
}

/// The index falling behind holds up no live line: with the parser stopped,
/// every line streams live while the tap holds no more than its window; the
/// lines read past the window are read again from the files (here across a
/// rotation, `how`: rename + create, or copytruncate) once the parser is
/// back, and the index gets every line exactly once.
fn a_stopped_parser_holds_up_no_live_line(how: &str) {
    const WINDOW: u64 = 100;
    let h = OneHost::new(&["a"]);
    h.rill
        .append_config(&format!("tap:\n  max_unacked_lines: {WINDOW}\n"));
    let h = OneHost::start(h, &["a"]);
    let rotate = logrotate(&h, "a", how);
    let rill = &h.rill;
    let tail = rill.tail(&["line/#", "status/web01"]);
    // Subscribed once the tap's status (once a second) comes through.
    let status = tail.collect_until(Duration::from_secs(20), |got| !got.is_empty());
    assert!(!status.is_empty(), "the subscriber never received a status");
    let numbers_in = |got: &[Value]| -> BTreeSet<usize> {
        got.iter()
            .filter_map(|v| v["body"].as_str()?.get(2..7)?.parse().ok())
            .collect()
    };
    // Line 0 goes through while everything runs: the subscriber is in.
    append_lines(&h, "a", 0..1);
    let probe = tail.collect_until(Duration::from_secs(20), |got| !got.is_empty());
    assert_eq!(numbers_in(&probe), BTreeSet::from([0]));
    assert_eq!(
        wait_for(Duration::from_secs(20), || rill
            .count("*", &[])
            .filter(|&n| n == 1)),
        Some(1)
    );

    let parser = rill.pid_of("parser");
    // SAFETY: stopping the parser of the Rill under test.
    unsafe { libc::kill(parser as i32, libc::SIGSTOP) };
    // A window's worth first (a read is taken whole while the window has
    // room: these fill it exactly), then the rest, read past the window
    // once no receipt came for 250 ms.
    let window = WINDOW as usize;
    append_lines(&h, "a", 1..1 + window);
    let mut live = numbers_in(&tail.collect_until(Duration::from_secs(30), |got| {
        numbers_in(got).len() == window
    }));
    append_lines(&h, "a", 1 + window..1000);
    // Rotated once the tap has read them (a copytruncate quicker than
    // tail's poll is lost to any follower: see the README).
    let before = tail.collect_until(Duration::from_secs(30), |got| {
        numbers_in(got).len() == 999 - window
    });
    live.extend(numbers_in(&before));
    rotate();
    // Fewer bytes than the file had: tail sees the truncation (the same
    // size again within one of its polls would not be: docs/following.md).
    append_lines(&h, "a", 1000..1500);
    let after = tail.collect_until(Duration::from_secs(30), |got| numbers_in(got).len() == 500);
    live.extend(numbers_in(&after));
    let missing: Vec<usize> = (1..1500).filter(|n| !live.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "with the parser stopped, {} lines never streamed live (first {:?}); status {:?}; log:\n{}",
        missing.len(),
        missing.first(),
        rill.host_status("web01"),
        rill.log()
    );
    let status = rill.host_status("web01").unwrap();
    let held = status["unconfirmed_lines"].as_u64().unwrap();
    assert!(held <= WINDOW, "the tap holds {held} lines: {status}");
    assert_eq!(rill.count("*", &[]), Some(1), "the parser is stopped");

    // SAFETY: resuming the parser we stopped.
    unsafe { libc::kill(parser as i32, libc::SIGCONT) };
    let all = wait_for(Duration::from_secs(60), || {
        rill.count("*", &[]).filter(|&n| n >= 1500)
    });
    assert_eq!(
        all,
        Some(1500),
        "the index after the parser came back: {:?}; status {:?}; log:\n{}",
        rill.count("*", &[]),
        rill.host_status("web01"),
        rill.log()
    );
    assert_eq!(numbers(rill), (0..1500).collect::<BTreeSet<_>>());
}

#[test]
fn a_stopped_parser_holds_up_no_live_line_across_a_rename() {
    a_stopped_parser_holds_up_no_live_line("create 0644");
}

#[test]
fn a_stopped_parser_holds_up_no_live_line_across_a_copytruncate() {
    a_stopped_parser_holds_up_no_live_line("copytruncate");
}

/// A server that stops answering while its TCP stack still acknowledges
/// (sshd stopped, not the network) is noticed by the receive deadline, and
/// the tap comes back once it answers again.
/// Two logs of one folder whose files start with the same bytes, both
/// rotated by copytruncate while the parser is stopped: each one's gap is
/// read from its own copy, though the other's is newer and fits as well.
#[test]
fn two_logs_that_start_alike_each_read_their_gap_from_their_own_copy() {
    let h = OneHost::new(&["app", "api"]);
    h.rill.append_config("tap:\n  max_unacked_lines: 100\n");
    let h = OneHost::start(h, &["app", "api"]);
    let rill = &h.rill;
    let header = "# the same first line in both logs, longer than the 64 bytes of a fingerprint\n";
    for log in ["app", "api"] {
        h.append(log, header.as_bytes());
    }
    assert_eq!(
        rill.wait_count("*", &[], 2, Duration::from_secs(20)),
        Some(2)
    );
    let rotate_app = logrotate(&h, "app", "copytruncate");
    let rotate_api = logrotate(&h, "api", "copytruncate");
    let parser = rill.pid_of("parser");
    // SAFETY: stopping the parser of the Rill under test.
    unsafe { libc::kill(parser as i32, libc::SIGSTOP) };
    for log in ["app", "api"] {
        let text: String = (0..1000).map(|n| format!("{log} line {n}\n")).collect();
        h.append(log, text.as_bytes());
    }
    // Both read to their end by the live readers (beyond the window: gaps).
    let read_to_end = |log: &str| {
        let size = std::fs::metadata(h.file(log)).unwrap().len();
        wait_until(Duration::from_secs(30), || {
            rill.host_status("web01").is_some_and(|s| {
                s["logs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["log"] == log && l["last_offset"].as_u64() == Some(size))
            })
        })
    };
    assert!(
        read_to_end("app") && read_to_end("api"),
        "{:?}",
        rill.host_status("web01")
    );
    rotate_app();
    // api's copy newer than app's, to the second (`test -nt`).
    std::thread::sleep(Duration::from_millis(1100));
    rotate_api();
    // SAFETY: resuming the parser we stopped.
    unsafe { libc::kill(parser as i32, libc::SIGCONT) };
    let all = rill.wait_count("*", &[], 2002, Duration::from_secs(60));
    assert_eq!(
        all,
        Some(2002),
        "status {:?}; log:\n{}",
        rill.host_status("web01"),
        rill.log()
    );
    for log in ["app", "api"] {
        let out = rill.rill(&["search", "--json", "--limit", "10000", "--log", log, "*"]);
        let bodies: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["body"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .filter(|b| !b.starts_with('#'))
            .collect();
        let want: BTreeSet<String> = (0..1000).map(|n| format!("{log} line {n}")).collect();
        assert_eq!(bodies, want, "log {log} holds other lines than its own");
    }
}

/// `kill -9` of `ssh_tap` while 5,000 lines a second stream: the tap that
/// comes back resumes from the index's position, and what the killed one
/// had published live is not published live again (each file's live
/// position is kept next to its checkpoint).
#[test]
fn a_killed_tap_publishes_no_line_live_twice() {
    let h = OneHost::running(&["a"]);
    let rill = &h.rill;
    let tail = rill.tail(&["line/web01/a"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), h.file("a"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            let (start, mut n) = (Instant::now(), 0usize);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // 5,000 lines a second, in writes every 10 ms.
                let due = (start.elapsed().as_secs_f64() * 5_000.0) as usize;
                let text: String = (n..due).map(|k| format!("k={k:07} streaming\n")).collect();
                f.write_all(text.as_bytes()).unwrap();
                n = due;
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };
    let before = tail.collect_until(Duration::from_secs(20), |got| got.len() >= 5_000);
    assert!(
        before.len() >= 5_000,
        "lines never streamed: {}",
        before.len()
    );
    let old = rill.ssh_tap_pids();
    assert_eq!(old.len(), 1, "one ssh_tap: {old:?}");
    // SAFETY: killing the tap of the Rill under test.
    unsafe { libc::kill(old[0] as i32, libc::SIGKILL) };
    let epoch = before[0]["epoch"].clone();
    // Lines of the new run come through.
    let mut after = tail.collect_until(Duration::from_secs(30), |got| {
        got.iter().filter(|v| v["epoch"] != epoch).count() >= 5_000
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(
        after.iter().filter(|v| v["epoch"] != epoch).count() >= 5_000,
        "the restarted tap streamed too little; log:\n{}",
        rill.log()
    );
    after.extend(tail.collect_until(Duration::from_secs(5), |got| {
        got.last()
            .is_some_and(|v| v["body"] == format!("k={:07} streaming", written - 1))
    }));
    let mut seen: BTreeMap<(String, u64), Value> = BTreeMap::new();
    for v in before.iter().chain(&after) {
        let key = (
            v["file_id"].as_str().unwrap().to_owned(),
            v["offset"].as_u64().unwrap(),
        );
        if let Some(first) = seen.insert(key, v.clone()) {
            panic!("published live twice: {first} and {v}");
        }
    }
}

/// One log `a` whose tap holds at most 100 unconfirmed lines, its first
/// line indexed, then its parser stopped (SIGSTOP); and the parser's pid.
fn stalled_after_one_line() -> (OneHost, u32) {
    let h = OneHost::new(&["a"]);
    h.rill.append_config("tap:\n  max_unacked_lines: 100\n");
    let h = OneHost::start(h, &["a"]);
    append_lines(&h, "a", 0..1);
    assert_eq!(
        h.rill.wait_count("*", &[], 1, Duration::from_secs(20)),
        Some(1)
    );
    let parser = h.rill.pid_of("parser");
    // SAFETY: stopping the parser of the Rill under test.
    unsafe { libc::kill(parser as i32, libc::SIGSTOP) };
    (h, parser)
}

/// Waits until the tap follows the file at `h.file("a")`, as it is now,
/// to its end: that inode (the file it replaced may have had the same
/// size) and that size.
fn followed_to_its_end(h: &OneHost, what: &str) {
    use std::os::unix::fs::MetadataExt;
    let now = std::fs::metadata(h.file("a")).unwrap();
    let (size, ino) = (now.len(), now.ino().to_string());
    let ok = wait_until(Duration::from_secs(20), || {
        h.rill.host_status("web01").is_some_and(|s| {
            let l = &s["logs"][0];
            let file_ino = l["file_id"].as_str().and_then(|id| id.split(':').nth(1));
            file_ino == Some(ino.as_str()) && l["last_offset"].as_u64() == Some(size)
        })
    });
    assert!(
        ok,
        "{what}: never followed to {size}: {:?}",
        h.rill.host_status("web01")
    );
}

/// logrotate `compress` without `delaycompress` twice while the parser is
/// stopped for 30 s: each rotated file is gone from its folder at once, but
/// the script that read it holds it open until the index took its gap.
#[test]
fn lines_of_files_compressed_away_while_the_parser_was_stopped_are_indexed_once() {
    let (h, parser) = stalled_after_one_line();
    let rill = &h.rill;
    let rotate = logrotate(&h, "a", "compress");
    let stopped = Instant::now();
    let followed = |what: &str| followed_to_its_end(&h, what);
    append_lines(&h, "a", 1..1000);
    rotate();
    assert!(!h.file("a").exists() || std::fs::metadata(h.file("a")).unwrap().len() == 0);
    append_lines(&h, "a", 1000..2000);
    followed("the second file");
    rotate();
    append_lines(&h, "a", 2000..2500);
    followed("the third file");
    let gz = std::fs::read_dir(h.remote.path.clone())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".gz")
        })
        .count();
    assert_eq!(gz, 2, "logrotate compressed both rotated files");
    // The fault lasts 30 s.
    std::thread::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed()));
    // SAFETY: resuming the parser we stopped.
    unsafe { libc::kill(parser as i32, libc::SIGCONT) };
    let all = wait_for(Duration::from_secs(60), || {
        rill.count("*", &[]).filter(|&n| n >= 2500)
    });
    assert_eq!(
        all,
        Some(2500),
        "status {:?}; log:\n{}",
        rill.host_status("web01"),
        rill.log()
    );
    assert_eq!(numbers(rill), (0..2500).collect::<BTreeSet<_>>());
}

/// The hold on a rotated file ends with the tap: with the parser stopped,
/// logrotate compresses the file away (no `delaycompress`) and the tap is
/// killed. The new tap reads the gap from `a.log.1.gz`, decompressed, under
/// the same identities: every line indexed once.
#[test]
fn a_gap_is_read_from_the_compressed_rotation_after_a_tap_restart() {
    let (h, parser) = stalled_after_one_line();
    let rill = &h.rill;
    append_lines(&h, "a", 1..1000);
    logrotate(&h, "a", "compress")();
    assert!(h.remote.file("a.log.1.gz").exists());
    append_lines(&h, "a", 1000..1200);
    followed_to_its_end(&h, "the new file");
    rill.kill_tap();
    // SAFETY: resuming the parser we stopped.
    unsafe { libc::kill(parser as i32, libc::SIGCONT) };
    let all = wait_for(Duration::from_secs(60), || {
        rill.count("*", &[]).filter(|&n| n >= 1200)
    });
    assert_eq!(
        all,
        Some(1200),
        "status {:?}; log:\n{}",
        rill.host_status("web01"),
        rill.log()
    );
    assert_eq!(numbers(rill), (0..1200).collect::<BTreeSet<_>>());
}

#[test]
fn a_server_that_stops_answering_is_noticed_and_followed_again() {
    let h = OneHost::running(&["a"]);
    let rill = &h.rill;
    let serving = h.sshd.connection_pids();
    assert!(!serving.is_empty(), "sshd serves the tap's connection");
    let t = Instant::now();
    for pid in &serving {
        // SAFETY: stopping processes of the test's own sshd.
        unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
    }
    let noticed = wait_until(Duration::from_secs(30), || {
        rill.host_status("web01")
            .is_some_and(|s| s["connected"] == false)
    });
    let took = t.elapsed();
    for pid in &serving {
        unsafe { libc::kill(*pid as i32, libc::SIGCONT) };
    }
    assert!(
        noticed && took <= Duration::from_secs(15),
        "noticed after {took:?}: {:?}",
        rill.host_status("web01")
    );
    eprintln!("a stopped sshd was noticed after {took:.1?}");
    let error = rill.host_status("web01").unwrap()["error"].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("presumed dead")),
        "{error}"
    );
    assert!(rill.wait_following("web01", Duration::from_secs(30)));
    append_lines(&h, "a", 0..10);
    assert_eq!(
        wait_for(Duration::from_secs(20), || rill
            .count("*", &[])
            .filter(|&n| n == 10)),
        Some(10)
    );
}

/// 2,000 hosts, every 100th with a listening SSH port: each is reported, up
/// or down as it is, within a few probe rounds.
#[test]
fn masspinger_reports_two_thousand_hosts() {
    const HOSTS: usize = 2000;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("state_dir: ./state\nhosts:\n");
    for i in 0..HOSTS {
        let port = if i.is_multiple_of(100) { open } else { closed };
        yaml.push_str(&format!(
            "  h{i}: {{address: 127.0.0.1, port: {port}, user: u, auth: {{agent: true}}}}\n"
        ));
    }
    yaml.push_str("logs:\n  x: {path: /x, hosts: [h0]}\n");
    let config = dir.path().join("rill.yaml");
    std::fs::write(&config, yaml).unwrap();
    let run = dir.path().join("state/run");
    std::fs::create_dir_all(&run).unwrap();
    // Stand in for the supervisor's bus: masspinger publishes there.
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(100_000).unwrap();
    sub.set_subscribe(b"ping/").unwrap();
    sub.bind(&format!("ipc://{}/bus.sock", run.display()))
        .unwrap();

    let mut pinger = Command::new(bin("masspinger"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    while seen.len() < HOSTS && start.elapsed() < Duration::from_secs(30) {
        if sub.poll(zmq::POLLIN, 200).unwrap() == 0 {
            continue;
        }
        while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
            let ping: Value = serde_json::from_slice(&frames[1]).unwrap();
            seen.insert(
                ping["host"].as_str().unwrap().to_owned(),
                ping["up"].as_bool().unwrap(),
            );
        }
    }
    let took = start.elapsed();
    let _ = pinger.kill();
    let _ = pinger.wait();
    assert_eq!(seen.len(), HOSTS, "hosts reported within 30 s");
    for (host, up) in &seen {
        let i: usize = host[1..].parse().unwrap();
        assert_eq!(*up, i.is_multiple_of(100), "{host}");
    }
    eprintln!("masspinger reported {HOSTS} hosts in {took:.1?}");
}
