//! Child processes as Rill runs them.
//!
//! - [`Shutdown`]: a flag raised by SIGTERM or SIGINT that every daemon loop
//!   checks, with a descriptor that becomes readable at the same time, so a
//!   loop can sleep in `poll` until there is work instead of waking to look.
//! - [`ChildExits`]: a descriptor that becomes readable when a child exits
//!   (SIGCHLD), for the same kind of loop.
//! - [`sibling`]: the path of another Rill binary, found next to the running one.
//! - [`Supervised`]: one child kept alive: spawned with `PR_SET_PDEATHSIG` so it
//!   dies with its parent, restarted with exponential [`Backoff`] after it exits,
//!   stopped with SIGTERM then SIGKILL after a grace period.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Lets the process use as many files as its hard limit allows.
pub fn raise_file_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Gives this thread, and every thread it starts from now on, a niceness
/// of at least `nice` (Linux keeps the niceness per thread and hands it
/// down to new threads, so call it before any thread starts to cover the
/// whole process). Raising it needs no privilege; a failure is logged and
/// otherwise ignored.
pub fn lower_priority(nice: i32) {
    // SAFETY: plain syscalls about this thread. (getpriority's -1 may be
    // an error or the niceness -1: either way below `nice`, so it is set.)
    unsafe {
        if libc::getpriority(libc::PRIO_PROCESS as _, 0) >= nice {
            return;
        }
        if libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) != 0 {
            warn!(nice, error = %std::io::Error::last_os_error(), "could not lower the priority");
        }
    }
}

/// Logs to stderr, level from `RUST_LOG` (default `info`). Only binaries call this.
pub fn init_logging() {
    use std::io::IsTerminal;
    // tantivy logs every commit at info; keep its warnings only.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Files and folders this process creates are its user's alone (0600,
/// 0700): the index holds every line of every log, the state dir host keys
/// and offsets. Every binary calls it first.
pub fn private_files() {
    // SAFETY: umask(2) only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Ends a daemon: prints the error once (`name: error: ...`) and exits 2,
/// as `rill` does (a bad config, a socket that cannot be bound, ...).
pub fn finish(name: &str, result: Result<(), String>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            eprintln!("{name}: error: {e}");
            std::process::exit(2)
        }
    }
}

/// Raised once SIGTERM or SIGINT arrived.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<ShutdownInner>);

#[derive(Debug)]
struct ShutdownInner {
    flag: Arc<AtomicBool>,
    /// Readable once shutdown was requested (a byte is written to `wake_tx`
    /// by the signal handler or by [`Shutdown::trigger`]).
    wake_rx: UnixStream,
    wake_tx: UnixStream,
}

impl Shutdown {
    /// Installs SIGTERM and SIGINT handlers that raise the flag.
    pub fn on_signals() -> std::io::Result<Self> {
        let s = Self::new()?;
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&s.0.flag))?;
            signal_hook::low_level::pipe::register(sig, s.0.wake_tx.try_clone()?)?;
        }
        Ok(s)
    }

    /// A flag that only [`Shutdown::trigger`] raises (for tests and in-process use).
    pub fn manual() -> Self {
        Self::new().expect("a socket pair for the shutdown flag")
    }

    fn new() -> std::io::Result<Self> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        Ok(Shutdown(Arc::new(ShutdownInner {
            flag: Arc::new(AtomicBool::new(false)),
            wake_rx,
            wake_tx,
        })))
    }

    pub fn requested(&self) -> bool {
        self.0.flag.load(Ordering::Relaxed)
    }

    pub fn trigger(&self) {
        self.0.flag.store(true, Ordering::Relaxed);
        let _ = (&self.0.wake_tx).write(&[1]);
    }

    /// A descriptor that is readable once shutdown was requested: poll it
    /// beside whatever the loop waits for.
    pub fn wake_fd(&self) -> RawFd {
        self.0.wake_rx.as_raw_fd()
    }

    /// Sleeps up to `d`, waking early when shutdown is requested. Returns
    /// whether shutdown was requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while !self.requested() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            poll_readable(&[self.wake_fd()], left);
        }
        self.requested()
    }
}

