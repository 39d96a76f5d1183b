//! Issue 24 (cluster): three collectors on one config, coordinated by a
//! real 3-node etcd on loopback, following six real sshd hosts. Each host
//! is followed by one member. An etcd node killed moves nothing; `kill -9`
//! of a member's supervisor (its children die with it) hands its hosts to
//! the others within `lease_ttl` + 5 s, and they resume from the offsets
//! the dead member copied to etcd; a fourth member joining takes its share;
//! the killed member coming back takes its hosts back. After each step the
//! lines written since are each in exactly one live member's index; a
//! `rill tail` on one member prints every host's lines once, the joining
//! member's included; and the ownership history in etcd never has two
//! owners of a host at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rill_e2e::*;
use serde_json::Value;

const HOSTS: [&str; 6] = ["h1", "h2", "h3", "h4", "h5", "h6"];
const MEMBERS: [&str; 3] = ["a", "b", "c"];
/// Started later: a fourth member joining.
const LATE: &str = "d";
const TTL_SECS: u64 = 5;
const WITHIN: Duration = Duration::from_secs(60);

/// `n` lines for `host` in phase `word`, each holding the token
/// `<host><word>`.
fn lines(host: &str, word: &str, n: usize) -> String {
    (0..n).map(|i| format!("{host}{word} line {i}\n")).collect()
}

struct Fleet {
    hosts: ManyHosts,
    etcd: TestEtcd,
    members: BTreeMap<&'static str, Rill>,
}

impl Fleet {
    fn start() -> Fleet {
        let etcd = TestEtcd::start(3);
        let hosts = ManyHosts::start(&HOSTS);
        let urls = etcd
            .urls()
            .iter()
            .map(|u| format!("'{u}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut members = BTreeMap::new();
        for m in MEMBERS.into_iter().chain([LATE]) {
            let mut rill = hosts.rill();
            rill.append_config(&format!(
                "collector: {m}\ncluster:\n  etcd: [{urls}]\n  name: t\n  lease_ttl: {TTL_SECS}s\nqueries:\n  steady: '{}'\n",
                HOSTS.map(|h| format!("{h}steady")).join(" OR ")
            ));
            if m != LATE {
                rill.start();
            }
            members.insert(m, rill);
        }
        Fleet {
            hosts,
            etcd,
            members,
        }
    }

    fn write(&self, word: &str, n: usize) {
        for h in HOSTS {
            self.hosts.append(h, &lines(h, word, n));
        }
    }

    /// Each host's owner, as etcd has it.
    fn owners(&self) -> BTreeMap<String, String> {
        self.etcd
            .etcdctl(&["get", "--prefix", "/rill/t/owners/"])
            .lines()
            .collect::<Vec<_>>()
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((
                    k.trim_start_matches("/rill/t/owners/").to_owned(),
                    v.to_string(),
                )),
                _ => None,
            })
            .collect()
    }

    /// Waits until the hosts are spread over `live` as rendezvous hashing
    /// has it and each owner follows its hosts (lines written before a
    /// host is first followed are not read: `read_from: end`).
    fn wait_settled(&self, live: &[&str]) {
        let want: BTreeMap<String, String> = HOSTS
            .iter()
            .map(|h| {
                let m = rill_cluster::ring::owner(h, live.iter().copied()).unwrap();
                (h.to_string(), m.to_owned())
            })
            .collect();
        assert!(
            wait_until(WITHIN, || self.owners() == want),
            "owners {:?}, wanted {want:?}",
            self.owners()
        );
        for (h, m) in &want {
            assert!(
                self.members[m.as_str()].wait_following(h, WITHIN),
                "{m} does not follow {h}"
            );
        }
    }

    /// Waits until every host has an owner among `live`; how long it took.
    fn wait_owned_by(&self, live: &[&str]) -> Duration {
        let t = Instant::now();
        let ok = wait_until(WITHIN, || {
            let o = self.owners();
            o.len() == HOSTS.len() && o.values().all(|m| live.contains(&m.as_str()))
        });
        assert!(ok, "owners {:?}, wanted among {live:?}", self.owners());
        t.elapsed()
    }

