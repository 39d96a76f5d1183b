//! Issue 4, done-when 3: 8 clients hammer one host's session socket for
//! 30 s with a random mix of create/delete/send/info. Nothing crashes, the
//! cap is never exceeded, every request gets exactly one reply, and at the
//! end `get_session_info` agrees with the server's process table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_e2e::session::*;
use rill_e2e::*;
use serde_json::json;

const CLIENTS: usize = 8;
const HAMMER_FOR: Duration = Duration::from_secs(30);
const MAX: usize = 8;
const POOL: usize = 5;

/// What the clients saw, summed.
#[derive(Default, Debug)]
struct Tally {
    requests: u64,
    ok: BTreeMap<&'static str, u64>,
    failed: BTreeMap<String, u64>,
    most_sessions_seen: usize,
}

/// The expected kinds of failure under this load, by a phrase of the reason.
const EXPECTED_FAILURES: [&str; 3] = ["cap reached", "was deleted", "has ended"];

#[test]
fn eight_clients_hammer_the_session_socket_for_30_seconds() {
    let h = OneHost::new(&["app"]);
    h.rill
        .add_host_yaml("web01", &format!("sessions: {{max: {MAX}, pool: {POOL}}}"));
    let mut h = OneHost::start(h, &["app"]);
    let endpoint = h.rill.sessions_ipc("web01");
    let mut probe = SessionClient::connect(&endpoint, Kind::Req);
    assert!(
        probe.wait_until_served(Duration::from_secs(20)),
        "{}",
        h.rill.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || remote_shells(&h.user).len()
            == POOL),
        "the pool is warm: {:?}",
        remote_shells(&h.user)
    );
    let tap = h.rill.ssh_tap_pids();
    assert_eq!(tap.len(), 1);

    // Every id ever handed out, shared so clients delete and feed each
    // other's sessions (and ones already gone).
    let handed_out = Arc::new(Mutex::new(Vec::<String>::new()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    // The server's process table, sampled while the clients run.
    let user = TestUser::get().unwrap();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while started.elapsed() < HAMMER_FOR {
            peak = peak.max(remote_shells(&user).len());
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    });
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let endpoint = endpoint.clone();
            let handed_out = Arc::clone(&handed_out);
            let tally = Arc::clone(&tally);
            std::thread::spawn(move || {
                let kind = if n % 2 == 0 { Kind::Req } else { Kind::Dealer };
                hammer(&endpoint, kind, n as u64, &handed_out, &tally)
            })
        })
        .collect();
    for t in threads {
        if t.join().is_err() {
            panic!(
                "a client failed (see its panic above); log:\n{}",
                h.rill.log()
            );
        }
    }
    let elapsed = started.elapsed();
    let peak_shells = sampler.join().unwrap();
    let logins = h.sshd.log().matches("Accepted publickey").count();
    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    let handed_out = handed_out.lock().unwrap().clone();
    eprintln!(
        "hammer: {} requests in {:.1}s ({:.0}/s) by {CLIENTS} clients; ok {:?}; failed {:?}; \
         {} sessions handed out; at most {} open at once; at most {peak_shells} shells on the \
         server at a sample (open + pooled + closing); {logins} SSH logins (1 for logs)",
        tally.requests,
        elapsed.as_secs_f64(),
        tally.requests as f64 / elapsed.as_secs_f64(),
        tally.ok,
        tally.failed,
        handed_out.len(),
        tally.most_sessions_seen
    );
    assert!(tally.most_sessions_seen <= MAX, "cap exceeded: {tally:?}");
    assert!(
        tally.ok.get("create_session").copied().unwrap_or(0) > 20,
        "{tally:?}"
    );
    assert!(
        tally.ok.get("delete_session").copied().unwrap_or(0) > 20,
        "{tally:?}"
    );
    assert!(
        tally.ok.get("send_data_to_session").copied().unwrap_or(0) > 20,
        "{tally:?}"
    );

    // Nothing crashed.
    assert_eq!(h.rill.ssh_tap_pids(), tap, "{}", h.rill.log());
    assert!(!h.rill.log().contains("panicked"), "{}", h.rill.log());

    // The server's list agrees with the process table: every listed
    // session has its shell, and the only other shells are the pool.
    let listed: BTreeSet<String> = probe.sessions().into_keys().collect();
    assert!(listed.len() <= MAX);
    let agreed = wait_until(Duration::from_secs(30), || {
        let remote = remote_shells(&h.user);
        listed.iter().all(|id| remote.contains_key(id)) && remote.len() == listed.len() + POOL
    });
    assert!(
        agreed,
        "listed {listed:?}, on the server {:?}\n{}",
        remote_shells(&h.user),
        h.rill.log()
    );
    let pooled: BTreeSet<String> = remote_shells(&h.user)
        .into_keys()
        .filter(|id| !listed.contains(id))
        .collect();
    assert!(
        pooled.iter().all(|id| !handed_out.contains(id)),
        "pooled shells were never handed out (no reuse)"
    );
    // Deleting what is left leaves exactly the pool.
    for id in &listed {
        let r = probe.call("delete_session", json!({"session_id": id}));
        assert_eq!(r["status"], "ok", "{r}");
    }
    assert!(probe.sessions().is_empty());
    assert!(
        wait_until(Duration::from_secs(20), || {
            let remote = remote_shells(&h.user);
            remote.len() == POOL && remote.keys().all(|id| !handed_out.contains(id))
        }),
        "only the pool is left: {:?}",
        remote_shells(&h.user)
    );
    // Stopping Rill ends every shell.
    assert!(h.rill.stop(Duration::from_secs(10)).is_some());
    assert!(
        wait_until(Duration::from_secs(10), || remote_shells(&h.user)
            .is_empty()),
        "no shell outlives the supervisor: {:?}",
        remote_shells(&h.user)
    );
    eprintln!(
        "hammer: at the end {} sessions were listed, each with its shell on the server, \
         plus the {POOL} pooled shells and nothing else",
        listed.len()
    );
}

