//! Issue 23 (federate): collectors that subscribe to each other's streams
//! (`upstreams:`), each on its own real sshd host. A hub upstreaming two
//! collectors streams both hosts' lines and indexes each once, told apart
//! by `collector:` although both hosts are called web01; two collectors
//! upstreaming each other (a loop) hold each line once per collector, and
//! neither is ever sent its own lines back.

use std::collections::BTreeSet;
use std::time::Duration;

use rill_e2e::*;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

/// A collector named `name` following `app` on its own web01, its
/// federation endpoint open on a free loopback port ([`federation`]).
fn collector(name: &str) -> OneHost {
    let h = OneHost::new(&["app"]);
    h.rill.append_config(&format!("collector: {name}\n"));
    let text = std::fs::read_to_string(&h.rill.config).unwrap();
    let endpoint = format!("  endpoint: {}\n", h.rill.streams);
    let open = format!("{endpoint}  federation: tcp://127.0.0.1:{}\n", free_port());
    std::fs::write(&h.rill.config, text.replacen(&endpoint, &open, 1)).unwrap();
    h
}

/// The federation endpoint of a [`collector`]: where others subscribe.
fn federation(rill: &Rill) -> String {
    let text = std::fs::read_to_string(&rill.config).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("federation: "))
        .expect("collector() opens it")
        .to_owned()
}

/// `upstreams:` for the given (name, endpoint) pairs, all indexed.
fn upstreams(list: &[(&str, &str)]) -> String {
    let mut y = "upstreams:\n".to_owned();
    for (name, endpoint) in list {
        y.push_str(&format!(
            "  {name}:\n    endpoint: '{endpoint}'\n    topics: ['line/#']\n    index: true\n"
        ));
    }
    y
}

