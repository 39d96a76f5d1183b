//! One attempt of one action, blocking, on a worker thread: a command run
//! with limits ([`run_command`]) or a webhook POST ([`post_webhook`]).
//! Retrying, and the [`backoff`] between attempts, is the caller's.
//!
//! An attempt never returns an error: whatever happens (the user does not
//! exist, the command times out, the server answers 500) becomes an
//! [`Outcome`], so every attempt can be recorded and shown to the operator.
//!
//! A command runs without a shell, with a cleared environment, in a fresh
//! temporary directory that is also its `HOME` and `TMPDIR`, as `nobody` when
//! the collector is root, in its own process group. That group is killed
//! whole when the command ends, times out or the collector stops, so nothing
//! the command started outlives the attempt. Feeding stdin, reading the
//! output and watching the child all happen in the calling thread with
//! `poll(2)`: no helper thread can be left blocked on a pipe that an escaped
//! grandchild keeps open.

use std::ffi::{CString, OsStr};
use std::fs::{DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rill_config::rules::{CommandAction, WebhookAction};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How much output an [`Outcome`] keeps: the last this many bytes.
pub const OUTPUT_BYTES: usize = 4096;

/// How much of a webhook's response body is read (its tail is kept).
const RESPONSE_BYTES: u64 = 64 * 1024;

/// The whole `PATH` a command gets: the system's, nothing of ours.
const COMMAND_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How often a running command is checked for exit, timeout and cancel
/// when it writes nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long output is still read after the command's group was killed: a
/// process that left the group (`setsid`) may hold the pipe open forever.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The user a root collector runs commands as when `run_as` is not set.
const UNPRIVILEGED_USER: &str = "nobody";

const STOPPED: &str = "stopped: the collector is shutting down";

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// A command's exit code (`None` if killed by a signal or not started).
    pub exit_code: Option<i32>,
    /// The signal that ended a command.
    pub signal: Option<i32>,
    /// A webhook's answer.
    pub http_status: Option<u16>,
    /// The last [`OUTPUT_BYTES`] of a command's stdout and stderr, in the
    /// order written, or of a webhook's response body; or why the attempt
    /// failed. Lossy UTF-8, cut on a character boundary.
    pub output: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Exit code 0, or a 2xx answer.
    Success,
    /// Anything else, including not starting at all.
    Failure,
    /// The action's `timeout` passed first.
    Timeout,
}

/// The firing an action is run for.
#[derive(Debug, Clone, Copy)]
pub struct Firing<'a> {
    pub rule: &'a str,
    pub id: &'a str,
    /// The firing as JSON: a command's stdin, a webhook's request body.
    pub body: &'a [u8],
}

/// Why an attempt could not even be made. Its text is the [`Outcome`]'s
/// output, so it is written for the operator.
#[derive(Debug, thiserror::Error)]
enum ActionError {
    #[error("no user {0}")]
    NoUser(String),
    #[error("could not look up user {0}: {1}")]
    UserLookup(String, io::Error),
    #[error("cannot run as {0}: the collector is not root")]
    NotRoot(String),
    #[error("could not start: the command must be an absolute path")]
    NotAbsolute,
    #[error("could not start: could not create a temporary directory: {0}")]
    Workdir(io::Error),
    #[error("could not start: {0}")]
    Spawn(io::Error),
    #[error("environment variable {0} is not set")]
    SecretUnset(String),
    #[error("could not sign the body")]
    Sign,
}

impl Outcome {
    /// An attempt that ended before anything ran or was sent.
    fn not_made(started_at: DateTime<Utc>, err: &ActionError) -> Outcome {
        Outcome {
            status: Status::Failure,
            exit_code: None,
            signal: None,
            http_status: None,
            output: tail_text(err.to_string().as_bytes()),
            started_at,
            finished_at: Utc::now(),
        }
    }
}

/// Backoff before retry number `attempt` (1-based): 1 s, 2 s, 4 s, ...
/// capped at 60 s; saturating, never panics.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

// ---------------------------------------------------------------- commands

