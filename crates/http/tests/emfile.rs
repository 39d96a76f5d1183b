//! Its own test binary: it lowers the process's open-file limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use rill_http::{HttpServer, Limits};

fn set_files(n: u64) -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        let old = l.rlim_cur;
        l.rlim_cur = n.min(l.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        old
    }
}

fn health(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
}

/// Regression: with its file descriptors used up (`Too many open files`),
/// tiny_http's accept thread panicked and the port stayed closed.
#[test]
fn running_out_of_file_descriptors_does_not_close_the_listener() {
    let limits = Limits {
        max_connections: 10_000,
        ..Limits::default()
    };
    let s = HttpServer::bind("emfile", "127.0.0.1:0".parse().unwrap(), limits, |_| {
        Router::new().route("/health", get(|| async { "ok" }))
    })
    .unwrap();
    let addr = s.local_addr();
    assert!(health(addr));
    let old = set_files(256);
    let mut held = Vec::new();
    while let Ok(c) = TcpStream::connect(addr) {
        held.push(c);
        if held.len() > 2000 {
            break;
        }
    }
    assert!(held.len() < 2000, "the descriptors never ran out");
    // The server's accepts fail with EMFILE meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    set_files(old);
    assert!(
        rill_test_support::wait_until(Duration::from_secs(20), || health(addr)),
        "the listener never came back"
    );
}
