//! TLS and the guard, against real sockets on loopback: a test CA and a
//! certificate for 127.0.0.1 (rill_test_support::TestPki), a rustls client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Router};
use rill_config::hub::Tokens;
use rill_http::{Caller, Guard, HttpServer, Limits, Peer, Settings, Tls, TlsError};
use rill_test_support::TestPki;
use rustls::pki_types::{CertificateDer, ServerName};

fn pki() -> TestPki {
    TestPki::new("rill test ca")
}

const TOKEN: &str = "0123456789abcdef-alice";

/// A TLS server: `/health` open, `/who` answers the caller's name, peer
/// included.
fn server(pki: &TestPki, limits: Limits, guard: Option<Guard>) -> HttpServer {
    let settings = Settings {
        limits,
        tls: Some(Tls::from_pem(pki.cert.as_bytes(), pki.key.as_bytes()).unwrap()),
        guard,
    };
    HttpServer::bind_with("test", "127.0.0.1:0".parse().unwrap(), settings, |_| {
        Router::new().route("/health", get(|| async { "ok" })).route(
            "/who",
            get(
                |caller: Option<Extension<Caller>>, Extension(Peer(peer)): Extension<Peer>| async move {
                    format!(
                        "{} from {}",
                        caller.map_or("nobody".into(), |Extension(Caller(c))| c),
                        peer.ip()
                    )
                },
            ),
        )
    })
    .unwrap()
}

fn guard() -> Guard {
    let mut g = Guard::new("search");
    g.tokens = Some(Tokens::parse(&format!("{TOKEN} alice\n")).unwrap());
    g.open_paths = vec!["/health".into()];
    g
}

/// A client trusting the CA certificate `trusted` (DER), if any.
fn client(trusted: Option<&[u8]>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = trusted {
        roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// `GET path` over TLS with `headers`: status and body, or the error.
fn get_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &str,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(text.clone())?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(head.to_owned())?;
    Ok((status, body.to_owned()))
}

#[test]
fn tls_serves_a_client_that_trusts_the_ca_and_only_it() {
    let pki = pki();
    let s = server(&pki, Limits::default(), None);
    let addr = s.local_addr();
    let (status, body) = get_tls(addr, client(Some(&pki.ca_der)), "/who", "").unwrap();
    assert_eq!((status, body.as_str()), (200, "nobody from 127.0.0.1"));
    let e = get_tls(addr, client(None), "/health", "").unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.contains("certificate"),
        "{e}"
    );
    // Plain HTTP to the TLS port is never served.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(
        get_tls(addr, client(Some(&pki.ca_der)), "/health", "")
            .unwrap()
            .0,
        200
    );
}

#[test]
fn a_client_that_never_handshakes_loses_its_slot_at_the_header_timeout() {
    let pki = pki();
    let limits = Limits {
        max_connections: 1,
        header_timeout: Duration::from_millis(500),
        stall_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let s = server(&pki, limits, None);
    let addr = s.local_addr();
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    // The server closes it.
    assert!(matches!(silent.read(&mut buf), Ok(0) | Err(_)));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // And the one slot serves the next client.
    assert_eq!(
        get_tls(addr, client(Some(&pki.ca_der)), "/health", "")
            .unwrap()
            .0,
        200
    );
}

#[test]
fn the_guard_asks_for_a_token_and_hands_its_name_to_the_route() {
    let pki = pki();
    let s = server(&pki, Limits::default(), Some(guard()));
    let addr = s.local_addr();
    let ok = client(Some(&pki.ca_der));
    let (status, body) = get_tls(
        addr,
        ok.clone(),
        "/who",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "alice from 127.0.0.1"));
    let (status, body) = get_tls(addr, ok.clone(), "/who", "").unwrap();
    assert_eq!(status, 401);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["error"].as_str().unwrap().starts_with("missing token"),
        "{v}"
    );
    let (status, body) = get_tls(
        addr,
        ok.clone(),
        "/who",
        "Authorization: Bearer 0123456789abcdef-mallory\r\n",
    )
    .unwrap();
    assert_eq!(status, 401);
    assert!(
        body.contains("unknown token") && !body.contains("mallory"),
        "{body}"
    );
    assert_eq!(get_tls(addr, ok, "/health", "").unwrap().0, 200);
}

#[test]
fn an_allowlist_without_the_peer_answers_403_naming_it() {
    let pki = pki();
    let mut g = Guard::new("ingest");
    g.allow = vec!["10.0.0.0/8".parse().unwrap()];
    let s = server(&pki, Limits::default(), Some(g));
    let (status, body) = get_tls(s.local_addr(), client(Some(&pki.ca_der)), "/health", "").unwrap();
    assert_eq!(status, 403);
    assert_eq!(
        body,
        r#"{"error":"address 127.0.0.1 is not in ingest.allow"}"#
    );
}

#[test]
fn bad_files_are_refused_naming_the_file_and_the_fault() {
    let pki = pki();
    let other = pki_key();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cert = write("cert.pem", &pki.cert);
    let key = write("key.pem", &pki.key);
    let wrong_key = write("other.pem", &other);
    let garbage = write("garbage.pem", "hello\n");
    let missing = dir.path().join("missing.pem");
    assert!(Tls::load(&cert, &key).is_ok());
    let msg = |r: Result<Tls, TlsError>| r.unwrap_err().to_string();
    let e = msg(Tls::load(&missing, &key));
    assert!(
        e.starts_with(&format!("{}: could not read it", missing.display())),
        "{e}"
    );
    let e = msg(Tls::load(&garbage, &key));
    assert!(
        e.starts_with(&format!("{}: no certificate in it", garbage.display())),
        "{e}"
    );
    let e = msg(Tls::load(&cert, &garbage));
    assert!(
        e.starts_with(&format!("{}: no private key in it", garbage.display())),
        "{e}"
    );
    // A key file holding a certificate only.
    let e = msg(Tls::load(&cert, &cert));
    assert!(
        e.starts_with(&format!("{}: no private key in it", cert.display())),
        "{e}"
    );
    let e = msg(Tls::load(&cert, &wrong_key));
    assert!(
        e.contains(&cert.display().to_string()) && e.contains(&wrong_key.display().to_string()),
        "{e}"
    );
    assert!(e.contains("is not the certificate's"), "{e}");
}

fn pki_key() -> String {
    rcgen::KeyPair::generate().unwrap().serialize_pem()
}
