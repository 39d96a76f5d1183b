//! Plain HTTP/1.0 requests to the search API, written by hand so a test
//! can send what no well-behaved client would.

use std::time::Duration;

use serde_json::Value;

/// `GET path` (already percent-encoded) from 127.0.0.1:`port` over HTTP/1.0:
/// the status and the JSON body, or None if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, Value)> {
    http_request(port, "GET", path)
}

/// Like [`http_get`] with any method.
pub fn http_request(port: u16, method: &str, path: &str) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    ))
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