/// Runs `a` once for `f` and waits for it, at most `a.timeout`. Setting
/// `cancel` (the collector is stopping) kills it early.
///
/// Must be called from the thread that waits for the command, as it does:
/// the command gets `PR_SET_PDEATHSIG`, which fires when the *thread* that
/// started it ends.
pub fn run_command(a: &CommandAction, f: &Firing, cancel: &AtomicBool) -> Outcome {
    let started_at = Utc::now();
    let outcome = match start(a, f) {
        Ok(mut running) => running.supervise(a, cancel, f.body, started_at),
        Err(err) => Outcome::not_made(started_at, &err),
    };
    tracing::debug!(
        rule = f.rule,
        firing = f.id,
        status = ?outcome.status,
        exit_code = outcome.exit_code,
        signal = outcome.signal,
        "command attempt finished"
    );
    outcome
}

/// A started command and what must go when it ends.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    /// stdout and stderr share this one pipe, so the output interleaves
    /// exactly as the command wrote it.
    output: Option<File>,
    /// Removed on drop, after the child was reaped.
    _workdir: Workdir,
}

/// How the watch over a running command ended.
enum End {
    Exited,
    TimedOut,
    Cancelled,
}

fn start(a: &CommandAction, f: &Firing) -> Result<Running, ActionError> {
    let program = a.argv.first().map(Path::new);
    let Some(program) = program.filter(|p| p.is_absolute()) else {
        return Err(ActionError::NotAbsolute);
    };
    let identity = identity_for(a.run_as.as_deref())?;
    let workdir = Workdir::create(identity).map_err(ActionError::Workdir)?;
    let (output, output_writer) = output_pipe().map_err(ActionError::Spawn)?;

    let mut command = Command::new(program);
    command
        .args(&a.argv[1..])
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .env("HOME", &workdir.path)
        .env("TMPDIR", &workdir.path)
        .env("LANG", "C.UTF-8")
        .env("RILL_RULE", f.rule)
        .env("RILL_FIRING_ID", f.id)
        .current_dir(&workdir.path)
        .stdin(Stdio::piped())
        .stderr(Stdio::from(
            output_writer.try_clone().map_err(ActionError::Spawn)?,
        ))
        .stdout(Stdio::from(output_writer))
        .process_group(0);
    let limits = ChildSetup {
        identity,
        memory: a.memory,
        parent: std::process::id() as libc::pid_t,
    };
    // SAFETY: `apply` only makes async-signal-safe system calls and does not
    // allocate, as required between fork and exec.
    unsafe { command.pre_exec(move || limits.apply()) };
    let mut child = command.spawn().map_err(ActionError::Spawn)?;
    // `command` holds our copies of the output pipe's write end: drop it now
    // or the pipe never reaches end of file.
    drop(command);

    let stdin = child.stdin.take();
    let set_up = stdin
        .as_ref()
        .map_or(Ok(()), |s| set_nonblocking(s.as_raw_fd()))
        .and_then(|()| set_nonblocking(output.as_raw_fd()));
    let running = Running {
        child,
        stdin,
        output: Some(output),
        _workdir: workdir,
    };
    if let Err(err) = set_up {
        let mut running = running;
        running.kill_and_reap();
        return Err(ActionError::Spawn(err));
    }
    Ok(running)
}

impl Running {
    /// Feeds stdin and collects output until the command exits, times out or
    /// is cancelled; then kills its group, reaps it and says what happened.
    fn supervise(
        &mut self,
        a: &CommandAction,
        cancel: &AtomicBool,
        body: &[u8],
        started_at: DateTime<Utc>,
    ) -> Outcome {
        let deadline = Instant::now() + a.timeout;
        let mut pending = body;
        let mut tail = Tail::default();
        let end = loop {
            if self.has_exited() {
                break End::Exited;
            }
            if cancel.load(Ordering::Relaxed) {
                break End::Cancelled;
            }
            let now = Instant::now();
            if now >= deadline {
                break End::TimedOut;
            }
            self.pump(&mut pending, &mut tail, (deadline - now).min(POLL_INTERVAL));
        };
        let status = self.kill_and_reap();
        let grace_end = Instant::now() + DRAIN_GRACE;
        while self.output.is_some() {
            let Some(left) = grace_end.checked_duration_since(Instant::now()) else {
                break;
            };
            self.pump(&mut pending, &mut tail, left.min(POLL_INTERVAL));
        }
        self.outcome(end, status, &tail, started_at)
    }

