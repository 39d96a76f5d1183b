//! `rill tail`: live lines from the streams endpoint.

use std::io::Write;
use std::time::Duration;

use rill_bus::Subscriber;
use rill_config::Config;
use rill_proto::{LineMeta, ParsedEvent};
use serde_json::{json, Value};

use crate::emit;

/// Prints matching messages until the reader goes away or `stop` says so.
pub fn run(
    cfg: &Config,
    patterns: &[String],
    as_json: bool,
    out: &mut impl Write,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let pats: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let sub = Subscriber::connect(&ctx, &cfg.streams_endpoint, &pats)?;
    while !stop() {
        let Some(msg) = sub.recv(Duration::from_millis(200))? else {
            out.flush().ok();
            continue;
        };
        let text = render(&msg.topic, &msg.frames, as_json);
        if !emit(out, &text)? {
            return Ok(());
        }
    }
    Ok(())
}

/// One message as printed: `host log: line` or a JSON object.
pub fn render(topic: &str, frames: &[Vec<u8>], as_json: bool) -> String {
    let kind = topic.split('/').next().unwrap_or("");
    match (kind, frames) {
        ("line", [meta, body, ..]) => match serde_json::from_slice::<LineMeta>(meta) {
            Ok(m) => {
                let body = String::from_utf8_lossy(body);
                if as_json {
                    json!({
                        "topic": topic, "host": m.host, "log": m.log, "body": body,
                        "offset": m.offset, "file_id": m.file_id, "path": m.path,
                        "seq": m.seq, "epoch": m.epoch, "read_at": m.read_at, "partial": m.partial,
                    })
                    .to_string()
                } else {
                    format!("{} {}: {body}", m.host, m.log)
                }
            }
            Err(_) => fallback(topic, frames, as_json),
        },
        ("parsed", [event, ..]) => match serde_json::from_slice::<ParsedEvent>(event) {
            Ok(e) if as_json => {
                let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                v["topic"] = Value::from(topic);
                v.to_string()
            }
            Ok(e) => format!("{} {}: {}", e.host, e.log, e.body),
            Err(_) => fallback(topic, frames, as_json),
        },
        _ => fallback(topic, frames, as_json),
    }
}

/// ping/, status/ and anything unknown: the topic and the JSON as it came.
fn fallback(topic: &str, frames: &[Vec<u8>], as_json: bool) -> String {
    let payload = frames
        .first()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_default();
    if as_json {
        let value = serde_json::from_str::<Value>(&payload).unwrap_or(Value::String(payload));
        json!({ "topic": topic, "message": value }).to_string()
    } else {
        format!("{topic}: {payload}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = r#"{"host":"web01","log":"nginx","path":"/p","file_id":"1:2:00000003","offset":42,"seq":1,"epoch":"e","read_at":"2026-11-22T10:00:00Z"}"#;

    #[test]
    fn plain_lines_read_host_log_colon_line() {
        let s = render(
            "line/web01/nginx",
            &[META.into(), b"GET / 200".to_vec()],
            false,
        );
        assert_eq!(s, "web01 nginx: GET / 200");
    }

    #[test]
    fn json_lines_carry_the_documented_fields() {
        let s = render("line/web01/nginx", &[META.into(), b"GET /".to_vec()], true);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["topic"], "line/web01/nginx");
        assert_eq!(v["host"], "web01");
        assert_eq!(v["log"], "nginx");
        assert_eq!(v["body"], "GET /");
        assert_eq!(v["offset"], 42);
    }

    #[test]
    fn unknown_topics_are_shown_not_dropped() {
        assert_eq!(
            render("ping/h", &[br#"{"up":true}"#.to_vec()], false),
            r#"ping/h: {"up":true}"#
        );
    }
}
