//! The accept loop and one connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tower_service::Service;
use tracing::{debug, warn};

use crate::guard::{Guard, Peer};
use crate::stall::Stall;
use crate::{Limits, Settings};

/// Connections over the cap that are being answered 503 at once; beyond
/// these, a connection is closed without a word.
const REFUSING: usize = 64;

/// What every connection of one server shares.
struct Shared {
    router: axum::Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    guard: Option<Guard>,
}

/// Serves `router` on `listener` until `stop` says so.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) {
    let limits = settings.limits;
    let shared = Arc::new(Shared {
        router: router.layer(CatchPanicLayer::custom(panicked)),
        limits,
        tls: settings.tls.as_ref().map(crate::Tls::acceptor),
        guard: settings.guard.filter(|g| !g.is_open()),
    });
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let quiet = Throttle::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: the listener stays; wait for fds.
                if quiet.due() {
                    warn!(error = %e, "could not accept a connection; trying again");
                }
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(connection(stream, peer, shared.clone(), permit));
            }
            Err(_) => {
                if quiet.due() {
                    warn!(
                        max = limits.max_connections,
                        "connection refused: the server is at its connection cap"
                    );
                }
                // Over TLS a plain answer would be noise: closed at once.
                if shared.tls.is_none() {
                    if let Ok(p) = refusing.clone().try_acquire_owned() {
                        tokio::spawn(refuse(stream, limits.max_connections, p));
                    }
                }
            }
        }
    }
}

/// One connection: its TLS handshake (within `header_timeout`, and never
/// stalled for `stall_timeout`: a client that connects and says nothing
/// holds its slot no longer), then HTTP/1.1.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let limits = shared.limits;
    let io = Stall::new(stream, limits.stall_timeout);
    let Some(tls) = &shared.tls else {
        return http(io, peer, shared).await;
    };
    match tokio::time::timeout(limits.header_timeout, tls.accept(io)).await {
        Ok(Ok(io)) => http(io, peer, shared).await,
        // A plain-HTTP request lands here too: rustls answers it with an
        // alert and it is closed, never served.
        Ok(Err(e)) => debug!(%peer, error = %e, "tls handshake failed"),
        Err(_) => debug!(
            %peer,
            within_s = limits.header_timeout.as_secs(),
            "tls handshake not done in time; closed"
        ),
    }
}

/// HTTP/1.1 on `io`: every request checked by the guard, then routed.
async fn http<I>(io: I, peer: SocketAddr, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.limits;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { route(req, peer, &shared).await }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        debug!(error = %e, "connection ended");
    }
}

/// One request: [`Peer`] (and the guard's `Caller`) in its extensions, or
/// the guard's refusal.
async fn route(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Response, Infallible> {
    if let Some(guard) = &shared.guard {
        match guard.check(peer.ip(), req.uri().path(), req.headers()) {
            Ok(Some(caller)) => {
                req.extensions_mut().insert(caller);
            }
            Ok(None) => {}
            Err(refusal) => {
                debug!(%peer, path = req.uri().path(), reason = %refusal.message(), "request refused");
                return Ok(refusal.response());
            }
        }
    }
    req.extensions_mut().insert(Peer(peer));
    // Router is always ready; a clone per request is what axum does too.
    shared.router.clone().call(req).await
}

/// A 503 for a connection over the cap, then close.
async fn refuse(mut stream: TcpStream, max: usize, _permit: OwnedSemaphorePermit) {
    let body = format!(
        "{{\"error\":\"too many connections: at most {max} are served at once; try again\"}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the
        // connection before it read the answer.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}

/// A handler that panicked: a 500 that says so (the panic itself is in the
/// process's log), and the server goes on.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    crate::error(StatusCode::INTERNAL_SERVER_ERROR, crate::PANICKED)
}

/// At most one warning per 10 s from the accept loop.
#[derive(Default)]
struct Throttle {
    last: AtomicU64,
}

impl Throttle {
    fn due(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        now >= last.saturating_add(10) && self.last.swap(now, Ordering::Relaxed) == last
    }
}