    fn outcome(
        &self,
        end: End,
        status: Option<ExitStatus>,
        tail: &Tail,
        started_at: DateTime<Utc>,
    ) -> Outcome {
        let exit_code = status.and_then(|s| s.code());
        let signal = status.and_then(|s| s.signal());
        let (status, output) = match end {
            End::Exited if exit_code == Some(0) => (Status::Success, tail.text()),
            End::Exited => (Status::Failure, tail.text()),
            End::TimedOut => (Status::Timeout, tail.text()),
            End::Cancelled => (Status::Failure, STOPPED.to_owned()),
        };
        Outcome {
            status,
            exit_code,
            signal,
            http_status: None,
            output,
            started_at,
            finished_at: Utc::now(),
        }
    }

    /// Whether the child has exited, without reaping it: while it is a
    /// zombie its pid, which is also its group's id, cannot be reused, so
    /// killing the group afterwards cannot hit a stranger.
    fn has_exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is valid; waitid only writes to it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: plain system call on our own child.
        let rc = unsafe { libc::waitid(libc::P_PID, self.child.id(), &mut info, flags) };
        // An error (ECHILD: reaped behind our back) lets `wait` report it.
        // SAFETY: si_pid is set by waitid (0 when nothing has exited).
        rc != 0 || unsafe { info.si_pid() } != 0
    }

    /// Kills the command's whole process group, then reaps the command.
    fn kill_and_reap(&mut self) -> Option<ExitStatus> {
        kill_group(self.child.id());
        self.stdin = None;
        match self.child.wait() {
            Ok(status) => Some(status),
            Err(err) => {
                tracing::warn!(error = %err, "could not reap a command");
                None
            }
        }
    }

    /// Waits up to `wait` for the pipes, then writes what stdin takes and
    /// reads what output there is. Closes stdin once the body is written or
    /// the command stopped reading it.
    fn pump(&mut self, pending: &mut &[u8], tail: &mut Tail, wait: Duration) {
        let mut fds = [pollfd(-1, 0), pollfd(-1, 0)];
        if let Some(stdin) = &self.stdin {
            fds[0] = pollfd(stdin.as_raw_fd(), libc::POLLOUT);
        }
        if let Some(output) = &self.output {
            fds[1] = pollfd(output.as_raw_fd(), libc::POLLIN);
        }
        if fds.iter().all(|p| p.fd < 0) {
            std::thread::sleep(wait);
            return;
        }
        let millis = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: `fds` is a valid array of two pollfd; poll skips fd -1.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if let Some(stdin) = &mut self.stdin {
            if !feed(stdin, pending) {
                self.stdin = None;
            }
        }
        if let Some(output) = &mut self.output {
            if !collect(output, tail) {
                self.output = None;
            }
        }
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Writes what the pipe takes of `pending`; false once stdin should close
/// (all written, or the command does not read it: EPIPE is not an error).
fn feed(stdin: &mut ChildStdin, pending: &mut &[u8]) -> bool {
    if pending.is_empty() {
        return false;
    }
    match stdin.write(pending) {
        Ok(n) => {
            *pending = &pending[n..];
            !pending.is_empty()
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            true
        }
        Err(_) => false,
    }
}

/// Reads what output is ready into `tail`; false at end of file. Bounded per
/// call, so a command writing without pause cannot keep us from checking
/// the clock.
fn collect(output: &mut File, tail: &mut Tail) -> bool {
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..32 {
        match output.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// SIGKILLs the process group `pgid`; a group already gone is fine.
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: plain system call; a negative pid names the group.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, error = %err, "could not kill a command's process group");
        }
    }
}