    /// `<host><word>` lines in each live member's own index.
    fn counts(&self, live: &[&str], host: &str, word: &str) -> Vec<u64> {
        live.iter()
            .map(|m| {
                self.members[m]
                    .count(&format!("{host}{word}"), &["--local"])
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    /// Waits until each host's `word` lines are `n` in the live members'
    /// indexes together, all in one member's.
    fn wait_once(&self, live: &[&str], word: &str, n: u64) {
        for h in HOSTS {
            let ok = wait_until(WITHIN, || {
                let c = self.counts(live, h, word);
                c.iter().sum::<u64>() == n && c.iter().filter(|&&x| x > 0).count() == 1
            });
            assert!(
                ok,
                "{h}{word}: {:?} in {live:?}, owners {:?}; their logs' warnings:\n{}",
                self.counts(live, h, word),
                self.owners(),
                live.iter()
                    .flat_map(|m| {
                        self.members[m]
                            .log()
                            .lines()
                            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains(h))
                            .map(|l| format!("{m}: {l}"))
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// Appends `<host>steady <n>` to every host's log every 50 ms, from its
/// own thread, until stopped: lines written while members die, join and
/// come back.
struct SteadyWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl SteadyWriter {
    fn start(hosts: &ManyHosts) -> SteadyWriter {
        let files: Vec<(String, std::path::PathBuf)> = HOSTS
            .iter()
            .map(|h| (h.to_string(), hosts.remote.file(&format!("{h}.log"))))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let theirs = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !theirs.load(std::sync::atomic::Ordering::Relaxed) {
                for (h, file) in &files {
                    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
                    std::io::Write::write_all(&mut f, format!("{h}steady {n}\n").as_bytes())
                        .unwrap();
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            n
        });
        SteadyWriter {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it: how many lines it wrote to each host.
    fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// The ownership history of every host from etcd's revisions (`watch
/// --rev 1` prints every put and delete of the owner keys, in order).
fn ownership_history(etcd: &TestEtcd) -> Vec<(String, Option<String>)> {
    let text = etcd.etcdctl_for(
        &["watch", "--rev", "1", "--prefix", "/rill/t/owners/"],
        Duration::from_secs(3),
    );
    let mut events = Vec::new();
    let mut lines = text.lines();
    while let Some(kind) = lines.next() {
        let Some(key) = lines.next() else { break };
        let host = key.trim_start_matches("/rill/t/owners/").to_owned();
        match kind {
            "PUT" => events.push((host, lines.next().map(str::to_owned))),
            "DELETE" => {
                // A delete prints an empty value line.
                lines.next();
                events.push((host, None));
            }
            _ => {}
        }
    }
    events
}

/// No host had two owners at once: each put of an owner key follows its
/// delete (or is the first).
fn assert_one_owner_at_a_time(events: &[(String, Option<String>)]) {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (host, who) in events {
        match who {
            Some(m) => {
                if let Some(old) = owner.insert(host, m) {
                    panic!("{host} taken by {m} while {old} owned it: {events:?}");
                }
            }
            None => {
                owner.remove(host.as_str());
            }
        }
    }
}

#[test]
fn a_cluster_hands_a_dead_members_hosts_over_and_takes_them_back() {
    let mut f = Fleet::start();
    f.wait_settled(&MEMBERS);
    let members = || f.members["a"].status().unwrap_or(Value::Null)["cluster"]["members"].clone();
    assert!(
        wait_until(WITHIN, || members().as_array().map(Vec::len) == Some(3)),
        "a's rill status shows the 3 members: {}",
        members()
    );

    // A tail on b follows every member's stream, and members joining.
    let live = f.members["b"].tail(&["line/#"]);
    let steady = SteadyWriter::start(&f.hosts);

    f.write("one", 100);
    f.wait_once(&MEMBERS, "one", 100);
    let before = f.owners();
    let a_hosts: Vec<&String> = before
        .iter()
        .filter(|(_, m)| *m == "a")
        .map(|(h, _)| h)
        .collect();
    println!("owners before: {before:?}");

    // One etcd node killed: the members step around it; nothing moves.
    f.etcd.kill(0);
    f.write("quorum", 100);
    f.wait_once(&MEMBERS, "quorum", 100);
    assert_eq!(f.owners(), before, "no host moved while etcd kept quorum");
    f.etcd.restart(0);

    // kill -9 of a's supervisor: its children die with it.
    f.members.get_mut("a").unwrap().kill_supervisor();
    f.write("two", 100);
    let took = f.wait_owned_by(&["b", "c"]);
    println!(
        "takeover of a's {} hosts: {took:?} (lease_ttl {TTL_SECS}s)",
        a_hosts.len()
    );
    assert!(took < Duration::from_secs(TTL_SECS + 5), "{took:?}");
    f.wait_once(&["b", "c"], "two", 100);
    // Lines read before a died: in b or c only if a had not copied their
    // offsets to etcd yet (the overlap the cluster search hides).
    for h in &a_hosts {
        let again: u64 = f.counts(&["b", "c"], h, "one").iter().sum();
        println!("{h}: {again} of a's 100 lines read again by its new owner");
    }

    // A fourth member joins: it takes what hashing gives it.
    f.members.get_mut(LATE).unwrap().start();
    f.wait_settled(&["b", "c", LATE]);
    // The tail hears every member before the lines it must show (a
    // subscription reaches a member some time after it joined: PUB/SUB
    // drops what is sent before).
    let mut n = 0;
    let heard = |got: &[Value]| -> std::collections::BTreeSet<String> {
        got.iter()
            .filter(|v| v["body"].as_str().is_some_and(|b| b.contains("probe")))
            .filter_map(|v| v["host"].as_str().map(str::to_owned))
            .collect()
    };
    let mut probes = Vec::new();
    let linked = wait_until(WITHIN, || {
        f.write(&format!("probe{n}"), 1);
        n += 1;
        probes.extend(live.collect_until(Duration::from_millis(300), |_| false));
        heard(&probes).len() == HOSTS.len()
    });
    assert!(
        linked,
        "b's tail hears every host: only {:?}; owners {:?}",
        heard(&probes),
        f.owners()
    );
    f.write("four", 100);
    f.wait_once(&["b", "c", LATE], "four", 100);
    // b's tail has every line of the six hosts, d's included, once.
    let four = |got: &[Value]| -> Vec<String> {
        got.iter()
            .filter_map(|v| v["body"].as_str())
            .filter(|b| b.contains("four line"))
            .map(str::to_owned)
            .collect()
    };
    let got = live.collect_until(WITHIN, |got| four(got).len() >= 600);
    let lines = four(&got);
    let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
    assert_eq!(
        (lines.len(), distinct.len()),
        (600, 600),
        "each of the 600 lines once on b's tail"
    );

    // a comes back and takes its hosts back.
    f.members.get_mut("a").unwrap().start();
    let all = ["a", "b", "c", LATE];
    f.wait_settled(&all);
    f.write("three", 100);
    f.wait_once(&all, "three", 100);
    // `rill search` on any member asks them all: each line once.
    let three = HOSTS.map(|h| format!("{h}three")).join(" OR ");
    for m in all {
        let out = f.members[m].rill(&["search", "--count", &three]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "600",
            "from {m}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = f.members["c"].rill(&["search", "--json", "--limit", "1000", &three]);
    let hits: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let hosts: std::collections::BTreeSet<&str> =
        hits.iter().filter_map(|h| h["host"].as_str()).collect();
    assert_eq!(
        (hits.len(), hosts.len()),
        (600, 6),
        "600 hits from the six hosts"
    );
    // The lines written before a was killed: a holds its hosts' again,
    // and their new owners may hold some (the overlap): each hit once.
    let one = HOSTS.map(|h| format!("{h}one")).join(" OR ");
    let out = f.members["b"].rill(&["search", "--json", "--limit", "1000", &one]);
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|h| {
            format!(
                "{} {} {} {}",
                h["host"], h["log"], h["file_id"], h["offset"]
            )
        })
        .collect();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len(), distinct.len()),
        (600, 600),
        "each line written before the kill once"
    );

    let history = ownership_history(&f.etcd);
    // Every host taken at least twice (a's were handed over and back, d
    // took its share), each take after the last owner let go.
    assert!(
        history.iter().filter(|(_, o)| o.is_none()).count() >= a_hosts.len() * 2,
        "the handovers are in etcd's history: {history:?}"
    );
    assert_one_owner_at_a_time(&history);

    // The steady writer's lines, written through every step: each is in
    // exactly one member's index (once the old owners deleted their
    // copies of the handover overlaps).
    let written = steady.stop();
    let steady_q = HOSTS.map(|h| format!("{h}steady")).join(" OR ");
    let held = || -> BTreeMap<String, u64> {
        let mut held = BTreeMap::new();
        for m in all {
            let out =
                f.members[m].rill(&["search", "--local", "--json", "--limit", "10000", &steady_q]);
            for hit in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(b) = serde_json::from_str::<Value>(hit)
                    .ok()
                    .and_then(|v| v["body"].as_str().map(str::to_owned))
                {
                    *held.entry(b).or_insert(0) += 1;
                }
            }
        }
        held
    };
    let wanted: BTreeMap<String, u64> = HOSTS
        .iter()
        .flat_map(|h| (0..written).map(move |n| (format!("{h}steady {n}"), 1)))
        .collect();
    let t = Instant::now();
    let once = wait_until(WITHIN, || held() == wanted);
    let got = held();
    assert!(
        once,
        "{} steady lines per host: missing {:?}, more than once {:?}, unknown {:?}",
        written,
        wanted
            .keys()
            .filter(|b| !got.contains_key(*b))
            .take(20)
            .collect::<Vec<_>>(),
        got.iter()
            .filter(|(_, n)| **n > 1)
            .take(20)
            .collect::<Vec<_>>(),
        got.keys()
            .filter(|b| !wanted.contains_key(*b))
            .take(20)
            .collect::<Vec<_>>(),
    );
    println!(
        "steady: {written} lines per host, each in one member's index, after {:?}",
        t.elapsed()
    );

    // A saved query, by name, through the API across the cluster.
    let (status, v) = http_get(f.members["b"].search_port, "/count?saved=steady").unwrap();
    assert_eq!(
        (status, v["count"].as_u64()),
        (200, Some(written * HOSTS.len() as u64)),
        "{v}"
    );

    // Every line written, in every phase, is counted once across the
    // cluster: the copies a member kept of lines a later owner read again
    // (the handover overlaps) are gone, from every member's index.
    for word in ["one", "quorum", "two", "four", "three"] {
        let q = HOSTS.map(|h| format!("{h}{word}")).join(" OR ");
        let across = || {
            let out = f.members["b"].rill(&["search", "--count", &q]);
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        };
        let local = || -> Vec<u64> {
            all.iter()
                .map(|m| f.members[m].count(&q, &["--local"]).unwrap_or(u64::MAX))
                .collect()
        };
        let t = Instant::now();
        assert!(
            wait_until(WITHIN, || across() == Some(600)
                && local().iter().sum::<u64>() == 600),
            "{word}: {:?} across the cluster, {:?} in a, b, c, d",
            across(),
            local()
        );
        println!("{word}: 600 across the cluster after {:?}", t.elapsed());
    }

    // `rill status` on b shows the hosts other members follow as their
    // members report them: connected, each log's lines and lag.
    let owners = f.owners();
    let others: Vec<&String> = owners
        .iter()
        .filter(|(_, m)| *m != "b")
        .map(|(h, _)| h)
        .collect();
    assert!(!others.is_empty(), "owners {owners:?}");
    let status = f.members["b"].status().expect("b's rill status --json");
    for h in &others {
        let host = status["hosts"]
            .as_array()
            .and_then(|hs| hs.iter().find(|x| x["host"] == h.as_str()))
            .unwrap_or_else(|| panic!("{h} in b's status: {status}"));
        let log = &host["logs"][0];
        assert!(
            host["connected"] == true
                && log["lines_read"].as_u64() >= Some(100)
                && log["lag_bytes"].is_u64(),
            "{h}, followed by {}, as b shows it: {host}",
            owners[*h]
        );
    }
    let text = String::from_utf8_lossy(&f.members["b"].rill(&["status"]).stdout).into_owned();
    for h in &others {
        let shown = format!("{h} (followed by member {}): connected", owners[*h]);
        assert!(
            text.contains(&shown),
            "{shown:?} in b's rill status:\n{text}"
        );
    }

    // The search API (and so the page) asks every member too.
    let q = url_encode(&three);
    let api = |m: &str, path: &str| -> (u16, Value) {
        http_get(f.members[m].search_port, path)
            .unwrap_or_else(|| panic!("{m}'s API answers {path}"))
    };
    for m in ["a", LATE] {
        let (status, v) = api(m, &format!("/search?q={q}&limit=1000"));
        assert_eq!(status, 200, "{v}");
        let hits = v["hits"].as_array().cloned().unwrap_or_default();
        let ids: std::collections::BTreeSet<String> = hits
            .iter()
            .map(|h| {
                format!(
                    "{} {} {} {}",
                    h["host"], h["log"], h["file_id"], h["offset"]
                )
            })
            .collect();
        assert_eq!(
            (v["count"].as_u64(), hits.len(), ids.len()),
            (Some(600), 600, 600),
            "{m}'s /search: each line once"
        );
        assert_eq!(v["partial"], serde_json::json!([]), "{m}'s /search");
        assert_eq!(v["members"].as_array().map(Vec::len), Some(4), "{v}");
        let (_, c) = api(m, &format!("/count?q={q}"));
        assert_eq!(c["count"].as_u64(), Some(600), "{m}'s /count: {c}");
        let (_, h) = api(m, &format!("/histogram?q={q}&bucket=1h"));
        assert_eq!(h["total"].as_u64(), Some(600), "{m}'s /histogram: {h}");
    }
    // `local=1`: each member's own index; together, each line once.
    let local: Vec<u64> = all
        .iter()
        .map(|m| {
            api(m, &format!("/count?q={q}&local=1")).1["count"]
                .as_u64()
                .unwrap_or(u64::MAX)
        })
        .collect();
    assert_eq!(local.iter().sum::<u64>(), 600, "local counts {local:?}");
    assert!(local.iter().all(|&n| n < 600), "local counts {local:?}");
    // A query that does not parse: the member's refusal, with the position.
    let (status, v) = api("b", "/count?q=%28host");
    assert_eq!((status, v["position"].is_u64()), (400, true), "{v}");
    let (status, v) = api("b", &format!("/count?q={q}&local=yes"));
    assert_eq!(status, 400, "{v}");
    // What members ask each other for the overlap: bad numbers refused.
    for bad in [
        "/held?host=h1&log=h1&file_id=f&after=1&from=99999999d&to=5",
        "/held?host=h1&log=h1&file_id=f&after=1&from=9&to=5",
        "/held?log=h1&file_id=f&after=1&from=0&to=5",
    ] {
        let (status, v) = api("b", bad);
        assert_eq!(status, 400, "{bad}: {v}");
    }

    // A member registered whose search API does not answer is named, not
    // silently left out.
    let granted = f.etcd.etcdctl(&["lease", "grant", "600"]);
    let lease = granted
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_owned();
    let closed = free_port();
    f.etcd.etcdctl(&[
        "put",
        &format!("--lease={lease}"),
        "/rill/t/members/ghost",
        &format!(
            r#"{{"member":"ghost","streams":"tcp://127.0.0.1:{closed}","search":"http://127.0.0.1:{closed}"}}"#
        ),
    ]);
    let out = f.members["b"].rill(&["search", "--count", &three]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "600",
        "{stderr}"
    );
    assert!(stderr.contains("partial: [ghost]"), "{stderr}");
    let (status, v) = api("c", &format!("/count?q={q}"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["count"].as_u64(), v["partial"].clone()),
        (Some(600), serde_json::json!(["ghost"])),
        "{v}"
    );
    f.etcd.etcdctl(&["lease", "revoke", &lease]);
}

/// etcd unreachable at start: the supervisor does not start, and says
/// which cluster and which etcd URLs it could not reach.
#[test]
fn a_collector_that_cannot_reach_etcd_at_start_says_so_and_exits() {
    let hosts = ManyHosts::start(&HOSTS[..1]);
    let rill = hosts.rill();
    let closed = [free_port(), free_port()];
    rill.append_config(&format!(
        "collector: a\ncluster:\n  etcd: ['http://127.0.0.1:{}', 'http://127.0.0.1:{}']\n  name: t\n",
        closed[0], closed[1]
    ));
    let mut child = std::process::Command::new(bin("supervisor"))
        .arg("--config")
        .arg(&rill.config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_until(WITHIN, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(ended, "the supervisor still runs without etcd: {stderr}");
    assert!(!out.status.success(), "{stderr}");
    for port in closed {
        assert!(
            stderr.contains("cluster") && stderr.contains(&format!("127.0.0.1:{port}")),
            "names the cluster and each URL: {stderr}"
        );
    }
}
