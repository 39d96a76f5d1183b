//! One child kept alive: spawned so that it dies with its parent, restarted
//! with [`Backoff`] after it exits, stopped with SIGTERM then SIGKILL.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::backoff::Backoff;

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
        self.backoff.reset();
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