/// A pipe for the command's stdout and stderr: (our read end, its write end).
fn output_pipe() -> io::Result<(File, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe {
        use std::os::fd::FromRawFd;
        Ok((File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The last [`OUTPUT_BYTES`] a command wrote; never holds more than twice
/// that, whatever the command writes.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        if data.len() >= OUTPUT_BYTES {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&data[data.len() - OUTPUT_BYTES..]);
            return;
        }
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > OUTPUT_BYTES {
            let excess = self.bytes.len() - OUTPUT_BYTES;
            self.bytes.drain(..excess);
        }
    }

    fn text(&self) -> String {
        tail_text(&self.bytes)
    }
}

/// The last [`OUTPUT_BYTES`] of `bytes` as text: a character cut in two at
/// the start is dropped, invalid UTF-8 replaced, and the result is never
/// longer than [`OUTPUT_BYTES`].
fn tail_text(bytes: &[u8]) -> String {
    let bytes = &bytes[bytes.len().saturating_sub(OUTPUT_BYTES)..];
    let cut = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    let text = String::from_utf8_lossy(&bytes[cut..]);
    if text.len() <= OUTPUT_BYTES {
        return text.into_owned();
    }
    let mut start = text.len() - OUTPUT_BYTES;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// Who a command runs as, when that is not simply ourselves.
#[derive(Debug, Clone, Copy)]
struct Identity {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

/// Resolves `run_as` (before the fork: getpwnam_r is not safe after it).
/// `None`: no switch. A root collector never runs a command as root unless
/// told to.
fn identity_for(run_as: Option<&str>) -> Result<Option<Identity>, ActionError> {
    // SAFETY: plain system call.
    let euid = unsafe { libc::geteuid() };
    let name = match run_as {
        Some(name) => name,
        None if euid == 0 => UNPRIVILEGED_USER,
        None => return Ok(None),
    };
    let identity = lookup_user(name)
        .map_err(|e| ActionError::UserLookup(name.to_owned(), e))?
        .ok_or_else(|| ActionError::NoUser(name.to_owned()))?;
    match euid {
        0 => Ok(Some(identity)),
        _ if identity.uid == euid => Ok(None),
        _ => Err(ActionError::NotRoot(name.to_owned())),
    }
}

fn lookup_user(name: &str) -> io::Result<Option<Identity>> {
    let Ok(c_name) = CString::new(name) else {
        return Ok(None);
    };
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: a zeroed passwd is valid; getpwnam_r fills it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, `buf` for `size` bytes.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                size,
                &mut found,
            )
        };
        match rc {
            libc::ERANGE if size < 1 << 20 => size *= 4,
            0 if found.is_null() => return Ok(None),
            0 => {
                return Ok(Some(Identity {
                    uid: entry.pw_uid,
                    gid: entry.pw_gid,
                }))
            }
            libc::ENOENT | libc::ESRCH => return Ok(None),
            _ => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// What the child does to itself between fork and exec.
#[derive(Debug, Clone, Copy)]
struct ChildSetup {
    identity: Option<Identity>,
    memory: Option<u64>,
    /// Our pid, to notice that we died before PR_SET_PDEATHSIG was set.
    parent: libc::pid_t,
}

impl ChildSetup {
    /// Runs in the child after fork: system calls only, no allocation. An
    /// error aborts the spawn and is reported by `Command::spawn`.
    fn apply(&self) -> io::Result<()> {
        if let Some(bytes) = self.memory {
            limit_address_space(bytes)?;
        }
        if let Some(id) = self.identity {
            // SAFETY: plain system calls; `&id.gid` is one valid gid_t.
            unsafe {
                check(libc::setgroups(1, &id.gid))?;
                check(libc::setgid(id.gid))?;
                check(libc::setuid(id.uid))?;
            }
        }
        // After setuid, which clears the death signal.
        // SAFETY: plain system calls.
        unsafe {
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ))?;
            if libc::getppid() != self.parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        close_inherited_fds();
        Ok(())
    }
}

fn limit_address_space(bytes: u64) -> io::Result<()> {
    // SAFETY: a zeroed rlimit is valid; plain system calls.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        check(libc::getrlimit(libc::RLIMIT_AS, &mut limit))?;
        let bytes = bytes.min(limit.rlim_max);
        limit.rlim_cur = bytes;
        limit.rlim_max = bytes;
        check(libc::setrlimit(libc::RLIMIT_AS, &limit))
    }
}

/// Makes every descriptor >= 3 close on exec, so the command inherits none
/// of ours. Marked rather than closed: std reports a failed exec through a
/// close-on-exec pipe of its own, which closing would break (a missing
/// program would then look like a command that died).
fn close_inherited_fds() {
    // SAFETY: plain system call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    // Kernels before 5.11: every descriptor up to the soft limit.
    // SAFETY: a zeroed rlimit is valid; plain system calls.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.clamp(1024, 65536) as libc::c_int
        } else {
            1024
        };
        for fd in 3..top {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The attempt's own directory: the command's cwd, `HOME` and `TMPDIR`.
/// Removed, with whatever the command left there, on drop.
struct Workdir {
    path: PathBuf,
}

impl Workdir {
    /// A new mode 0700 directory under the system temporary directory,
    /// owned by `owner` when the command switches users.
    fn create(owner: Option<Identity>) -> io::Result<Workdir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let mut attempts = 0;
        let path = loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = Utc::now().timestamp_subsec_nanos();
            let path = base.join(format!("rill-action-{}-{n}-{nanos}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let workdir = Workdir { path };
        // The umask may not widen it, but be sure.
        std::fs::set_permissions(&workdir.path, std::fs::Permissions::from_mode(0o700))?;
        if let Some(id) = owner {
            std::os::unix::fs::chown(&workdir.path, Some(id.uid), Some(id.gid))?;
        }
        Ok(workdir)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %err, "could not remove a command's directory");
        }
    }
}

// ---------------------------------------------------------------- webhooks

/// POSTs the firing to `a.url` once, waiting at most `a.timeout` in all.
pub fn post_webhook(a: &WebhookAction, f: &Firing) -> Outcome {
    let started_at = Utc::now();
    let outcome = match signature(a, f.body) {
        Ok(signature) => send(a, f, signature.as_deref(), started_at),
        Err(err) => Outcome::not_made(started_at, &err),
    };
    tracing::debug!(
        rule = f.rule,
        firing = f.id,
        status = ?outcome.status,
        http_status = outcome.http_status,
        "webhook attempt finished"
    );
    outcome
}

/// `X-Rill-Signature`'s value, when the action has a secret. A secret
/// that is configured but missing is an error: never send unsigned.
fn signature(a: &WebhookAction, body: &[u8]) -> Result<Option<String>, ActionError> {
    let Some(name) = &a.secret_env else {
        return Ok(None);
    };
    let unset = || ActionError::SecretUnset(name.clone());
    let key = std::env::var_os(name)
        .filter(|k| !k.is_empty())
        .ok_or_else(unset)?;
    sign(OsStr::as_bytes(&key), body).map(Some)
}

/// `sha256=<lowercase hex HMAC-SHA256 of body>`.
fn sign(key: &[u8], body: &[u8]) -> Result<String, ActionError> {
    // HMAC takes keys of any length (long ones are hashed): never an error
    // in practice, but an unsigned request must not go out if it were.
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| ActionError::Sign)?;
    let digest = mac.chain_update(body).finalize().into_bytes();
    Ok(format!("sha256={}", hex::encode(digest)))
}

