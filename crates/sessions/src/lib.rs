//! The session-control protocol server of one host (`docs/sessions.md`).
//!
//! Runs inside `ssh_tap` on a thread of its own, with its own SSH
//! connection(s) and ZeroMQ context, only when the host's config has a
//! `sessions` block:
//!
//! ```text
//! client REQ/DEALER --JSON--> ROUTER (sessions.endpoint, ZAP: allow + PLAIN)
//!                                |  server: parse, check age and replays, dispatch
//!                                v
//!            pool of PTY shells at a prompt (shell) over SSH (a rill_ssh::Pool)
//!                                |  output of each open session
//!                                v
//! client SUB <--[session/<id>, bytes]-- XPUB per session (publish_zeromq_bind)
//! ```
//!
//! - [`rill_bus::gate`]: the ZAP handler: CIDR allowlist and PLAIN
//!   credentials ([`policy`] reads them from the `sessions` block).
//! - SSH connections: a [`rill_ssh::Pool`] of their own, spilling over on MaxSessions.
//! - [`shell`]: one shell from channel open to prompt, reading, writing, closing.
//! - [`server`]: the pool, the open sessions, reading and publishing output.
//! - [`reaper`]: ends what a deleted or ended session left running.
//! - [`requests`]: answering requests (parse, check age and replays, dispatch).
//!
//! If the server cannot go on (its SSH connection died, a socket failed, a
//! bug panicked), it raises the tap's shutdown flag and reports the error:
//! `ssh_tap` exits non-zero and `robust_ssh_tap` starts a new one. Sessions
//! do not survive that; clients get `failed` for their ids.

pub mod reaper;
mod replays;
pub mod requests;
pub mod server;
pub mod shell;

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rill_bus::socket::{self, Role};
use rill_config::{Config, Host, SessionSettings};
use rill_process::Shutdown;
use rill_proto::SessionsStatus;
use tracing::{error, info};

use rill_bus::gate::{Gate, Policy};
use rill_ssh::Pool;
use server::Server;

/// What the session server thread last reported, for the tap's status.
pub type SessionsReport = std::sync::Arc<std::sync::Mutex<Option<SessionsStatus>>>;

/// The running session server of a tap.
pub struct SessionServer {
    stop: Shutdown,
    /// Taken by [`finish`]; joined on drop otherwise (a tap that panicked).
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    /// Its counts, for the tap's status (`rill status`).
    pub report: SessionsReport,
}

/// Starts the session server for `host` when its config has a `sessions`
/// block. A failure of the server raises `shutdown` (so the tap exits) and
/// is returned by [`finish`].
pub fn spawn(cfg: &Config, host: &Host, shutdown: &Shutdown) -> Option<SessionServer> {
    let settings = host.sessions.clone()?;
    let (cfg, host) = (cfg.clone(), host.clone());
    let span = tracing::info_span!("sessions", host = %host.name);
    let stop = Shutdown::manual();
    let (stopped, tap) = (stop.clone(), shutdown.clone());
    let report = SessionsReport::default();
    let reporting = report.clone();
    let thread = std::thread::Builder::new()
        .name("sessions".into())
        .spawn(move || {
            let _span = span.entered();
            let done = || stopped.requested() || tap.requested();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                run(&cfg, &host, &settings, &done, &reporting)
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(anyhow!("the session server panicked: {what}"))
            });
            if let Err(e) = &result {
                error!(error = %format!("{e:#}"), "session server failed; the host's tap ends");
                tap.trigger();
            }
            if let Ok(mut r) = reporting.lock() {
                *r = None;
            }
            result
        })
        .expect("could not start the sessions thread");
    Some(SessionServer {
        stop,
        thread: Some(thread),
        report,
    })
}

impl Drop for SessionServer {
    /// A tap that unwinds (a panic caught by its group thread) does not
    /// leave its session server, connection and endpoint behind for the
    /// next run to trip over.
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stops the session server (if any) and waits for it; a failure of the
/// server fails the tap too.
pub fn finish(server: Option<SessionServer>, tap: anyhow::Result<()>) -> anyhow::Result<()> {
    let Some(mut s) = server else { return tap };
    s.stop.trigger();
    let sessions = s.thread.take().map_or(Ok(()), |t| {
        t.join()
            .unwrap_or_else(|_| Err(anyhow!("the session server panicked")))
    });
    tap.and(sessions.context("session server"))
}

/// Serves the protocol until `done()`; an error means the server cannot go on.
pub fn run(
    cfg: &Config,
    host: &Host,
    settings: &SessionSettings,
    done: &dyn Fn() -> bool,
    report: &SessionsReport,
) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let gate = Gate::install(&ctx, policy(settings)?)?;
    let router = socket::open(&ctx, zmq::ROUTER, Role::Control)?;
    gate.guard(&router)?;
    router.set_maxmsgsize(server::DROP_ABOVE_BYTES)?;
    if let Some(path) = settings.endpoint.strip_prefix("ipc://") {
        remove_stale_publishers(path);
    }
    socket::bind(&router, &settings.endpoint)?;
    owner_only(&settings.endpoint);
    let links = Pool::connect(cfg, host).context("could not connect for sessions")?;
    info!(
        endpoint = %settings.endpoint,
        max = settings.max,
        pool = settings.pool,
        "session server listening"
    );
    let mut server = Server::new(&host.name, settings, ctx, gate, router, links);
    let mut last_keepalive = Instant::now();
    let result = loop {
        if done() {
            break Ok(());
        }
        server.wait(Duration::from_millis(100));
        if let Err(e) = server.turn() {
            break Err(e);
        }
        server.report(report);
        if last_keepalive.elapsed() >= Duration::from_secs(2) {
            last_keepalive = Instant::now();
            if let Err(e) = server.links.keepalive() {
                break Err(e.into());
            }
        }
    };
    let reason = match &result {
        Ok(()) => "ssh_tap is stopping".to_owned(),
        Err(e) => format!("the session server failed: {e:#}"),
    };
    server.shut_down(&reason);
    result
}

/// Who may connect to the session sockets, by the `sessions` block:
/// its allowlist and PLAIN credentials (the file read now).
pub fn policy(settings: &SessionSettings) -> anyhow::Result<Policy> {
    let credentials = settings
        .credentials_file
        .as_deref()
        .map(|p| {
            rill_config::Credentials::load(p).map_err(|e| anyhow!("sessions.credentials_file: {e}"))
        })
        .transpose()?;
    let curve = settings
        .curve
        .as_ref()
        .map(|c| rill_bus::CurveServer::load(&c.secret_key_file, &c.authorized_keys_dir))
        .transpose()
        .map_err(|e| anyhow!("sessions.curve: {e}"))?;
    let tcp = settings.endpoint.starts_with("tcp://");
    Ok(Policy::new(
        "sessions",
        settings.allow.clone(),
        credentials,
        curve,
        tcp,
    )?)
}

/// Makes an `ipc://` socket file readable and writable by its owner only,
/// so other local users cannot drive shells or read their output.
pub(crate) fn owner_only(endpoint: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

/// Publish sockets a killed tap left behind (`<path>.<12 hex>`).
fn remove_stale_publishers(path: &str) {
    let path = std::path::Path::new(path);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = n.strip_prefix(&prefix) {
            if suffix.len() == 12 && suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
