//! More logs than sshd allows sessions per connection: the tap spills over to
//! further connections instead of failing.

use std::time::Duration;

use rill_e2e::*;

#[test]
fn thirty_logs_stream_through_a_server_with_max_sessions_10() {
    let names: Vec<String> = (0..30).map(|i| format!("log{i:02}")).collect();
    let logs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = SshdOptions {
        max_sessions: Some(10),
        ..Default::default()
    };
    let h = OneHost::start(OneHost::with_sshd(opts, &logs), &logs);
    for (i, l) in logs.iter().enumerate() {
        h.append(l, format!("line from {l} number {i}\n").as_bytes());
    }
    let rill = &h.rill;
    let all = wait_for(Duration::from_secs(20), || {
        rill.count("*", &[]).filter(|&n| n == 30)
    });
    assert_eq!(all, Some(30), "{}", rill.log());
    for l in &logs {
        assert_eq!(rill.count("*", &["--log", l]), Some(1), "{l}");
    }
    // Counters in the status are written once a second.
    let every_log_read_one = |s: &serde_json::Value| {
        s["logs"].as_array().is_some_and(|l| {
            l.iter()
                .all(|l| l["error"].is_null() && l["lines_read"] == 1)
        })
    };
    wait_until(Duration::from_secs(5), || {
        rill.host_status("web01")
            .is_some_and(|s| every_log_read_one(&s))
    });
    let status = rill.host_status("web01").unwrap();
    let logs_status = status["logs"].as_array().unwrap();
    assert_eq!(logs_status.len(), 30);
    assert!(
        logs_status
            .iter()
            .all(|l| l["error"].is_null() && l["lines_read"] == 1),
        "{status}"
    );
    // 30 channels at 10 per connection: the sshd log shows 3 logins.
    let logins = h
        .sshd
        .log()
        .matches("Accepted publickey for rilltest")
        .count();
    assert_eq!(logins, 3, "{}", h.sshd.log());
}
