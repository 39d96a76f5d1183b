//! Issue 5, done-when: eventually 1:1 through partitions, crashes and slow
//! consumers.
//!
//! Three writers append uniquely numbered lines to three logs on two hosts
//! (two real sshd on loopback) for several minutes, with the real logrotate
//! rotating them, while one fault after another is injected:
//!
//! 1. a black-holed network to host 1 (iptables DROP, no reset) for 30 s,
//!    with a rotation during it;
//! 2. host 2's sshd restarted;
//! 3. kill -9 of ssh_tap, robust_ssh_tap, parser, and the supervisor (which
//!    is then started again);
//! 4. the parser stopped (SIGSTOP) for 60 s while writing goes on;
//! 5. a `rill tail` subscriber that stops reading for 60 s during a burst.
//!
//! Then: every number is in the index exactly once per log, no component's
//! memory grew past a fixed bound, the stalled subscriber reported its drops,
//! a subscriber running throughout kept receiving across the supervisor's
//! restart, and the time each fault took to heal is printed.
//!
//! The writers, the heals and the report of a failed heal are in
//! `rill_e2e::numbered_lines` and `rill_e2e::fault_run`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_e2e::fault_run::{File, Run};
use rill_e2e::numbered_lines::{number, Writer};
use rill_e2e::*;

/// The taps' window, small so that a stopped parser soon fills it.
const WINDOW: usize = 1000;
/// A read is never cut in two by the window: it holds up to one read
/// (128 KiB of lines, README `tap.max_unacked_lines`) more. The writers'
/// lines are 55 bytes.
const ONE_READ: usize = (128 << 10) / 55;
/// Lines written in one go into log `a` while a subscriber is stopped.
const BURST: usize = 40_000;
/// Memory bounds (KiB) per component, over the whole run.
const RSS_BOUNDS: [(&str, u64); 5] = [
    ("ssh_tap", 64 << 10),
    ("robust_ssh_tap", 32 << 10),
    ("masspinger", 64 << 10),
    ("supervisor", 64 << 10),
    ("parser", 400 << 10),
];