/// Waits up to `timeout` (rounded up to whole milliseconds, so a short
/// wait never becomes a busy 0) for one of `fds` to be readable, or a
/// signal.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) {
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as u64;
    readable(fds, Duration::from_millis(ms));
}

/// Waits until `fd` is readable, at most `timeout` (to the microsecond);
/// whether it is.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    readable(&[fd], timeout)
}

/// Waits up to `timeout` for one of `fds` to be readable, or a signal;
/// whether one is.
fn readable(fds: &[RawFd], timeout: Duration) -> bool {
    let mut items: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: ppoll(2) on an array we own, of the length we pass; no
    // signal mask.
    let n = unsafe {
        libc::ppoll(
            items.as_mut_ptr(),
            items.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    n > 0 && items.iter().any(|i| i.revents & libc::POLLIN != 0)
}

/// The longest a daemon loop that sleeps until its next event sleeps at
/// once, should an event be missed.
pub const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// How long a loop may sleep when its next timer is `due` (none: only
/// events wake it): until then, at most [`LOOK_AT_LEAST_EVERY`].
pub fn sleep_until(due: Option<Instant>) -> Duration {
    due.map_or(LOOK_AT_LEAST_EVERY, |t| {
        t.saturating_duration_since(Instant::now())
            .min(LOOK_AT_LEAST_EVERY)
    })
}

/// A descriptor that becomes readable when a child of this process exits.
/// [`ChildExits::take`] it before looking at the children (e.g. with
/// [`Supervised::tick`]); an exit after that makes it readable again.
#[derive(Debug)]
pub struct ChildExits {
    rx: UnixStream,
}

impl ChildExits {
    /// Installs a SIGCHLD handler that writes to the descriptor.
    pub fn watch() -> std::io::Result<Self> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGCHLD, tx)?;
        Ok(ChildExits { rx })
    }

    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Whether a child exited since the last call (drains the descriptor).
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = (&self.rx).read(&mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

/// The path of Rill binary `name`: `$RILL_BIN_DIR/name` if set, else next to
/// the running executable.
pub fn sibling(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("RILL_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Exponential backoff between restarts: 250 ms doubling to `max`, back to
/// the start once a child has run for `healthy_after`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    healthy_after: Duration,
}

impl Backoff {
    pub const START: Duration = Duration::from_millis(250);

    pub fn new(max: Duration) -> Self {
        Backoff {
            next: Self::START,
            max,
            healthy_after: Duration::from_secs(30),
        }
    }

    /// The delay before the next start, given how long the last run lasted.
    pub fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.healthy_after {
            self.next = Self::START;
        }
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// One child process kept alive by its parent.
pub struct Supervised {
    pub name: String,
    command: Box<dyn Fn() -> Command + Send>,
    child: Option<Child>,
    started: Instant,
    restart_at: Option<Instant>,
    backoff: Backoff,
    pub restarts: u32,
    pub last_exit: Option<String>,
    /// Why [`Supervised::restart`] stopped the running child, and when it
    /// is to be killed if it has not exited by then (None once killed).
    restarting: Option<(String, Option<Instant>)>,
}

impl Supervised {
    /// `command` builds the command line afresh for every start.
    pub fn new(
        name: impl Into<String>,
        max_backoff: Duration,
        command: impl Fn() -> Command + Send + 'static,
    ) -> Self {
        Supervised {
            name: name.into(),
            command: Box::new(command),
            child: None,
            started: Instant::now(),
            restart_at: Some(Instant::now()),
            backoff: Backoff::new(max_backoff),
            restarts: 0,
            last_exit: None,
            restarting: None,
        }
    }

    /// When [`Supervised::tick`] has something to do: the next start, or
    /// the kill of a child that [`Supervised::restart`] stopped.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_start()
            .or_else(|| self.restarting.as_ref().and_then(|(_, at)| *at))
    }

    /// How long the running child has been running.
    pub fn running_for(&self) -> Option<Duration> {
        self.child.as_ref().map(|_| self.started.elapsed())
    }

    /// Stops the running child (SIGTERM, then SIGKILL after `grace`) to have
    /// it started again as if it had exited; `why` goes into `last_exit`.
    pub fn restart(&mut self, why: &str, grace: Duration) {
        if let Some(c) = &self.child {
            warn!(child = %self.name, pid = c.id(), reason = why, "restarting child");
            signal(c.id(), libc::SIGTERM);
            self.restarting = Some((why.to_owned(), Some(Instant::now() + grace)));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// When the child is due to be started, while none is running (the
    /// moment may have passed while the caller held the start back).
    pub fn next_start(&self) -> Option<Instant> {
        self.child.is_none().then_some(self.restart_at).flatten()
    }

    /// Starts the child if it is due, reaps it if it exited and schedules its
    /// restart. Call often. `may_start` lets the caller hold a restart back
    /// (e.g. while the host is down).
    pub fn tick(&mut self, may_start: bool) {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let ran = self.started.elapsed();
                    let delay = self.backoff.after_run(ran);
                    let mut how = describe(status);
                    if let Some((why, _)) = self.restarting.take() {
                        how = format!("{how} (restarted: {why})");
                    }
                    warn!(child = %self.name, exit = %how, ran_ms = ran.as_millis() as u64, restart_in_ms = delay.as_millis() as u64, "child exited");
                    self.last_exit = Some(how);
                    self.child = None;
                    self.restart_at = Some(Instant::now() + delay);
                }
                Ok(None) => {
                    if let Some((_, at)) = &mut self.restarting {
                        if at.is_some_and(|t| Instant::now() >= t) {
                            signal(child.id(), libc::SIGKILL);
                            // Its exit wakes the caller; no need to look again.
                            *at = None;
                        }
                    }
                }
                Err(e) => warn!(child = %self.name, error = %e, "could not wait for child"),
            }
        }
        if self.child.is_none() && may_start && self.restart_at.is_some_and(|t| Instant::now() >= t)
        {
            self.start();
        }
    }

    fn start(&mut self) {
        let mut cmd = (self.command)();
        cmd.stdin(Stdio::null());
        die_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(child) => {
                if self.last_exit.is_some() {
                    self.restarts += 1;
                }
                info!(child = %self.name, pid = child.id(), "started");
                self.child = Some(child);
                self.started = Instant::now();
                self.restart_at = None;
            }
            Err(e) => {
                let delay = self.backoff.after_run(Duration::ZERO);
                warn!(child = %self.name, error = %e, "could not start child");
                self.last_exit = Some(format!("could not start: {e}"));
                self.restart_at = Some(Instant::now() + delay);
            }
        }
    }

    /// Makes a pending restart due now and the backoff start over: the reason
    /// the child kept failing went away (its host came back up).
    pub fn restart_soon(&mut self) {
        self.backoff = Backoff::new(self.backoff.max);
        if self.child.is_none() && self.restart_at.is_some() {
            self.restart_at = Some(Instant::now());
        }
    }

    /// Sends SIGTERM (no restart follows).
    pub fn terminate(&mut self) {
        self.restart_at = None;
        if let Some(c) = &self.child {
            signal(c.id(), libc::SIGTERM);
        }
    }

    /// Reaps the child if it exited; true when no child is running.
    pub fn reap(&mut self) -> bool {
        if let Some(c) = &mut self.child {
            if let Ok(Some(status)) = c.try_wait() {
                self.last_exit = Some(describe(status));
                self.child = None;
            }
        }
        self.child.is_none()
    }

    /// SIGKILLs a child that is still running and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            warn!(child = %self.name, pid = c.id(), "child did not stop in time, killing it");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Terminates every child: SIGTERM, wait up to `grace`, then SIGKILL.
pub fn stop_all(children: &mut [&mut Supervised], grace: Duration) {
    for c in children.iter_mut() {
        c.terminate();
    }
    let end = Instant::now() + grace;
    while Instant::now() < end && !children.iter_mut().all(|c| c.reap()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in children.iter_mut() {
        c.kill();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Makes the child receive SIGTERM when the thread that spawned it dies, so a
/// parent killed with SIGKILL leaves no orphans.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() as u32 != parent {
                libc::raise(libc::SIGTERM);
            }
            Ok(())
        });
    }
}