fn send(
    a: &WebhookAction,
    f: &Firing,
    signature: Option<&str>,
    started_at: DateTime<Utc>,
) -> Outcome {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(a.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut request = agent
        .post(&a.url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("rill/", env!("CARGO_PKG_VERSION")))
        .header("X-Rill-Rule", f.rule)
        .header("X-Rill-Firing-Id", f.id);
    if let Some(signature) = signature {
        request = request.header("X-Rill-Signature", signature);
    }
    let mut outcome = Outcome {
        status: Status::Failure,
        exit_code: None,
        signal: None,
        http_status: None,
        output: String::new(),
        started_at,
        finished_at: started_at,
    };
    match request.send(f.body) {
        Ok(mut response) => {
            let code = response.status().as_u16();
            outcome.http_status = Some(code);
            if response.status().is_success() {
                outcome.status = Status::Success;
            }
            outcome.output = tail_text(&read_answer(response.body_mut()));
        }
        Err(ureq::Error::Timeout(_)) => {
            outcome.status = Status::Timeout;
            outcome.output = format!("no answer within {:?}", a.timeout);
        }
        Err(ureq::Error::Io(err)) => outcome.output = tail_text(err.to_string().as_bytes()),
        Err(err) => outcome.output = tail_text(err.to_string().as_bytes()),
    }
    outcome.finished_at = Utc::now();
    outcome
}

/// Up to [`RESPONSE_BYTES`] of the response body. The status line is the
/// answer: a body cut short (or timed out) keeps what arrived.
fn read_answer(body: &mut ureq::Body) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Err(err) = body
        .as_reader()
        .take(RESPONSE_BYTES)
        .read_to_end(&mut bytes)
    {
        tracing::debug!(error = %err, "could not read a webhook's whole answer");
    }
    bytes
}

#[cfg(test)]
#[path = "action_tests.rs"]
pub(crate) mod tests;