#[test]
fn one_fault_after_another_and_the_index_still_holds_every_line_once() {
    let user = TestUser::get().unwrap();
    let s1 = Sshd::start(SshdOptions::default()).unwrap();
    let mut s2 = Sshd::start(SshdOptions::default()).unwrap();
    let key = user.authorize_new_key().unwrap();
    let remote = user.scratch_dir().unwrap();
    for name in ["a", "b", "c"] {
        remote.append(&format!("{name}.log"), b"").unwrap();
    }
    let paths: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|n| remote.file(&format!("{n}.log")))
        .collect();
    let host = |name, sshd: &Sshd| TestHost {
        name,
        port: sshd.port(),
        user: &user.name,
        auth: TestAuth::Key(&key.private),
        known_hosts: "strict",
    };
    let mut rill = Rill::new(
        &[host("h1", &s1), host("h2", &s2)],
        &[
            TestLog {
                name: "a",
                path: &paths[0],
                hosts: &["h1"],
            },
            TestLog {
                name: "b",
                path: &paths[1],
                hosts: &["h1"],
            },
            TestLog {
                name: "c",
                path: &paths[2],
                hosts: &["h2"],
            },
        ],
        &[s1.known_hosts_line(), s2.known_hosts_line()],
    );
    rill.append_config(&format!("tap:\n  max_unacked_lines: {WINDOW}\n"));
    let logrotate_conf = rill.dir.path().join("logrotate.conf");
    let logrotate_state = rill.dir.path().join("logrotate.state");
    std::fs::write(
        &logrotate_conf,
        format!(
            "{} {{\n  su {u} {u}\n  rotate 20\n  missingok\n  create 0644\n  compress\n  delaycompress\n}}\n",
            paths
                .iter()
                .map(|p| format!("\"{}\"", p.display()))
                .collect::<Vec<_>>()
                .join(" "),
            u = user.name
        ),
    )
    .unwrap();
    rill.start();
    for h in ["h1", "h2"] {
        assert!(
            rill.wait_following(h, Duration::from_secs(30)),
            "{h}: {:?}",
            rill.host_status(h)
        );
    }
    let rss = RssWatch::start(
        rill.config.display().to_string(),
        &RSS_BOUNDS.map(|(name, _)| name),
    );
    // A subscriber that runs throughout, and must keep receiving.
    let steady = rill.tail(&["line/#"]);
    let files = vec![
        File {
            host: "h1",
            log: "a",
            writer: Writer::start(paths[0].clone()),
        },
        File {
            host: "h1",
            log: "b",
            writer: Writer::start(paths[1].clone()),
        },
        File {
            host: "h2",
            log: "c",
            writer: Writer::start(paths[2].clone()),
        },
    ];
    let mut run = Run {
        rill,
        files,
        logrotate_conf,
        logrotate_state,
        heals: Vec::new(),
    };
    std::thread::sleep(Duration::from_secs(3));
    run.heal("start");

    // 1. A black-holed network to h1 for 30 s, rotated in the middle.
    let t0 = Instant::now();
    let hole = BlackHole::start(s1.port());
    let noticed = wait_until(Duration::from_secs(20), || {
        run.rill
            .host_status("h1")
            .is_some_and(|h| h["connected"] == false)
    });
    let detected = t0.elapsed();
    assert!(
        noticed && detected <= Duration::from_secs(15),
        "the black hole was noticed after {detected:?} (at most 15 s): {:?}",
        run.rill.host_status("h1")
    );
    eprintln!("black hole noticed after {detected:.1?}");
    std::thread::sleep(Duration::from_secs(15).saturating_sub(t0.elapsed()));
    run.rotate();
    std::thread::sleep(Duration::from_secs(30).saturating_sub(t0.elapsed()));
    drop(hole);
    run.heal("black hole of 30 s with a rotation");

    // 2. h2's sshd restarted.
    s2.restart().unwrap();
    run.heal("sshd restarted");
    run.rotate();

    // 3. kill -9 of each component.
    let old = run.signal("ssh_tap", "--host h1", libc::SIGKILL);
    run.wait_restarted("ssh_tap", "--host h1", old);
    run.heal("kill -9 ssh_tap");
    let old = run.signal("robust_ssh_tap", "--host h2", libc::SIGKILL);
    run.wait_restarted("robust_ssh_tap", "--host h2", old);
    run.heal("kill -9 robust_ssh_tap");
    let old = run.signal("parser", "", libc::SIGKILL);
    run.wait_restarted("parser", "", old);
    run.heal("kill -9 parser");
    let seen_before = steady.rx.try_iter().count();
    run.rill.kill_supervisor();
    assert!(
        wait_until(Duration::from_secs(10), || run
            .pids("ssh_tap", "")
            .is_empty()),
        "the supervisor's children die with it"
    );
    run.rill.start();
    run.heal("kill -9 supervisor, started again");
    // The subscriber that ran throughout still receives, from the new
    // supervisor's proxy.
    let after_restart = wait_for(Duration::from_secs(20), || {
        let n = steady.rx.try_iter().count();
        (n > 0).then_some(n)
    });
    assert!(
        after_restart.is_some(),
        "a subscriber started before the supervisor's restart received nothing after it (had {seen_before} before)"
    );
    run.rotate();

    // 4. The parser stopped for 60 s while writing goes on.
    let parser = run.signal("parser", "", libc::SIGSTOP);
    let _ = steady.rx.try_iter().count();
    std::thread::sleep(Duration::from_secs(30));
    // The live stream goes on; the taps hold no more than their window, and
    // the index falls behind the files (the rest waits on the server).
    let streamed = steady.rx.try_iter().count();
    assert!(
        streamed > 0,
        "no line streamed live while the parser was stopped"
    );
    let h1 = run.rill.host_status("h1").unwrap();
    let held = h1["unconfirmed_lines"].as_u64().unwrap();
    let unindexed: u64 = h1["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lag_bytes"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        held <= (WINDOW + ONE_READ) as u64,
        "h1's tap holds {held} unconfirmed lines, more than its window and one read: {h1}"
    );
    assert!(
        unindexed > 0,
        "the index kept up with h1 although the parser was stopped: {h1}"
    );
    eprintln!("parser stopped: {streamed} lines streamed live in 30 s; h1's tap holds {held} lines, {unindexed} bytes wait on the server");
    std::thread::sleep(Duration::from_secs(30));
    // SAFETY: resuming the parser we stopped.
    unsafe { libc::kill(parser as i32, libc::SIGCONT) };
    run.heal("parser stopped for 60 s");

    // 5. A subscriber that stops reading for 60 s during a burst.
    let mut stalled = Command::new(bin("rill"))
        .args(["tail", "--config"])
        .arg(&run.rill.config)
        .arg("line/h1/a")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    {
        let (out, received) = (stalled.stdout.take().unwrap(), Arc::clone(&received));
        std::thread::spawn(move || {
            for _ in BufReader::new(out).lines().map_while(Result::ok) {
                received.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let said: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (err, said) = (stalled.stderr.take().unwrap(), Arc::clone(&said));
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                said.lock().unwrap().push(l);
            }
        });
    }
    assert!(
        wait_until(Duration::from_secs(20), || received.load(Ordering::SeqCst)
            > 0),
        "the second subscriber receives"
    );
    // SAFETY: stopping and resuming our own child.
    unsafe { libc::kill(stalled.id() as i32, libc::SIGSTOP) };
    let t = Instant::now();
    run.files[0].writer.burst.store(BURST, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(60).saturating_sub(t.elapsed()));
    unsafe { libc::kill(stalled.id() as i32, libc::SIGCONT) };
    let reported = wait_until(Duration::from_secs(30), || {
        said.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("dropped so far"))
            && run.rill.status().is_some_and(|s| {
                s["subscribers"].as_array().is_some_and(|subs| {
                    subs.iter().any(|x| {
                        x["id"] == format!("rill-tail-{}", stalled.id())
                            && x["dropped"].as_u64().unwrap_or(0) > 0
                    })
                })
            })
    });
    assert!(
        reported,
        "the stalled subscriber reports its drops: stderr {:?}, status {:?}",
        said.lock().unwrap(),
        run.rill.status().map(|s| s["subscribers"].clone())
    );
    eprintln!(
        "stalled subscriber: {}",
        said.lock().unwrap().last().cloned().unwrap_or_default()
    );
    run.heal("a subscriber stopped for 60 s during a burst");
    let _ = stalled.kill();
    let _ = stalled.wait();

    // Writing stops; everything must arrive, each number exactly once.
    let mut totals = Vec::new();
    for f in &mut run.files {
        totals.push((f.host, f.log, f.writer.finish()));
    }
    run.heal("the end");
    for (host, log, n) in totals {
        let mut seen = BTreeSet::new();
        for (body, _, _) in run.hits(host, log).unwrap() {
            let k = number(&body)
                .unwrap_or_else(|| panic!("{host}/{log}: not a line written: {body:?}"));
            assert!(seen.insert(k), "{host}/{log}: line {k} twice");
        }
        assert_eq!(seen.len(), n, "{host}/{log}: every line written, once");
        assert_eq!(seen.last().copied(), n.checked_sub(1));
        eprintln!("{host}/{log}: {n} lines written, {n} indexed, none twice");
    }

    rss.stop.store(true, Ordering::SeqCst);
    let max = rss.max.lock().unwrap().clone();
    eprintln!("highest RSS (KiB): {max:?}");
    for (name, bound) in RSS_BOUNDS {
        let seen = max.get(name).copied();
        assert!(seen.is_some(), "{name} was sampled");
        assert!(
            seen.unwrap() <= bound,
            "{name} grew to {} KiB, past {bound} KiB",
            seen.unwrap()
        );
    }
    for (fault, took) in &run.heals {
        eprintln!("heal time: {fault}: {took:.1?}");
    }
    drop(steady);
}