/// Lines `from..to` of collector `name`: `<name> record <n>`.
fn lines(name: &str, from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .map(|n| format!("{name} record {n:05}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Writes probe lines to `src` until `dst`'s index holds one (so both of
/// `dst`'s subscriptions to `src` carry lines: the federation endpoint
/// sends nothing to a collector before its hello).
fn wait_linked(src: &OneHost, name: &str, dst: &Rill) {
    let linked = wait_until(WITHIN, || {
        src.append("app", format!("{name} probe\n").as_bytes());
        dst.count(&format!("probe AND collector:{name}"), &[])
            .unwrap_or(0)
            > 0
    });
    assert!(
        linked,
        "no line of {name} reached the other collector's index; status: {:?}",
        dst.status()
    );
}

/// The `<name> record <n>` bodies among `messages` of a tail: each exactly
/// once, `n` in all.
fn assert_records_once(messages: &[&Value], n: usize, what: &str) {
    let records: Vec<&str> = messages
        .iter()
        .filter_map(|v| v["body"].as_str())
        .filter(|b| b.contains(" record "))
        .collect();
    let distinct: BTreeSet<&str> = records.iter().copied().collect();
    assert_eq!((records.len(), distinct.len()), (n, n), "{what}");
}

/// The upstream `name` in `rill`'s status report.
fn upstream_status(rill: &Rill, name: &str) -> Value {
    rill.status()
        .and_then(|s| {
            s["upstreams"]
                .as_array()?
                .iter()
                .find(|u| u["name"] == name)
                .cloned()
        })
        .unwrap_or(Value::Null)
}

#[test]
fn a_hub_streams_both_collectors_and_indexes_each_line_once() {
    let mut eu = collector("eu-1");
    let mut us = collector("us-1");
    eu = OneHost::start(eu, &["app"]);
    us = OneHost::start(us, &["app"]);
    let hub = collector("hub");
    hub.rill.append_config(&upstreams(&[
        ("eu-1", &federation(&eu.rill)),
        ("us-1", &federation(&us.rill)),
    ]));
    let hub = OneHost::start(hub, &["app"]);
    let live = hub.rill.tail(&["line/web01/app"]);
    wait_linked(&eu, "eu-1", &hub.rill);
    wait_linked(&us, "us-1", &hub.rill);

    eu.append("app", &lines("eu-1", 0, 500));
    us.append("app", &lines("us-1", 0, 500));
    hub.append("app", &lines("hub", 0, 100));
    for (name, n) in [("eu-1", 500), ("us-1", 500), ("hub", 100)] {
        assert_eq!(
            hub.rill
                .wait_count(&format!("record AND collector:{name}"), &[], n, WITHIN),
            Some(n),
            "the hub's index holds {name}'s lines once"
        );
    }
    // Both are host web01; only the collector tells them apart.
    assert_eq!(hub.rill.count("record AND host:web01", &[]), Some(1100));
    assert_eq!(hub.rill.count("\"eu-1 record 00042\"", &[]), Some(1));
    assert_eq!(
        hub.rill
            .count("\"us-1 record 00042\" AND collector:eu-1", &[]),
        Some(0)
    );
    // Each collector's own index holds its own lines, named by it.
    assert_eq!(
        eu.rill
            .wait_count("record AND collector:eu-1", &[], 500, WITHIN),
        Some(500)
    );
    assert_eq!(
        eu.rill.count("collector:us-1", &[]),
        Some(0),
        "eu-1 has no upstream"
    );

    // Live on the hub: every line of both, once.
    let got = live.collect_until(WITHIN, |got| {
        got.iter()
            .filter(|v| v["body"].as_str().is_some_and(|b| b.contains(" record ")))
            .count()
            >= 1100
    });
    assert_records_once(
        &got.iter().collect::<Vec<_>>(),
        1100,
        "each line once on the hub's stream",
    );

    let s = upstream_status(&hub.rill, "eu-1");
    assert_eq!(s["connected"], true, "{s}");
    assert!(s["forwarded"].as_u64().unwrap_or(0) >= 500, "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
}

#[test]
fn a_loop_of_two_collectors_holds_each_line_once_per_collector() {
    let a = collector("a");
    let b = collector("b");
    a.rill
        .append_config(&upstreams(&[("b", &federation(&b.rill))]));
    b.rill
        .append_config(&upstreams(&[("a", &federation(&a.rill))]));
    let a = OneHost::start(a, &["app"]);
    let b = OneHost::start(b, &["app"]);
    let live_a = a.rill.tail(&["line/#"]);
    wait_linked(&a, "a", &b.rill);
    wait_linked(&b, "b", &a.rill);

    a.append("app", &lines("a", 0, 300));
    b.append("app", &lines("b", 0, 300));
    for rill in [&a.rill, &b.rill] {
        for name in ["a", "b"] {
            assert_eq!(
                rill.wait_count(&format!("record AND collector:{name}"), &[], 300, WITHIN),
                Some(300),
                "{name}'s lines once in {}",
                rill.config.display()
            );
        }
    }
    // Lines keep going around: a mark written after them, once indexed on
    // both sides, has had every earlier line's echo come and go.
    a.append("app", b"a mark\n");
    b.append("app", b"b mark\n");
    for rill in [&a.rill, &b.rill] {
        assert_eq!(rill.wait_count("mark", &[], 2, WITHIN), Some(2));
        assert_eq!(
            rill.count("record", &[]),
            Some(600),
            "no line twice after the loop"
        );
    }
    // Live on a: b's lines once each, a's own once each (none came back).
    let got = live_a.collect_until(WITHIN, |got| {
        got.iter().any(|v| v["body"] == "b mark") && got.iter().any(|v| v["body"] == "a mark")
    });
    assert_records_once(
        &got.iter().collect::<Vec<_>>(),
        600,
        "each line once on a's stream",
    );
    // None of a's lines was sent back to it: b held them back, and says
    // so for both of a's connections (its supervisor's and its parser's).
    for (from, to) in [(&a.rill, "b"), (&b.rill, "a")] {
        let s = upstream_status(from, to);
        assert_eq!(s["duplicates"], 0, "nothing came back from {to}: {s}");
        assert!(s["forwarded"].as_u64().unwrap_or(0) >= 301, "{s}");
    }
    // (b's status counts are refreshed every second.)
    let a_at_b = || -> Value {
        b.rill
            .status()
            .and_then(|s| s["downstreams"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|d| d["collector"] == "a")
            .unwrap_or(Value::Null)
    };
    assert!(
        wait_until(WITHIN, || {
            let d = a_at_b();
            d["connections"] == 2 && d["held_back"].as_u64().unwrap_or(0) >= 602
        }),
        "b held a's own lines back from both of a's connections (its supervisor's \
         and its parser's): {}",
        a_at_b()
    );
    // And says so on /metrics (both connections' counts summed).
    let Some((200, Value::String(metrics))) = http_get(b.rill.search_port, "/metrics") else {
        panic!("no /metrics from b");
    };
    let held_back = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("rill_downstream_lines_total{downstream=\"a\",outcome=\"held_back\"} ")
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        held_back.is_some_and(|n| n >= 602),
        "rill_downstream_lines_total held_back for a: {held_back:?}"
    );
}

#[test]
fn an_upstream_that_refuses_us_or_is_down_is_shown_and_the_rest_runs() {
    let up = collector("up");
    let server_key = up.rill.dir.path().join("server.key");
    keygen(&server_key);
    let authorized = up.rill.dir.path().join("clients");
    std::fs::create_dir(&authorized).unwrap();
    // The curve block goes under `streams:`, after its endpoint.
    let text = std::fs::read_to_string(&up.rill.config).unwrap();
    let endpoint = format!("  endpoint: {}\n", up.rill.streams);
    let curve = format!(
        "{endpoint}  curve:\n    secret_key_file: {}\n    authorized_keys_dir: {}\n",
        server_key.display(),
        authorized.display()
    );
    std::fs::write(&up.rill.config, text.replacen(&endpoint, &curve, 1)).unwrap();
    let up = OneHost::start(up, &["app"]);

    let hub = collector("hub");
    let stranger = hub.rill.dir.path().join("stranger.key");
    let ours = keygen(&stranger);
    let gone = format!("tcp://127.0.0.1:{}", free_port());
    hub.rill.append_config(&format!(
        "upstreams:\n  up:\n    endpoint: '{}'\n    curve:\n      server_key_file: {}.pub\n      secret_key_file: {}\n  gone:\n    endpoint: '{gone}'\n",
        federation(&up.rill),
        server_key.display(),
        stranger.display()
    ));
    let hub = OneHost::start(hub, &["app"]);

    let mut last = (Value::Null, Value::Null);
    let shown = wait_until(WITHIN, || {
        last = (
            upstream_status(&hub.rill, "up"),
            upstream_status(&hub.rill, "gone"),
        );
        last.0["connected"] == false
            && last.0["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("refused"))
            && last.1["connected"] == false
            && last.1["last_error"].as_str().is_some()
    });
    assert!(
        shown,
        "the refusal and the missing upstream in the hub's status: {last:?}"
    );
    // The upstream saw and refused our key, and says whose.
    let guard = up
        .rill
        .status()
        .map(|s| s["streams_guard"].clone())
        .unwrap_or_default();
    assert!(guard["refused"].as_u64().unwrap_or(0) >= 1, "{guard}");
    assert!(
        guard["last_refusal"]
            .as_str()
            .is_some_and(|r| r.contains(&ours)),
        "{guard} names {ours}"
    );
    // A refused login is tried again (1 s, then 2 s, ...), not given up.
    let refusals = |rill: &Rill| {
        rill.status()
            .and_then(|s| s["streams_guard"]["refused"].as_u64())
            .unwrap_or(0)
    };
    let first = refusals(&up.rill);
    assert!(
        wait_until(WITHIN, || refusals(&up.rill) >= first + 2),
        "the hub tried again after being refused: {} refusals",
        refusals(&up.rill)
    );
    // Nothing of up reached the hub; the hub's own lines are indexed.
    up.append("app", &lines("up", 0, 10));
    hub.append("app", &lines("hub", 0, 10));
    assert_eq!(
        hub.rill
            .wait_count("record AND collector:hub", &[], 10, WITHIN),
        Some(10)
    );
    assert_eq!(up.rill.wait_count("record", &[], 10, WITHIN), Some(10));
    assert_eq!(hub.rill.count("collector:up", &[]), Some(0));
}

#[test]
fn a_line_that_arrives_by_two_ways_is_passed_on_once() {
    // a -> b -> hub and a -> hub: a's lines reach the hub twice.
    let a = OneHost::start(collector("a"), &["app"]);
    let b = collector("b");
    b.rill
        .append_config(&upstreams(&[("a", &federation(&a.rill))]));
    let b = OneHost::start(b, &["app"]);
    let hub = collector("hub");
    hub.rill.append_config(&upstreams(&[
        ("a", &federation(&a.rill)),
        ("b", &federation(&b.rill)),
    ]));
    let hub = OneHost::start(hub, &["app"]);
    let live = hub.rill.tail(&["line/#"]);
    wait_linked(&a, "a", &b.rill);
    wait_linked(&a, "a", &hub.rill);
    wait_linked(&b, "b", &hub.rill);
    let dups = || -> u64 {
        ["a", "b"]
            .iter()
            .map(|n| {
                upstream_status(&hub.rill, n)["duplicates"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    };
    let before = dups();

    a.append("app", &lines("a", 0, 400));
    a.append("app", b"a done\n");
    let got = live.collect_until(WITHIN, |got| got.iter().any(|v| v["body"] == "a done"));
    // Both ways' copies of every line (and of the mark after them) have
    // reached the hub's supervisor once one of each pair was a duplicate.
    assert!(
        wait_until(WITHIN, || dups() >= before + 401),
        "the second way's copies were dropped as duplicates: {}",
        dups() - before
    );
    // What was passed on went out before that: a short drain of the tail
    // (looking for a copy that should not be there) finds it.
    let more = live.collect_until(Duration::from_secs(1), |_| false);
    assert_records_once(
        &got.iter().chain(&more).collect::<Vec<_>>(),
        400,
        "each of a's lines once on the hub's stream",
    );
    assert_eq!(
        hub.rill
            .wait_count("record AND collector:a", &[], 400, WITHIN),
        Some(400)
    );
}
