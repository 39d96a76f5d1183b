//! The accept loop and one connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::{debug, warn};

use crate::stall::Stall;
use crate::Limits;

/// Connections over the cap that are being answered 503 at once; beyond
/// these, a connection is closed without a word.
const REFUSING: usize = 64;

/// Serves `router` on `listener` until `stop` says so.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let router = router.layer(CatchPanicLayer::custom(panicked));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    let quiet = Throttle::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
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
                tokio::spawn(connection(stream, router.clone(), limits, permit));
            }
            Err(_) => {
                if quiet.due() {
                    warn!(
                        max = limits.max_connections,
                        "connection refused: the server is at its connection cap"
                    );
                }
                if let Ok(p) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, limits.max_connections, p));
                }
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    router: axum::Router,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Stall::new(stream, limits.stall_timeout));
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .serve_connection(io, TowerToHyperService::new(router))
        .await;
    if let Err(e) = served {
        debug!(error = %e, "connection ended");
    }
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