/// "exit status 1" / "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_readable_says_whether_bytes_came_within_the_time() {
        use std::io::Write;
        use std::os::unix::io::AsRawFd;
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!wait_readable(b.as_raw_fd(), Duration::from_micros(300)));
        a.write_all(b"x").unwrap();
        assert!(wait_readable(b.as_raw_fd(), Duration::from_secs(5)));
    }

    #[test]
    fn backoff_doubles_to_max_and_resets_after_a_healthy_run() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let short = Duration::from_millis(10);
        assert_eq!(b.after_run(short), Duration::from_millis(250));
        assert_eq!(b.after_run(short), Duration::from_millis(500));
        assert_eq!(b.after_run(short), Duration::from_secs(1));
        assert_eq!(b.after_run(short), Duration::from_secs(2));
        assert_eq!(b.after_run(short), Duration::from_secs(2));
        assert_eq!(
            b.after_run(Duration::from_secs(60)),
            Duration::from_millis(250)
        );
    }

    /// Whether `fd` becomes readable within `within`.
    fn readable_within(fd: RawFd, within: Duration) -> bool {
        let mut item = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let end = Instant::now() + within;
        while Instant::now() < end {
            // SAFETY: poll(2) on one pollfd we own.
            if unsafe { libc::poll(&mut item, 1, 50) } > 0 {
                return true;
            }
        }
        false
    }

    #[test]
    fn a_triggered_shutdown_wakes_a_sleeper_and_its_descriptor() {
        let s = Shutdown::manual();
        assert!(!readable_within(s.wake_fd(), Duration::from_millis(100)));
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = s.clone();
        std::thread::spawn(move || tx.send(sleeper.sleep(Duration::from_secs(600))));
        s.trigger();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        assert!(readable_within(s.wake_fd(), Duration::from_secs(10)));
    }

    #[test]
    fn a_child_exit_makes_the_descriptor_readable() {
        // (Other tests of this binary spawn children too, so this only
        // checks that an exit is seen, not that nothing else is.)
        let exits = ChildExits::watch().unwrap();
        exits.take();
        let mut child = Command::new("true").spawn().unwrap();
        assert!(readable_within(exits.fd(), Duration::from_secs(10)));
        assert!(exits.take());
        child.wait().unwrap();
    }

    #[test]
    fn a_child_that_exits_is_restarted_and_counted() {
        let mut s = Supervised::new("true", Duration::from_millis(300), || Command::new("true"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.restarts < 2 && Instant::now() < deadline {
            s.tick(true);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(s.restarts >= 2);
        assert_eq!(s.last_exit.as_deref(), Some("exit status 0"));
    }

    #[test]
    fn stop_all_kills_a_child_that_ignores_sigterm() {
        let marker = std::env::temp_dir().join(format!("rill-stubborn-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let m = marker.clone();
        let mut s = Supervised::new("stubborn", Duration::from_secs(1), move || {
            let mut c = Command::new("sh");
            c.args(["-c", "trap '' TERM; : > \"$1\"; sleep 30", "sh"])
                .arg(&m);
            c
        });
        s.tick(true);
        let pid = s.pid().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !marker.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(marker.exists(), "child never installed its trap");
        let _ = std::fs::remove_file(&marker);
        let t = Instant::now();
        stop_all(&mut [&mut s], Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(s.pid().is_none());
        // SAFETY: probing with signal 0.
        assert_ne!(
            unsafe { libc::kill(pid as i32, 0) },
            0,
            "child {pid} still alive"
        );
    }
}
