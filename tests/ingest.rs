//! Issue 23 (receive): `POST /ingest/<log>` on the `ingest:` listener of a
//! real Rill. NDJSON, plain lines and S3-style records become events of
//! the token's source, indexed and streamed; a retried request (same
//! `Idempotency-Key`), also after the parser was killed, is held once;
//! wrong tokens, addresses outside the allowlist, bad NDJSON, oversized
//! bodies are refused with a JSON error and leave nothing indexed.

use std::net::Ipv4Addr;
use std::time::Duration;

use rill_e2e::*;
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);
const TOKEN: &str = "tok-web99-0123456789abcdef";
const OTHER: &str = "tok-db07-fedcba9876543210";
const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A running Rill with an ingest listener on loopback (allowlist
/// 127.0.0.1/32, tokens for sources web99 and db07); its port.
fn running(max_body: &str) -> (OneHost, u16) {
    let h = OneHost::new(&["app"]);
    let tokens = h.rill.dir.path().join("ingest.tokens");
    std::fs::write(
        &tokens,
        format!("# source tokens\n{TOKEN} web99\n{OTHER} db07\n"),
    )
    .unwrap();
    let port = free_port();
    h.rill.append_config(&format!(
        "collector: eu-1\ningest:\n  listen: 127.0.0.1:{port}\n  allow: [127.0.0.1/32]\n  tokens_file: {}\n  max_body: {max_body}\n",
        tokens.display()
    ));
    let h = OneHost::start(h, &["app"]);
    assert!(
        wait_until(WITHIN, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()),
        "the ingest listener never opened:\n{}",
        h.rill.log()
    );
    (h, port)
}

fn post(
    port: u16,
    log: &str,
    token: &str,
    ctype: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    try_post(port, log, token, ctype, key, body).expect("the listener answers")
}

/// [`post`], or None when nothing answers.
fn try_post(
    port: u16,
    log: &str,
    token: &str,
    ctype: &str,
    key: Option<&str>,
    body: &[u8],
) -> Option<(u16, Value)> {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", ctype)];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    http_post(port, &format!("/ingest/{log}"), &headers, body, LOCAL)
}

/// Events `from..to` as NDJSON: message, level, n and a timestamp.
fn ndjson(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .map(|n| {
            format!(
                "{{\"message\":\"payment {n} settled\",\"level\":\"info\",\"n\":{n},\"ts\":\"2026-12-03T10:00:00.{:03}Z\"}}\n",
                n % 1000
            )
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn a_hundred_thousand_ndjson_events_with_retries_are_held_once() {
    let (h, port) = running("16MiB");
    let live = h.rill.tail(&["line/web99/payments"]);
    // Four requests of 25,000 events each, every one with its key.
    for part in 0..4 {
        let body = ndjson(part * 25_000, (part + 1) * 25_000);
        let (status, v) = post(
            port,
            "payments",
            TOKEN,
            "application/x-ndjson",
            Some(&format!("batch-{part}")),
            &body,
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["accepted"], 25_000, "{v}");
        assert_eq!(v["source"], "web99");
    }
    // A client that timed out retries batch 1: the same answer, nothing new.
    let (status, v) = post(
        port,
        "payments",
        TOKEN,
        "application/x-ndjson",
        Some("batch-1"),
        &ndjson(25_000, 50_000),
    );
    assert_eq!((status, &v["replayed"]), (200, &Value::Bool(true)), "{v}");
    // The parser is killed right after the 200s, before the index has them
    // all: what was acknowledged is in its write-ahead log and indexed
    // after the restart.
    h.rill.kill9("parser");
    assert_eq!(
        h.rill.wait_count("host:web99", &[], 100_000, WITHIN),
        Some(100_000),
        "every acknowledged event once, after a kill -9 right after the 200s"
    );
    // A retry after the restart (the new parser remembers no key) is
    // stored again under the same names: the index still holds each once.
    let retried = wait_for(WITHIN, || {
        let (status, v) = try_post(
            port,
            "payments",
            TOKEN,
            "application/x-ndjson",
            Some("batch-2"),
            &ndjson(50_000, 75_000),
        )?;
        (status == 200).then_some(v)
    })
    .expect("the new parser's listener takes the retry");
    assert_eq!(retried["accepted"], 25_000, "{retried}");
    assert!(
        retried.get("replayed").is_none(),
        "a new parser remembers no key: {retried}"
    );
    // The same key with another body: refused while remembered, and never
    // replacing the first body's events.
    let (status, v) = post(
        port,
        "payments",
        TOKEN,
        "application/x-ndjson",
        Some("batch-2"),
        &ndjson(0, 10),
    );
    assert_eq!(status, 422, "{v}");
    // Searchable once more lines went through: a marker after the retry.
    let (status, _) = post(
        port,
        "payments",
        TOKEN,
        "application/x-ndjson",
        Some("marker"),
        b"{\"msg\":\"marker after retry\"}\n",
    );
    assert_eq!(status, 200);
    assert_eq!(h.rill.wait_count("marker", &[], 1, WITHIN), Some(1));
    assert_eq!(
        h.rill.count("host:web99", &[]),
        Some(100_001),
        "the retried batch is held once"
    );
    assert_eq!(
        h.rill.count("payment AND 60123 AND log:payments", &[]),
        Some(1)
    );
    assert_eq!(h.rill.count("fields.n:99999", &[]), Some(1));
    assert_eq!(
        h.rill.count("collector:eu-1 AND host:web99", &[]),
        Some(100_001)
    );

    // What a search shows of one: the message as text, the rest as fields,
    // its own time.
    let out = h
        .rill
        .rill(&["search", "--json", "--limit", "1", "payment AND 12345"]);
    let hit: Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(hit["body"], "payment 12345 settled", "{hit}");
    assert_eq!(hit["fields"]["level"], "info");
    assert_eq!(hit["fields"]["n"], 12345);
    assert!(
        hit["ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-12-03T10:00:00.345"),
        "{hit}"
    );
    assert_eq!(
        (hit["host"].as_str(), hit["log"].as_str()),
        (Some("web99"), Some("payments"))
    );

    // Live: the events were on line/web99/payments.
    let got = live.collect_until(WITHIN, |got| {
        got.iter()
            .any(|v| v["body"].as_str().is_some_and(|b| b.contains("marker")))
    });
    assert!(got.len() > 1000, "only {} events streamed live", got.len());
}

#[test]
fn refusals_are_clear_and_leave_nothing_indexed() {
    let (h, port) = running("64KiB");
    let good = b"{\"msg\":\"good one\"}\n";
    // A refusal: its status, and its JSON error saying `want`.
    let refused = |(status, v): (u16, Value), want_status: u16, want: &str| {
        assert_eq!(status, want_status, "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(want)),
            "expected {want_status} with an error containing {want:?}, got {v}"
        );
        v
    };
    // No token, a wrong one, another scheme.
    let (s, v) = http_post(port, "/ingest/app", &[], good, LOCAL).unwrap();
    refused((s, v), 401, "missing");
    let (s, v) = post(
        port,
        "app",
        "tok-nobody-000000000000",
        "application/x-ndjson",
        None,
        good,
    );
    let v = refused((s, v), 401, "unknown token");
    assert!(
        !v.to_string().contains("tok-nobody"),
        "the token is echoed: {v}"
    );
    // A client outside the allowlist, even with a good token.
    let auth = format!("Bearer {TOKEN}");
    let (s, v) = http_post(
        port,
        "/ingest/app",
        &[("Authorization", &auth)],
        good,
        Ipv4Addr::new(127, 0, 0, 2),
    )
    .unwrap();
    refused((s, v), 403, "127.0.0.2 is not in ingest.allow");
    // Malformed NDJSON names its line; nothing of the request is stored.
    let (s, v) = post(
        port,
        "app",
        TOKEN,
        "application/x-ndjson",
        None,
        b"{\"msg\":\"first\"}\n{\"msg\":\"second\"}\n{\"msg\": oops}\n",
    );
    refused((s, v), 400, "line 3: expected a JSON object");
    // Over max_body.
    let (s, v) = post(
        port,
        "app",
        TOKEN,
        "text/plain",
        None,
        &vec![b'x'; 100 << 10],
    );
    refused((s, v), 413, "over ingest.max_body");
    // A log name that is no name; a content type we do not read.
    let (s, v) = post(port, "a$(reboot)", TOKEN, "text/plain", None, b"x\n");
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(port, "app", TOKEN, "image/png", None, b"x\n");
    assert_eq!(s, 415, "{v}");
    // A key used again for another body.
    let (s, _) = post(
        port,
        "app",
        OTHER,
        "text/plain",
        Some("k1"),
        b"plain line one\nplain line two\n",
    );
    assert_eq!(s, 200);
    let (s, v) = post(
        port,
        "app",
        OTHER,
        "text/plain",
        Some("k1"),
        b"something else\n",
    );
    refused((s, v), 422, "another body");
    // S3-style records: one event each.
    let s3 = br#"{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"2026-12-03T09:00:00Z","s3":{"bucket":{"name":"datasets"},"object":{"key":"runs/42.h5","size":1024}}}]}"#;
    let (s, v) = post(port, "store", OTHER, "application/json", None, s3);
    assert_eq!((s, &v["accepted"]), (200, &Value::from(1)), "{v}");

    assert_eq!(h.rill.wait_count("\"runs/42.h5\"", &[], 1, WITHIN), Some(1));
    assert_eq!(
        h.rill.count("host:db07 AND log:app", &[]),
        Some(2),
        "the plain lines, once"
    );
    assert_eq!(h.rill.count("fields.s3.object.size:1024", &[]), Some(1));
    assert_eq!(
        h.rill.count("host:web99", &[]),
        Some(0),
        "a refused request left events"
    );
    // The listener still answers after all of that.
    let (s, _) = post(port, "app", TOKEN, "application/x-ndjson", None, good);
    assert_eq!(s, 200);
    assert_eq!(h.rill.wait_count("host:web99", &[], 1, WITHIN), Some(1));
    // /metrics counts what the endpoint answered.
    let (s, text) = http_get(h.rill.search_port, "/metrics").unwrap();
    let text = text.as_str().unwrap_or_default().to_owned();
    assert_eq!(s, 200);
    for want in [
        "rill_ingest_requests_total{status=\"400\"} 2",
        "rill_ingest_requests_total{status=\"413\"} 1",
        "rill_ingest_requests_total{status=\"422\"} 1",
        "rill_ingest_requests_total{status=\"200\"} 3",
        "rill_ingest_events_total 4",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    // A token taken out of the tokens file is refused within seconds,
    // without a restart.
    let tokens = h.rill.dir.path().join("ingest.tokens");
    std::fs::write(&tokens, format!("# db07 is gone\n{TOKEN} web99\n")).unwrap();
    assert!(
        wait_until(WITHIN, || try_post(
            port,
            "app",
            OTHER,
            "text/plain",
            None,
            b"late\n"
        )
        .is_some_and(|(s, _)| s == 401)),
        "the removed token still works"
    );
}