/// One client's 30 s: every request must get exactly its reply.
fn hammer(
    endpoint: &str,
    kind: Kind,
    seed: u64,
    handed_out: &Mutex<Vec<String>>,
    tally: &Mutex<Tally>,
) {
    let mut client = SessionClient::connect(endpoint, kind);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let end = Instant::now() + HAMMER_FOR;
    let pick = |rng: &mut Rng| {
        let ids = handed_out.lock().unwrap();
        // Mostly recent sessions (likely open), sometimes any.
        let recent = ids.len().saturating_sub(12);
        match ids.len() {
            0 => unreachable!("only picked once a session was handed out"),
            n if rng.below(4) == 0 => ids[rng.below(n)].clone(),
            n => ids[recent + rng.below(n - recent)].clone(),
        }
    };
    while Instant::now() < end {
        let none_yet = handed_out.lock().unwrap().is_empty();
        let roll = if none_yet { 0 } else { rng.below(100) };
        let (command, fields) = match roll {
            0..=29 => ("create_session", json!({})),
            30..=54 => ("delete_session", json!({"session_id": pick(&mut rng)})),
            55..=79 => {
                let contents = if rng.below(20) == 0 {
                    "exit\n".to_owned()
                } else {
                    format!("echo hammer-{}\n", rng.below(1_000_000))
                };
                (
                    "send_data_to_session",
                    json!({"session_id": pick(&mut rng), "contents": contents}),
                )
            }
            _ => ("get_session_info", json!({})),
        };
        let req = client.build(command, fields);
        let reply = client
            .exchange(&req, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("client {seed} ({kind:?}): no reply to {req}"));
        let failure = (reply["status"] == "failed").then(|| {
            let reason = reply["failure_reason"].as_str().unwrap();
            let kind_of = EXPECTED_FAILURES
                .iter()
                .find(|k| reason.contains(*k))
                .unwrap_or_else(|| panic!("unexpected failure of {req}: {reason}"));
            format!("{command}: {kind_of}")
        });
        let mut t = tally.lock().unwrap();
        t.requests += 1;
        if let Some(failure) = failure {
            *t.failed.entry(failure).or_default() += 1;
        } else {
            *t.ok.entry(command).or_default() += 1;
            match command {
                "create_session" => handed_out
                    .lock()
                    .unwrap()
                    .push(reply["session_id"].as_str().unwrap().to_owned()),
                "get_session_info" => {
                    let n = reply["sessions"].as_array().unwrap().len();
                    t.most_sessions_seen = t.most_sessions_seen.max(n);
                }
                "send_data_to_session" => {
                    assert_eq!(
                        reply["bytes_written"],
                        req["contents"].as_str().unwrap().len()
                    )
                }
                _ => {}
            }
        }
    }
    // Exactly one reply each: nothing else is waiting on a DEALER.
    if kind == Kind::Dealer {
        assert_eq!(
            client.socket.poll(zmq::POLLIN, 500).unwrap(),
            0,
            "a stray reply arrived"
        );
    }
}

/// xorshift64: a reproducible random mix per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
