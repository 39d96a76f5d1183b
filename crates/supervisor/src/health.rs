//! Asking the search API whether it answers.
//!
//! A thread sends `GET /health` to `search.listen` every [`PROBE_EVERY`]
//! (connect within 2 s, answer within 3 s) and keeps the last verdict. The
//! supervisor shows it in `rill status` and restarts a parser whose API has
//! hung for [`RESTART_AFTER`]: it took connections (or let them wait in the
//! backlog) and answered none. A refused connection is not a hang: the
//! parser's own keeper binds the port again, and a port taken by another
//! program is not cured by restarting the parser.
//!
//! `/health` needs no token (`search.tokens_file` exempts it). With
//! `search.tls` the API speaks only TLS; the probe finds out by itself:
//! it speaks what answered last (plain HTTP at first) and, when that
//! fails without hanging (a TLS listener closes a plain request
//! unanswered; a plain one answers a TLS hello with a 400), tries the
//! other once and keeps it if it answers.
//!
//! Over TLS the probe does NOT verify the certificate, whatever the listen
//! address (loopback, or an interface's address or 0.0.0.0 for a
//! non-loopback `search.listen`): it connects to the address the parser
//! bound on this machine, so its packets never leave the machine; it sends
//! no token and reads only a status line, so there is nothing a forger
//! could learn, and all one could do is make the API look up or hung,
//! which takes a process on this machine that holds the port, i.e. one
//! that could stop the parser anyway. Verifying would need the
//! certificate's name to match the address probed (`0.0.0.0` never does)
//! or the CA in the supervisor's trust store: failures that say nothing
//! about whether the API answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use rill_proto::ApiStatus;
use tracing::warn;

pub const PROBE_EVERY: Duration = Duration::from_secs(5);
pub const RESTART_AFTER: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Verdict {
    status: Option<ApiStatus>,
    /// Since when every probe found the API hung (None otherwise).
    failing_since: Option<Instant>,
}

/// The probing thread; stops when dropped.
pub struct ApiProbe {
    listen: SocketAddr,
    verdict: Arc<Mutex<Verdict>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiProbe {
    pub fn start(listen: SocketAddr) -> ApiProbe {
        let verdict = Arc::new(Mutex::new(Verdict::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (verdict, stop) = (verdict.clone(), stop.clone());
            std::thread::Builder::new()
                .name("api-probe".into())
                .spawn(move || {
                    let mut tls = false;
                    while !stop.load(Ordering::Relaxed) {
                        let result = probe(listen, &mut tls);
                        let mut v = verdict.lock().unwrap_or_else(|p| p.into_inner());
                        match &result {
                            Err(f) if f.hung => {
                                v.failing_since.get_or_insert_with(Instant::now);
                            }
                            _ => v.failing_since = None,
                        }
                        v.status = Some(ApiStatus {
                            listen: listen.to_string(),
                            ok: result.is_ok(),
                            error: result.err().map(|f| f.message),
                            checked_at: Utc::now(),
                        });
                        drop(v);
                        let end = Instant::now() + PROBE_EVERY;
                        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                })
                .ok()
        };
        ApiProbe {
            listen,
            verdict,
            stop,
            thread,
        }
    }

    /// The last probe's verdict.
    pub fn status(&self) -> Option<ApiStatus> {
        self.lock().status.clone()
    }

    /// How long the API has been hung, if it is.
    pub fn failing_for(&self) -> Option<Duration> {
        self.lock().failing_since.map(|t| t.elapsed())
    }

    /// Forgets the failures so far (the parser was just restarted).
    pub fn reset(&self) {
        self.lock().failing_since = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verdict> {
        self.verdict.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

impl Drop for ApiProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a probe failed.
#[derive(Debug)]
pub struct Failure {
    /// Something listens but does not answer in time.
    pub hung: bool,
    pub message: String,
}

fn fail(hung: bool, message: String) -> Failure {
    Failure { hung, message }
}

/// One `GET /health`, over TLS when `tls`, else in plain HTTP: Ok if the
/// answer is a 200, else what went wrong. A failure that is not a hang
/// tries the other way; `tls` follows the way that answered (the first
/// way's failure is the one told).
pub fn probe(addr: SocketAddr, tls: &mut bool) -> Result<(), Failure> {
    let first = probe_as(addr, *tls);
    match &first {
        Err(f) if !f.hung => {
            if probe_as(addr, !*tls).is_ok() {
                *tls = !*tls;
                return Ok(());
            }
            first
        }
        _ => first,
    }
}

fn probe_as(addr: SocketAddr, tls: bool) -> Result<(), Failure> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| {
        let hung = e.kind() == std::io::ErrorKind::TimedOut;
        fail(hung, format!("could not connect: {e}"))
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(3)));
    if !tls {
        return ask(s);
    }
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = unverified()
        .and_then(|c| rustls::ClientConnection::new(c, name))
        .map_err(|e| fail(false, format!("could not start tls: {e}")))?;
    ask(rustls::StreamOwned::new(conn, s))
}

/// `GET /health` on a connected stream, and its status line.
fn ask(mut s: impl Read + Write) -> Result<(), Failure> {
    s.write_all(b"GET /health HTTP/1.0\r\nHost: rill\r\n\r\n")
        .map_err(|e| match e.kind() {
            // A TLS handshake that got no answer.
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                fail(true, format!("no answer within 3s: {e}"))
            }
            _ => fail(false, format!("could not send: {e}")),
        })?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            // A reset is an answer of sorts (a server at its connection
            // cap closes the connections it cannot serve): only silence is
            // a hang.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(fail(true, format!("no answer within 3s: {e}")))
            }
            Err(e) => return Err(fail(false, format!("the connection failed: {e}"))),
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    match line.split(' ').nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(fail(false, format!("answered {code}"))),
        None if got == 0 => Err(fail(
            false,
            "closed the connection without an answer".into(),
        )),
        None => Err(fail(false, format!("answered {line:?}"))),
    }
}

/// A TLS client that takes any certificate (see the module's comment for
/// why that is right here), still checking the handshake's signatures.
fn unverified() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Logs once per failure stretch.
pub fn log_failure(status: &ApiStatus) {
    warn!(listen = %status.listen, error = status.error.as_deref().unwrap_or(""), "search api does not answer /health");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_and_a_silent_listener_are_failures_with_reasons() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // Accepts (the kernel does) but never answers.
        let e = probe(addr, &mut false).unwrap_err();
        assert!(
            e.hung && e.message.starts_with("no answer within 3s"),
            "{e:?}"
        );
        drop(l);
        let e = probe(addr, &mut false).unwrap_err();
        assert!(
            !e.hung && e.message.starts_with("could not connect"),
            "{e:?}"
        );
    }
}
