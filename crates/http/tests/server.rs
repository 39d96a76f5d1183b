//! The server's limits, against real sockets on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use rill_http::{HttpServer, Limits, Work};
use rill_test_support::wait_until;

/// `GET path` over HTTP/1.0: status and body, or None if the connection
/// failed or closed without an answer.
fn get_path(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

fn panicking() -> (StatusCode, Vec<u8>) {
    panic!("on purpose")
}

/// `/health` answers 200.
fn healthy(addr: SocketAddr) -> bool {
    get_path(addr, "/health").is_some_and(|(s, _)| s == 200)
}

/// A server with routes that misbehave on purpose.
fn server(limits: Limits, stopped: Arc<AtomicBool>) -> HttpServer {
    HttpServer::bind(
        "test",
        "127.0.0.1:0".parse().unwrap(),
        limits,
        move |work: Work| {
            let slow = work.clone();
            let stubborn = work.clone();
            Router::new()
                .route(
                    "/stubborn",
                    get(move || {
                        let w = stubborn.clone();
                        async move {
                            // Ignores its deadline.
                            w.run(|_| {
                                std::thread::sleep(Duration::from_secs(3));
                                (StatusCode::OK, b"{}".to_vec())
                            })
                            .await
                        }
                    }),
                )
                .route("/health", get(|| async { "ok" }))
                .route("/panic", get(|| async { panicking() }))
                .route(
                    "/panic-in-work",
                    get(move || {
                        let w = work.clone();
                        async move { w.run(|_| panicking()).await }
                    }),
                )
                .route(
                    "/slow",
                    get(move || {
                        let w = slow.clone();
                        let stopped = stopped.clone();
                        async move {
                            w.run(move |job| {
                                // Runs until told to stop, as a search does.
                                while !job.stopped() {
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                                stopped.store(true, Ordering::SeqCst);
                                (
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    b"{\"error\":\"stopped\"}".to_vec(),
                                )
                            })
                            .await
                        }
                    }),
                )
        },
    )
    .unwrap()
}

fn quick() -> Limits {
    Limits {
        max_connections: 8,
        header_timeout: Duration::from_millis(500),
        stall_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(800),
        workers: 2,
        ..Limits::default()
    }
}

#[test]
fn a_panic_is_a_500_and_the_server_goes_on() {
    let s = server(quick(), Arc::default());
    for path in ["/panic", "/panic-in-work"] {
        let (status, body) = get_path(s.local_addr(), path).unwrap();
        assert_eq!(status, 500, "{path}: {body}");
        assert!(body.contains("internal error"), "{body}");
        assert_eq!(get_path(s.local_addr(), "/health").unwrap().0, 200);
    }
}

#[test]
fn slow_work_stops_at_its_deadline_and_never_holds_up_others() {
    let stopped = Arc::new(AtomicBool::new(false));
    let s = server(quick(), stopped.clone());
    let addr = s.local_addr();
    let slow = std::thread::spawn(move || get_path(addr, "/slow"));
    std::thread::sleep(Duration::from_millis(100));
    // The slow request holds one of two turns; cheap routes never wait.
    let t = Instant::now();
    assert_eq!(get_path(addr, "/health").unwrap().0, 200);
    assert!(t.elapsed() < Duration::from_millis(500));
    let (status, body) = slow.join().unwrap().unwrap();
    assert_eq!((status, body.as_str()), (503, "{\"error\":\"stopped\"}"));
    assert!(stopped.load(Ordering::SeqCst), "the work was told to stop");
    // Work that ignores its deadline is answered for at the deadline (plus
    // a second's grace) all the same.
    let t = Instant::now();
    let (status, body) = get_path(addr, "/stubborn").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("longer than its deadline of 0.8s"), "{body}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_client_that_hangs_up_stops_its_work() {
    let stopped = Arc::new(AtomicBool::new(false));
    let limits = Limits {
        request_timeout: Duration::from_secs(60),
        ..quick()
    };
    let s = server(limits, stopped.clone());
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    write!(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(c);
    assert!(
        wait_until(Duration::from_secs(10), || stopped.load(Ordering::SeqCst)),
        "the work ran on after its client left"
    );
}

#[test]
fn connections_over_the_cap_get_503_and_the_server_recovers() {
    let s = server(quick(), Arc::default());
    let addr = s.local_addr();
    // Eight connections that send nothing hold every slot.
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let (status, body) = get_path(addr, "/health").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("too many connections: at most 8"), "{body}");
    // The header timeout closes them; the server answers again.
    assert!(
        wait_until(Duration::from_secs(10), || healthy(addr)),
        "never recovered from idle connections"
    );
    drop(held);
}

#[test]
fn half_a_request_is_closed_after_the_header_timeout() {
    let s = server(quick(), Arc::default());
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "open for {:?}",
        t.elapsed()
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[test]
fn an_oversized_head_is_refused() {
    let s = server(quick(), Arc::default());
    let path = format!("/health?q={}", "x".repeat(64 * 1024));
    let status = get_path(s.local_addr(), &path).map(|(s, _)| s);
    assert!(matches!(status, Some(414 | 431) | None), "{status:?}");
    assert_eq!(get_path(s.local_addr(), "/health").unwrap().0, 200);
}

#[test]
fn a_flood_of_connections_leaves_the_listener_working() {
    rill_test_support::raise_open_files(8192);
    let limits = Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(2),
        ..quick()
    };
    let s = server(limits, Arc::default());
    let addr = s.local_addr();
    let flood: Vec<TcpStream> = (0..3000)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(flood.len() > 1000, "only {} connections", flood.len());
    drop(flood);
    assert!(
        wait_until(Duration::from_secs(15), || healthy(addr)),
        "the listener did not recover after the flood"
    );
}

/// Regression: SIGTERM waited for running searches; the parser must stop
/// within about a second whatever its requests are doing.
#[test]
fn stopping_the_server_stops_its_work_within_a_second() {
    let stopped = Arc::new(AtomicBool::new(false));
    let limits = Limits {
        request_timeout: Duration::from_secs(60),
        ..quick()
    };
    let s = server(limits, stopped.clone());
    let addr = s.local_addr();
    let client = std::thread::spawn(move || get_path(addr, "/slow"));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    drop(s);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stopping took {:?}",
        t.elapsed()
    );
    assert!(
        stopped.load(Ordering::SeqCst),
        "the work was not told to stop"
    );
    let _ = client.join();
}

/// A server whose `/big` answers `bytes` bytes, with a stall limit of 1 s.
fn big_answers(bytes: usize) -> HttpServer {
    let limits = Limits {
        stall_timeout: Duration::from_secs(1),
        ..quick()
    };
    HttpServer::bind(
        "test",
        "127.0.0.1:0".parse().unwrap(),
        limits,
        move |work: Work| {
            Router::new().route(
                "/big",
                get(move || {
                    let w = work.clone();
                    async move { w.run(move |_| (StatusCode::OK, vec![b'x'; bytes])).await }
                }),
            )
        },
    )
    .unwrap()
}

/// Regression: while an answer streamed out, hyper's pending read (it
/// watches for a hang-up) timed the connection out though the client read
/// steadily.
#[test]
fn a_slow_but_steady_reader_gets_its_whole_answer() {
    let s = big_answers(8 << 20);
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    write!(c, "GET /big HTTP/1.0\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    // 8 MiB over about 3 s: longer than the stall limit, never stalled.
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n;
        std::thread::sleep(Duration::from_millis(80));
    }
    assert!(got > 8 << 20, "got {got} bytes in {:?}", started.elapsed());
    assert!(started.elapsed() > Duration::from_secs(1));
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_stall_limit() {
    let s = big_answers(16 << 20);
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    write!(c, "GET /big HTTP/1.0\r\n\r\n").unwrap();
    // Read nothing for 3 s: the server gives up on the connection.
    std::thread::sleep(Duration::from_secs(3));
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < 16 << 20, "the whole answer came after a 3 s stall");
}
