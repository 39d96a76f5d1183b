//! The stream proxy: one public endpoint for every topic.

use std::thread::JoinHandle;

use tracing::{debug, warn};

use crate::socket::{self, Role};
use crate::BusError;

/// Where the proxy serves the streams inside its own process.
pub const INPROC_STREAMS: &str = "inproc://rill-streams";

/// A running XSUB→XPUB forwarder. Stop it with [`StreamProxy::stop`].
pub struct StreamProxy {
    control: zmq::Socket,
    thread: Option<JoinHandle<()>>,
}

impl StreamProxy {
    /// Binds `bus` (where publishers connect) and `streams` (where clients
    /// subscribe) and forwards in a background thread.
    pub fn start(ctx: &zmq::Context, bus: &str, streams: &str) -> Result<Self, BusError> {
        StreamProxy::open(ctx, bus, &[streams], None, false)
    }

    /// [`StreamProxy::start`] with subscribers checked by `gate` (whose
    /// handler runs in `ctx`). The streams are also served on
    /// [`INPROC_STREAMS`] to this process's own subscribers, which no
    /// gate asks (inproc connections have no security handshake).
    pub fn start_guarded(
        ctx: &zmq::Context,
        bus: &str,
        streams: &str,
        gate: Option<&crate::gate::Gate>,
    ) -> Result<Self, BusError> {
        StreamProxy::open(ctx, bus, &[streams], gate, true)
    }

    /// [`StreamProxy::start_guarded`] on several endpoints (the public one
    /// and a local unix socket).
    pub fn start_on(
        ctx: &zmq::Context,
        bus: &str,
        streams: &[&str],
        gate: Option<&crate::gate::Gate>,
    ) -> Result<Self, BusError> {
        StreamProxy::open(ctx, bus, streams, gate, true)
    }

    fn open(
        ctx: &zmq::Context,
        bus: &str,
        streams: &[&str],
        gate: Option<&crate::gate::Gate>,
        inproc: bool,
    ) -> Result<Self, BusError> {
        let frontend = socket::open(ctx, zmq::XSUB, Role::LiveBus)?;
        socket::bind(&frontend, bus)?;
        let backend = socket::open(ctx, zmq::XPUB, Role::Live)?;
        if let Some(g) = gate {
            g.guard(&backend)?;
        }
        for endpoint in streams {
            socket::bind(&backend, endpoint)?;
        }
        if inproc {
            backend.bind(INPROC_STREAMS)?;
        }
        let control_endpoint = format!("inproc://stream-proxy-{:p}", &frontend as *const _);
        let control_server = ctx.socket(zmq::PAIR)?;
        control_server.bind(&control_endpoint)?;
        let control = ctx.socket(zmq::PAIR)?;
        control.connect(&control_endpoint)?;
        let thread = std::thread::Builder::new()
            .name("stream-proxy".into())
            .spawn(move || {
                // zmq_proxy returns on EINTR: signals (a supervisor's
                // SIGCHLD, SIGTERM) go to the other threads instead.
                block_signals();
                let (mut f, mut b, mut c) = (frontend, backend, control_server);
                if let Err(e) = zmq::proxy_steerable(&mut f, &mut b, &mut c) {
                    warn!(error = %e, "stream proxy stopped");
                }
                debug!("stream proxy stopped");
            })
            .expect("spawn stream proxy thread");
        Ok(Self {
            control,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.control.send("TERMINATE", 0);
            let _ = t.join();
        }
    }
}

/// Blocks every signal in the calling thread.
fn block_signals() {
    // SAFETY: sigfillset and pthread_sigmask on a set we own.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

impl Drop for StreamProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}
