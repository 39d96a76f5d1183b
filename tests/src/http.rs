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
    response(&raw)
}

/// An HTTP/1.0 answer read to its end: its status and its body (JSON,
/// else the text as a JSON string).
fn response(raw: &[u8]) -> Option<(u16, Value)> {
    let text = String::from_utf8_lossy(raw);
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

/// `POST path` with `headers` and `body` to 127.0.0.1:`port` over
/// HTTP/1.0, from the local address `from` (e.g. 127.0.0.2, to be outside
/// an allowlist): the status and the JSON body, or None if nothing answers.
pub fn http_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    from: std::net::Ipv4Addr,
) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut s = connect_from(from, port)?;
    s.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let mut head = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    // A server may answer (413) and close before the body is all sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    response(&raw)
}

/// A TCP connection to 127.0.0.1:`port` from the local address `from`.
fn connect_from(from: std::net::Ipv4Addr, port: u16) -> Option<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a socket we own, bound and connected with addresses that
    // live across the calls; closed by the TcpStream (or here on failure).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let local = addr(from, 0);
        let remote = addr(std::net::Ipv4Addr::LOCALHOST, port);
        let ok = libc::bind(fd, (&raw const local).cast(), len) == 0
            && libc::connect(fd, (&raw const remote).cast(), len) == 0;
        if !ok {
            libc::close(fd);
            return None;
        }
        Some(std::net::TcpStream::from_raw_fd(fd))
    }
}
