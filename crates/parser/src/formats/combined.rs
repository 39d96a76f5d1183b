//! The combined log format of nginx and Apache:
//! `%h %l %u [%t] "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`, and the
//! common log format (the same without referer and user agent). Anything
//! after the user agent (nginx extras like `$request_time`) is ignored.
//!
//! Fields: `remote_addr`, `user` (unless `-`), `method`, `path`, `protocol`
//! (or `request` when the request line is not three words), `status`,
//! `bytes` (numbers), `referer`, `user_agent`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{FormatError, Parsed};

/// Parses one line; hand-written (no regex) because access logs are the
/// biggest logs.
pub fn parse(line: &str) -> Result<Parsed, FormatError> {
    let mut c = Cursor(line);
    let mut fields = Map::new();
    let remote = c.word("the client address")?;
    fields.insert("remote_addr".into(), remote.into());
    c.word("the identity (`-`)")?;
    let user = c.word("the user (`-`)")?;
    if user != "-" {
        fields.insert("user".into(), user.into());
    }
    let stamp = c.bracketed()?;
    let ts = DateTime::parse_from_str(stamp, "%d/%b/%Y:%H:%M:%S %z").map_err(|_| {
        FormatError::new(format!(
            "expected a time like [22/Nov/2026:10:00:00 +0000], got [{stamp}]"
        ))
    })?;
    let request = c.quoted("the request line")?;
    let mut parts = request.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v), None) => {
            fields.insert("method".into(), m.into());
            fields.insert("path".into(), p.into());
            fields.insert("protocol".into(), v.into());
        }
        _ => {
            fields.insert("request".into(), request.into());
        }
    }
    let status = c.word("the status")?;
    let status: u16 = status
        .parse()
        .map_err(|_| FormatError::new(format!("expected a status code, got {status:?}")))?;
    fields.insert("status".into(), status.into());
    let bytes = c.word("the response size")?;
    if bytes != "-" {
        let n: u64 = bytes.parse().map_err(|_| {
            FormatError::new(format!("expected a response size or `-`, got {bytes:?}"))
        })?;
        fields.insert("bytes".into(), n.into());
    }
    if !c.0.is_empty() {
        let referer = c.quoted("the referer")?;
        fields.insert("referer".into(), referer.into());
        let agent = c.quoted("the user agent")?;
        fields.insert("user_agent".into(), Value::String(agent.into()));
    }
    Ok(Parsed {
        ts: Some(ts.with_timezone(&Utc)),
        fields,
        body: None,
    })
}

struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    fn word(&mut self, what: &str) -> Result<&'a str, FormatError> {
        let s = self.0;
        let end = s.find(' ').unwrap_or(s.len());
        if end == 0 {
            return Err(FormatError::new(format!("expected {what}")));
        }
        self.0 = s[end..].trim_start_matches(' ');
        Ok(&s[..end])
    }

    fn bracketed(&mut self) -> Result<&'a str, FormatError> {
        let s = self.0;
        let inner = s
            .strip_prefix('[')
            .and_then(|r| r.find(']').map(|e| &r[..e]))
            .ok_or_else(|| FormatError::new("expected a time like [22/Nov/2026:10:00:00 +0000]"))?;
        self.0 = s[inner.len() + 2..].trim_start_matches(' ');
        Ok(inner)
    }

    /// `"..."`, where `\"` does not end it (nginx escapes quotes as `\x22`,
    /// Apache as `\"`); the escapes are kept as written.
    fn quoted(&mut self, what: &str) -> Result<&'a str, FormatError> {
        let s = self.0;
        let err = || FormatError::new(format!("expected {what} in double quotes"));
        let r = s.strip_prefix('"').ok_or_else(err)?;
        let bytes = r.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    self.0 = r[i + 1..].trim_start_matches(' ');
                    return Ok(&r[..i]);
                }
                _ => i += 1,
            }
        }
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn nginx_combined_line() {
        let p = parse(r#"203.0.113.7 - - [22/Nov/2026:10:00:00 +0100] "GET /api/v1/users?id=7 HTTP/1.1" 500 1234 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64)""#).unwrap();
        assert_eq!(p.ts, Some(utc("2026-11-22T09:00:00Z")));
        assert_eq!(p.fields["remote_addr"], "203.0.113.7");
        assert_eq!(p.fields["method"], "GET");
        assert_eq!(p.fields["path"], "/api/v1/users?id=7");
        assert_eq!(p.fields["protocol"], "HTTP/1.1");
        assert_eq!(p.fields["status"], 500);
        assert_eq!(p.fields["bytes"], 1234);
        assert_eq!(p.fields["referer"], "https://example.com/");
        assert_eq!(p.fields["user_agent"], "Mozilla/5.0 (X11; Linux x86_64)");
        assert!(p.fields.get("user").is_none());
    }

    #[test]
    fn apache_common_format_user_escaped_quotes_and_extras() {
        let p = parse(r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#).unwrap();
        assert_eq!(p.ts, Some(utc("2000-10-10T20:55:36Z")));
        assert_eq!(p.fields["user"], "frank");
        assert!(p.fields.get("referer").is_none());
        let p = parse(r#"::1 - - [22/Nov/2026:10:00:00 +0000] "GET /q?x=\"y\" HTTP/1.1" 304 - "-" "curl/8.5.0" 0.003 upstream=10.0.0.1"#).unwrap();
        assert_eq!(p.fields["path"], r#"/q?x=\"y\""#);
        assert!(p.fields.get("bytes").is_none(), "`-` bytes");
        assert_eq!(p.fields["user_agent"], "curl/8.5.0");
        // A scanner's garbage request line is still a request.
        let p = parse(
            r#"198.51.100.1 - - [22/Nov/2026:10:00:00 +0000] "\x16\x03\x01" 400 157 "-" "-""#,
        )
        .unwrap();
        assert_eq!(p.fields["request"], r"\x16\x03\x01");
        assert_eq!(p.fields["status"], 400);
    }

    #[test]
    fn broken_lines_say_what_was_expected() {
        for (line, expected) in [
            ("", "expected the client address"),
            (
                "1.2.3.4 - - 22/Nov/2026 \"GET /\" 200 1",
                "expected a time like",
            ),
            (
                "1.2.3.4 - - [yesterday] \"GET /\" 200 1",
                "expected a time like [22/Nov/2026:10:00:00 +0000], got [yesterday]",
            ),
            (
                "1.2.3.4 - - [22/Nov/2026:10:00:00 +0000] \"GET / 200 1",
                "expected the request line in double quotes",
            ),
            (
                "1.2.3.4 - - [22/Nov/2026:10:00:00 +0000] \"GET /\" OK 1",
                "expected a status code, got \"OK\"",
            ),
            (
                "1.2.3.4 - - [22/Nov/2026:10:00:00 +0000] \"GET /\" 200 1 \"-\" \"cut",
                "expected the user agent in double quotes",
            ),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.0.contains(expected), "{line}: {e}");
        }
    }
}
