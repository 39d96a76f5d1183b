//! One remote shell: opened on a PTY, brought to a known prompt, read, and
//! finally closed for real.
//!
//! ```text
//! Warming: open channel -> request PTY -> exec `/bin/sh -i -s rill-session <id>`
//!          -> write the setup line -> read until "rill-ready <pid>" and the prompt
//!   => Shell (ready at `rill$ `) -> handed to a client -> Closer (EOF, CLOSE, free)
//! ```
//!
//! The session id is on the remote command line, so the server's process
//! table shows which shell is which session. Everything here is
//! non-blocking: each call does what it can and says whether it is done.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ssh2::Channel;

use rill_ssh::{Link, Opening, EAGAIN};

/// The prompt every session shows when handed over and after each command.
pub const PROMPT: &str = "rill$ ";
/// The terminal type and size requested for every PTY.
pub const TERM: &str = "dumb";
pub const COLUMNS: u32 = 200;
pub const ROWS: u32 = 50;
/// How long a shell may take to reach its prompt.
const WARM_WITHIN: Duration = Duration::from_secs(15);
/// How long a closing channel may wait for the server's CLOSE.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// Sets the prompt and prints the marker (split in the source, so the
/// terminal's echo of this line never looks like the marker) and the pid.
const SETUP: &[u8] = b"PS1='rill$ '; PS2=''; printf 'rill-%s %s\\n' ready $$\n";
const MARKER: &[u8] = b"rill-ready ";

/// The remote command of session `id`: an interactive POSIX shell whose
/// command line names the session.
pub fn command(id: &str) -> String {
    format!("exec /bin/sh -i -s rill-session {id}")
}

/// A shell on its way to the prompt.
pub struct Warming {
    pub id: String,
    pub link: usize,
    stage: Stage,
    channel: Option<Channel>,
    out: Vec<u8>,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    Pty,
    Exec,
    Setup { written: usize },
    Prompt,
}

/// What one [`Warming::advance`] achieved.
pub enum Step {
    /// Not there yet; call again when the connection has news.
    Pending,
    Ready(Shell),
    /// sshd refused another channel on this connection (its MaxSessions).
    Refused,
    /// This shell will not come up; its channel (if any) must be closed.
    Failed {
        error: String,
        channel: Option<Channel>,
    },
}

