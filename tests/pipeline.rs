//! Issue 2, done-when 1: lines appended to a remote file after the supervisor
//! started all reach `rill search` (exactly) and a `rill tail` started before
//! the writes, through a real OpenSSH sshd.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rill_e2e::*;
use serde_json::Value;

const LINES: usize = 10_000;

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn ten_thousand_lines_reach_search_and_a_live_tail() {
    let mut h = OneHost::new(&["app"]);
    // The file exists with old content that must NOT be indexed (new lines only).
    h.append("app", b"old line before rill started\n");
    h.rill.start();
    assert!(
        h.rill.wait_following("web01", Duration::from_secs(20)),
        "never followed; log:\n{}",
        h.rill.log()
    );

    // The tail also subscribes to status/, which the tap publishes every
    // second through the same proxy: once one arrives, the line/ subscription
    // (sent together with it) has reached the publisher too.
    let tail = h.rill.tail(&["line/+/app", "status/web01"]);
    let ready = tail.collect_until(Duration::from_secs(15), |got| {
        got.iter().any(|v| v["topic"] == "status/web01")
    });
    assert!(
        ready.iter().any(|v| v["topic"] == "status/web01"),
        "tail never connected"
    );

    let start_offset = std::fs::metadata(h.file("app")).unwrap().len();
    let mut expected_offsets = Vec::with_capacity(LINES);
    let mut offset = start_offset;
    for i in 0..LINES {
        let line = format!("request {i:05} GET /item/{i} status=200\n");
        expected_offsets.push(offset);
        offset += line.len() as u64;
        h.append("app", line.as_bytes());
    }
    let written_at = Instant::now();
    let rill = &mut h.rill;

    let counted = wait_for(Duration::from_secs(10), || {
        rill.count("*", &[]).filter(|&n| n as usize >= LINES)
    });
    let took = written_at.elapsed();
    assert_eq!(
        counted,
        Some(LINES as u64),
        "search count within 10 s of the last write; log:\n{}",
        rill.log()
    );
    eprintln!("all {LINES} lines searchable {took:?} after the last write");

    let got = tail.collect_until(Duration::from_secs(10), |got| {
        got.iter()
            .filter(|v| v["topic"] == "line/web01/app")
            .count()
            >= LINES
    });
    let lines: Vec<_> = got
        .iter()
        .filter(|v| v["topic"] == "line/web01/app")
        .collect();
    assert_eq!(lines.len(), LINES, "tail printed every line once");
    let mut seen = HashSet::new();
    for (i, v) in lines.iter().enumerate() {
        let body = v["body"].as_str().unwrap();
        assert_eq!(
            body,
            format!("request {i:05} GET /item/{i} status=200"),
            "in order, unchanged"
        );
        assert_eq!(v["host"], "web01");
        assert_eq!(v["log"], "app");
        assert_eq!(
            v["offset"].as_u64().unwrap(),
            expected_offsets[i],
            "offset of line {i}"
        );
        assert!(seen.insert(body.to_owned()));
    }

    // Exactly: still 10,000 a moment later (no late duplicates), the old line
    // is not there, and individual lines are findable.
    assert_eq!(rill.count("*", &[]), Some(LINES as u64));
    assert_eq!(rill.count("\"old line before\"", &[]), Some(0));
    let hits = json_lines(&rill.rill(&["search", "--json", "--limit", "3", "09999"]));
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["body"], "request 09999 GET /item/9999 status=200");
    assert_eq!(
        hits[0]["offset"].as_u64(),
        Some(expected_offsets[LINES - 1])
    );

    // Newest first, and --limit holds.
    let newest = json_lines(&rill.rill(&["search", "--json", "--limit", "2", "*"]));
    assert_eq!(newest.len(), 2);
    assert!(newest[0]["offset"].as_u64() > newest[1]["offset"].as_u64());

    // Search still works after the supervisor stopped.
    let stopped = rill.stop(Duration::from_secs(5));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "supervisor exits 0 on SIGTERM: {stopped:?}; log:\n{}",
        rill.log()
    );
    assert_eq!(rill.count("*", &[]), Some(LINES as u64));
}

#[test]
fn a_file_that_does_not_exist_yet_is_followed_once_it_appears() {
    let mut h = OneHost::new(&["later"]);
    h.rill.start();
    let rill = &h.rill;
    let waiting = wait_until(Duration::from_secs(20), || {
        rill.host_status("web01").is_some_and(|s| {
            s["logs"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not exist yet"))
        })
    });
    assert!(
        waiting,
        "status shows the log waiting for its file; log:\n{}",
        rill.log()
    );
    h.append("later", b"first\nsecond\n");
    assert_eq!(
        wait_for(Duration::from_secs(15), || rill
            .count("*", &[])
            .filter(|&n| n == 2)),
        Some(2),
        "{}",
        rill.log()
    );
}

#[test]
fn a_log_whose_folder_does_not_exist_yet_is_followed_once_both_appear() {
    let user = TestUser::get().unwrap();
    let sshd = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    let folder = remote.path.join("not-yet");
    let path = folder.join("app.log");
    let mut rill = Rill::new(
        &[TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        }],
        &[TestLog {
            name: "app",
            path: &path,
            hosts: &["web01"],
        }],
        &[sshd.known_hosts_line()],
    );
    rill.start();
    let rill = &rill;
    let error = || {
        rill.host_status("web01")
            .and_then(|s| s["logs"][0]["error"].as_str().map(str::to_owned))
    };
    assert!(
        wait_until(Duration::from_secs(20), || error()
            .is_some_and(|e| e.contains("nor its folder"))),
        "status says the folder is missing too: {:?}\n{}",
        error(),
        rill.log()
    );
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(&path, b"first\nsecond\n").unwrap();
    assert_eq!(
        wait_for(Duration::from_secs(15), || rill
            .count("*", &[])
            .filter(|&n| n == 2)),
        Some(2),
        "{}",
        rill.log()
    );
    assert_eq!(error(), None, "the error clears once the file is followed");
}

/// `tap.stream_poll` is how often GNU tail on the server looks for new
/// lines: the setting reaches the server's `tail`, and lines still arrive.
#[test]
fn stream_poll_sets_how_often_the_servers_tail_looks() {
    let h = OneHost::new(&["app"]);
    h.rill.append_config("tap:\n  stream_poll: 250ms\n");
    let h = OneHost::start(h, &["app"]);
    // Tests run side by side as the same server user: only the tails
    // below this test's own sshd count.
    let tails = || -> Vec<String> {
        let ours = h.sshd.connection_pids();
        h.user
            .processes()
            .into_iter()
            .filter(|p| p.cmdline.starts_with("tail -s ") && ours.contains(&p.pid))
            .map(|p| p.cmdline)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || !tails().is_empty()),
        "no tail on the server: {:?}",
        h.user.processes()
    );
    assert!(
        tails().iter().all(|c| c.starts_with("tail -s 0.25 ")),
        "{:?}",
        tails()
    );
    h.append("app", b"polled\n");
    assert_eq!(
        wait_for(Duration::from_secs(15), || h
            .rill
            .count("polled", &[])
            .filter(|&n| n == 1)),
        Some(1),
        "{}",
        h.rill.log()
    );
}
