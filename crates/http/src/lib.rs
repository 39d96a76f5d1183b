//! Rill's one HTTP server: axum on hyper, on a tokio runtime of its own
//! thread, with every limit set once ([`Limits`]). The search API is served
//! through it today; the web page, metrics and ingest are routes on the
//! same server.
//!
//! ```text
//! TcpListener --accept (serve.rs)--> at most `max_connections` served at once;
//!   |                                 the rest answered 503 (closed at once
//!   |                                 over TLS); an accept error (EMFILE)
//!   |                                 waits and goes on
//!   v
//! TLS handshake, when the server has TLS (tls.rs): done within
//!   `header_timeout`; anything but TLS (plain HTTP) is closed unserved
//!   v
//! hyper HTTP/1.1 per connection: head <= max_head_bytes, whole within
//!   `header_timeout` (also the idle time between requests), no read or
//!   write stalled for `stall_timeout` (stall.rs, under TLS too)
//!   v
//! Guard, when the server has one (guard.rs): the peer in its allowlist
//!   (else 403), a bearer token from its tokens file (else 401); the
//!   token's name to the route as `Caller`
//!   v
//! axum Router (a panic becomes a 500, never a dead listener)
//!   v
//! handlers hand their blocking work to Work (work.rs): at most `workers`
//!   at once, each under a deadline of `request_timeout` that is also raised
//!   when the client hangs up; its answer is held against a shared budget of
//!   response memory until it is sent, and never over `max_response_bytes`
//! ```
//!
//! Nothing a client sends can stop the server: every bad request gets a 4xx
//! (JSON, `{"error": ...}`) and the listener keeps answering.

mod file_watch;
mod guard;
mod serve;
mod stall;
mod tls;
mod work;

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tracing::info;

pub use file_watch::FileWatch;
pub use guard::{presented_token, Caller, Guard, Peer, Refusal};
pub use tls::{Tls, TlsError};
pub use work::{Job, Work};

/// The limits of one server. The defaults suit an API on loopback or a
/// small team's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request's head must arrive whole within this, and a kept-alive
    /// connection is closed after this long without a new request.
    pub header_timeout: Duration,
    /// A connection whose reads or writes make no progress for this long is
    /// closed (a client that stopped reading its answer).
    pub stall_timeout: Duration,
    /// The longest request head (request line and headers), in bytes; a
    /// longer one gets 431 or 414. At least 8192 (hyper's minimum).
    pub max_head_bytes: usize,
    /// The longest a request's work may run; it is stopped past it.
    pub request_timeout: Duration,
    /// Requests whose work runs at once; others wait for a turn within
    /// their deadline. Cheap requests (`/health`) never wait.
    pub workers: usize,
    /// The largest answer one request may give.
    pub max_response_bytes: usize,
    /// Answers built but not yet sent, in bytes, over all connections.
    pub response_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            max_head_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(30),
            workers: 4,
            max_response_bytes: 16 << 20,
            response_memory: 64 << 20,
        }
    }
}

/// How a server serves: its limits, and TLS and a guard if it has them.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub limits: Limits,
    /// When set, only TLS is spoken on the port.
    pub tls: Option<Tls>,
    /// When set (and not open), checked for every request.
    pub guard: Option<Guard>,
}

impl From<Limits> for Settings {
    fn from(limits: Limits) -> Settings {
        Settings {
            limits,
            tls: None,
            guard: None,
        }
    }
}

/// A running server; stops when dropped (within about a second, whatever
/// its requests are doing: their deadlines are raised).
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not listen on {addr}: {reason}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub reason: String,
}

impl HttpServer {
    /// Binds `addr` and serves `router` (built by `make`, which gets the
    /// server's [`Work`]) from a thread of its own, in plain HTTP and
    /// unguarded. `name` names the thread and the log lines.
    pub fn bind(
        name: &str,
        addr: SocketAddr,
        limits: Limits,
        make: impl FnOnce(Work) -> axum::Router,
    ) -> Result<HttpServer, ListenError> {
        HttpServer::bind_with(name, addr, limits.into(), make)
    }

    /// [`HttpServer::bind`] with TLS and a guard, as `settings` say.
    pub fn bind_with(
        name: &str,
        addr: SocketAddr,
        settings: Settings,
        make: impl FnOnce(Work) -> axum::Router,
    ) -> Result<HttpServer, ListenError> {
        let limits = settings.limits;
        let tls = settings.tls.is_some();
        let fail = |reason: String| ListenError { addr, reason };
        let listener = std::net::TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| fail(e.to_string()))?;
        let addr = listener.local_addr().unwrap_or(addr);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(limits.workers + 2)
            // Parsers recurse on what clients send; room beyond tokio's 2 MiB.
            .thread_stack_size(8 << 20)
            .thread_name(format!("{name}-http"))
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|e| fail(e.to_string()))?
        };
        let router = make(Work::new(limits));
        let (stop, stopped) = watch::channel(false);
        let label = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-http"))
            .spawn(move || {
                runtime.block_on(serve::serve(listener, router, settings, stopped));
                // Requests still running are dropped: their deadlines are
                // raised, so blocking work ends within milliseconds.
                runtime.shutdown_timeout(Duration::from_secs(1));
                info!(server = %label, "http server stopped");
            })
            .map_err(|e| fail(e.to_string()))?;
        info!(server = name, %addr, tls, "http server listening");
        Ok(HttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server's thread is still running (it ends only when
    /// stopped, or if its runtime failed).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a request that panicked is answered (the panic itself is in the
/// process's log).
pub(crate) const PANICKED: &str = "internal error: the request failed inside the server (see its log); other requests are not affected";

/// A JSON answer.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}