impl Warming {
    /// Starts opening a channel on `link` (marked busy until the shell is
    /// started).
    pub fn start(id: String, link_index: usize, link: &mut Link) -> Warming {
        link.busy = true;
        Warming {
            id,
            link: link_index,
            stage: Stage::Open,
            channel: None,
            out: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Moves on as far as the connection allows.
    pub fn advance(&mut self, link: &mut Link, buf: &mut [u8]) -> Step {
        loop {
            if self.started.elapsed() > WARM_WITHIN {
                if self.requesting() {
                    link.busy = false;
                }
                return self.fail(format!(
                    "no prompt within {}s (stage {:?}); last output: {:?}",
                    WARM_WITHIN.as_secs(),
                    self.stage,
                    tail(&self.out)
                ));
            }
            match self.stage {
                Stage::Open => match link.open_channel() {
                    Opening::Opened(ch) => {
                        self.channel = Some(ch);
                        self.stage = Stage::Pty;
                    }
                    Opening::Pending => return Step::Pending,
                    Opening::Refused => return Step::Refused,
                    Opening::Failed(error) => return self.fail(error),
                },
                Stage::Pty => {
                    let ch = self.channel.as_mut().expect("channel open");
                    match ch.request_pty(TERM, None, Some((COLUMNS, ROWS, 0, 0))) {
                        Ok(()) => self.stage = Stage::Exec,
                        Err(e) if e.code() == EAGAIN => return Step::Pending,
                        Err(e) => {
                            link.busy = false;
                            return self.fail(format!("the server refused a PTY: {e}"));
                        }
                    }
                }
                Stage::Exec => {
                    let ch = self.channel.as_mut().expect("channel open");
                    match ch.exec(&command(&self.id)) {
                        Ok(()) => {
                            link.busy = false;
                            self.stage = Stage::Setup { written: 0 };
                        }
                        Err(e) if e.code() == EAGAIN => return Step::Pending,
                        Err(e) => {
                            link.busy = false;
                            return self.fail(format!("could not start the shell: {e}"));
                        }
                    }
                }
                Stage::Setup { written } => {
                    let ch = self.channel.as_mut().expect("channel open");
                    match ch.write(&SETUP[written..]) {
                        Ok(n) if written + n == SETUP.len() => self.stage = Stage::Prompt,
                        Ok(n) => {
                            self.stage = Stage::Setup {
                                written: written + n,
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            return Step::Pending
                        }
                        Err(e) => return self.fail(format!("could not write to the shell: {e}")),
                    }
                }
                Stage::Prompt => {
                    let ch = self.channel.as_mut().expect("channel open");
                    match ch.read(buf) {
                        Ok(0) if ch.eof() => {
                            return self.fail(format!(
                                "the shell ended before its prompt; last output: {:?}",
                                tail(&self.out)
                            ))
                        }
                        Ok(0) => return Step::Pending,
                        Ok(n) => {
                            self.out.extend_from_slice(&buf[..n]);
                            if self.out.len() > 64 * 1024 {
                                self.out.drain(..self.out.len() - 16 * 1024);
                            }
                            if let Some(pid) = ready(&self.out) {
                                return Step::Ready(Shell {
                                    id: std::mem::take(&mut self.id),
                                    link: self.link,
                                    channel: self.channel.take().expect("channel open"),
                                    pid,
                                });
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            return Step::Pending
                        }
                        Err(e) => return self.fail(format!("could not read from the shell: {e}")),
                    }
                }
            }
        }
    }

    /// Whether a channel request of ours is in flight on the link.
    fn requesting(&self) -> bool {
        matches!(self.stage, Stage::Open | Stage::Pty | Stage::Exec)
    }

    fn fail(&mut self, error: String) -> Step {
        Step::Failed {
            error,
            channel: self.channel.take(),
        }
    }
}

/// The shell's pid once the output shows the marker line and ends with the
/// prompt.
fn ready(out: &[u8]) -> Option<u32> {
    if !out.ends_with(PROMPT.as_bytes()) {
        return None;
    }
    let at = out.windows(MARKER.len()).rposition(|w| w == MARKER)? + MARKER.len();
    let digits: Vec<u8> = out[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    let rest = &out[at + digits.len()..];
    if !(rest.starts_with(b"\r\n") || rest.starts_with(b"\n")) {
        return None;
    }
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn tail(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(&out[out.len().saturating_sub(200)..]);
    s.into_owned()
}

/// A shell at its prompt.
pub struct Shell {
    pub id: String,
    pub link: usize,
    pub channel: Channel,
    /// Its process id on the server.
    pub pid: u32,
}

/// What reading a shell found.
pub enum Output {
    /// Nothing more for now.
    Idle,
    /// Its output ended (the shell exited, or the channel failed).
    Ended(String),
}

impl Shell {
    /// Reads what is there (bounded per call), handing each chunk to `each`.
    pub fn read(&mut self, buf: &mut [u8], mut each: impl FnMut(&[u8])) -> Output {
        for _ in 0..64 {
            let mut got = 0;
            for stream in [0, 1] {
                match self.channel.stream(stream).read(buf) {
                    Ok(n) if n > 0 => {
                        got += n;
                        each(&buf[..n]);
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Output::Ended(format!("reading failed: {e}")),
                }
            }
            if got == 0 {
                break;
            }
        }
        if self.channel.eof() {
            return Output::Ended("its shell exited".into());
        }
        Output::Idle
    }

    /// Writes as much of `data` as the connection takes within `within`;
    /// returns the bytes written and, if short, why.
    pub fn write(&mut self, data: &[u8], link: &Link, within: Duration) -> (usize, Option<String>) {
        let end = Instant::now() + within;
        let mut done = 0;
        while done < data.len() {
            match self.channel.write(&data[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= end {
                        return (done, Some("the session is not taking input".into()));
                    }
                    wait_io(&link.session, Duration::from_millis(10));
                }
                Err(e) => return (done, Some(format!("write failed: {e}"))),
            }
        }
        (done, None)
    }
}

/// Waits up to `d` for the connection's socket to be readable or writable.
fn wait_io(session: &ssh2::Session, d: Duration) {
    use std::os::unix::io::AsRawFd;
    let mut fd = libc::pollfd {
        fd: session.as_raw_fd(),
        events: libc::POLLIN | libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the session's socket.
    unsafe { libc::poll(&mut fd, 1, d.as_millis() as i32) };
}

/// Channels on their way out: EOF and CLOSE sent, waiting for the server's
/// CLOSE (which comes once the shell is gone), then freed.
#[derive(Default)]
pub struct Closer {
    closing: Vec<(Channel, usize, Instant)>,
}

impl Closer {
    pub fn push(&mut self, channel: Channel, link: usize) {
        self.closing.push((channel, link, Instant::now()));
    }

    pub fn is_empty(&self) -> bool {
        self.closing.is_empty()
    }

    pub fn len(&self) -> usize {
        self.closing.len()
    }

    /// How many of the closing channels are on link `link`.
    pub fn on_link(&self, link: usize) -> usize {
        self.closing.iter().filter(|(_, l, _)| *l == link).count()
    }

    /// Moves every close on; frees the finished ones (giving their link a
    /// slot back).
    pub fn pump(&mut self, links: &mut [Link]) {
        self.closing.retain_mut(|(ch, link, since)| {
            let done = match ch.close() {
                Err(e) if e.code() == EAGAIN => since.elapsed() > CLOSE_WITHIN,
                _ => true,
            };
            if done {
                if let Some(l) = links.get_mut(*link) {
                    l.closed();
                }
            }
            !done
        });
    }

    /// Sends what can be sent now for every channel and forgets them (the
    /// connections are about to be closed, which ends the rest).
    pub fn abandon(&mut self) {
        for (ch, _, _) in &mut self.closing {
            let _ = ch.close();
        }
        self.closing.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_the_marker_line_then_the_prompt() {
        let echo = b"$ PS1='rill$ '; PS2=''; printf 'rill-%s %s\\n' ready $$\r\n";
        assert_eq!(ready(echo), None);
        let mut out = echo.to_vec();
        out.extend_from_slice(b"rill-ready 4242\r\n");
        assert_eq!(ready(&out), None, "no prompt yet");
        out.extend_from_slice(b"rill$ ");
        assert_eq!(ready(&out), Some(4242));
        assert_eq!(ready(b"rill-ready \r\nrill$ "), None);
        assert_eq!(ready(b"rill-ready 12x\r\nrill$ "), None);
    }

    #[test]
    fn the_remote_command_names_the_session() {
        assert_eq!(command("0b6c"), "exec /bin/sh -i -s rill-session 0b6c");
        assert!(!SETUP.windows(MARKER.len()).any(|w| w == MARKER));
    }
}
