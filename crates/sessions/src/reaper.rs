//! Ending everything a session started, not just its shell.
//!
//! sshd hangs up a session's terminal when its channel closes, which ends
//! the shell and every job that honours `SIGHUP`; a job that ignores it
//! (`nohup`, `trap '' HUP`) would live on. Every process a session starts
//! keeps the session id of its shell (sshd makes each channel's command a
//! session leader, so the id is the shell's pid), whatever it does with
//! signals or process groups. So once a session is deleted or has ended,
//! one more channel runs a script that kills every process of that session
//! id: through `/proc` with shell builtins only on Linux (GNU or BusyBox),
//! with `pkill -s` elsewhere. A process that called `setsid` itself has
//! left the session and is beyond this.
//!
//! ```text
//! open channel -> exec the script (link busy until then) -> read to EOF => channel to the Closer
//! ```

use std::io::Read;
use std::time::{Duration, Instant};

use ssh2::Channel;

use rill_ssh::{Link, Opening, EAGAIN};

/// How long one reaping may take before it is given up (and logged).
const REAP_WITHIN: Duration = Duration::from_secs(10);

/// The script that kills every process of the sessions named by its
/// arguments: constant text, run by `sh` whatever the login shell.
const REAP: &str = include_str!("reap.sh");

/// The command that kills every process of the sessions `sids`.
pub fn command(sids: &[u32]) -> String {
    let args: Vec<String> = sids.iter().map(u32::to_string).collect();
    rill_ssh::remote::sh(REAP, &args)
}

/// One run of the script on a link.
pub struct Reaper {
    pub sids: Vec<u32>,
    pub link: usize,
    stage: Stage,
    channel: Option<Channel>,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    Exec,
    Wait,
}

/// What one [`Reaper::advance`] achieved.
pub enum Reaped {
    Pending,
    /// The script ran to its end; its channel is to be closed.
    Done(Channel),
    /// sshd refused another channel on this link: try again later.
    Refused,
    Failed {
        error: String,
        channel: Option<Channel>,
    },
}

impl Reaper {
    /// Starts opening a channel on `link` (marked busy until the script is
    /// started).
    pub fn start(sids: Vec<u32>, link_index: usize, link: &mut Link) -> Reaper {
        link.busy = true;
        Reaper {
            sids,
            link: link_index,
            stage: Stage::Open,
            channel: None,
            started: Instant::now(),
        }
    }

    /// Moves on as far as the connection allows.
    pub fn advance(&mut self, link: &mut Link, buf: &mut [u8]) -> Reaped {
        loop {
            if self.started.elapsed() > REAP_WITHIN {
                if self.stage != Stage::Wait {
                    link.busy = false;
                }
                return self.fail(format!(
                    "not done within {}s (stage {:?})",
                    REAP_WITHIN.as_secs(),
                    self.stage
                ));
            }
            match self.stage {
                Stage::Open => match link.open_channel() {
                    Opening::Opened(ch) => {
                        self.channel = Some(ch);
                        self.stage = Stage::Exec;
                    }
                    Opening::Pending => return Reaped::Pending,
                    Opening::Refused => return Reaped::Refused,
                    Opening::Failed(error) => return self.fail(error),
                },
                Stage::Exec => {
                    let ch = self.channel.as_mut().expect("channel open");
                    match ch.exec(&command(&self.sids)) {
                        Ok(()) => {
                            link.busy = false;
                            self.stage = Stage::Wait;
                        }
                        Err(e) if e.code() == EAGAIN => return Reaped::Pending,
                        Err(e) => {
                            link.busy = false;
                            return self.fail(format!("could not run the script: {e}"));
                        }
                    }
                }
                Stage::Wait => {
                    let ch = self.channel.as_mut().expect("channel open");
                    match ch.read(buf) {
                        Ok(n) if n > 0 => {}
                        Ok(_) if ch.eof() => {
                            return Reaped::Done(self.channel.take().expect("channel open"))
                        }
                        Ok(_) => return Reaped::Pending,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            return Reaped::Pending
                        }
                        Err(e) => return self.fail(format!("reading its output failed: {e}")),
                    }
                }
            }
        }
    }

    fn fail(&mut self, error: String) -> Reaped {
        Reaped::Failed {
            error,
            channel: self.channel.take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The login shells a server account may have.
    fn login_shells() -> Vec<std::path::PathBuf> {
        ["sh", "bash", "tcsh", "fish"]
            .into_iter()
            .map(rill_test_support::which)
            .collect()
    }

    #[test]
    fn shellcheck_finds_nothing_in_the_script() {
        assert_eq!(rill_test_support::shellcheck("reap.sh", REAP), None);
    }

    /// The command, run by each login shell against processes of ours in
    /// two sessions of their own: the named one is emptied, the other
    /// untouched.
    #[test]
    fn the_command_kills_every_process_of_the_named_sessions_only() {
        for shell in login_shells() {
            kills_the_named_session_only(&shell);
        }
    }

    fn kills_the_named_session_only(shell: &std::path::Path) {
        let spawn = || {
            Command::new("setsid")
                .args(["sh", "-c", "trap '' HUP; sleep 300 & sleep 301; wait"])
                .spawn()
                .expect("setsid")
        };
        let (mut victim, mut bystander) = (spawn(), spawn());
        let in_session = |sid: u32| -> usize {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|s| {
                    // "pid (comm) state ppid pgrp session ...", zombies
                    // (killed, not reaped yet by whoever adopted them) not
                    // counted.
                    let f: Vec<&str> = s
                        .rsplit_once(')')
                        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
                    f.first() != Some(&"Z") && f.get(3).and_then(|x| x.parse().ok()) == Some(sid)
                })
                .count()
        };
        let settle = |sid: u32, want: usize| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while in_session(sid) != want && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            in_session(sid)
        };
        let (sid, other) = (victim.id(), bystander.id());
        assert_eq!(settle(sid, 3), 3, "sh and two sleeps in session {sid}");
        assert_eq!(settle(other, 3), 3);
        let out = Command::new(shell)
            .args(["-c", &command(&[sid, 999_999])])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {out:?}", shell.display());
        let _ = victim.wait();
        assert_eq!(
            settle(sid, 0),
            0,
            "{}: session {sid} emptied",
            shell.display()
        );
        assert_eq!(
            in_session(other),
            3,
            "{}: session {other} untouched",
            shell.display()
        );
        let _ = Command::new("sh").args(["-c", &command(&[other])]).status();
        let _ = bystander.wait();
        assert_eq!(settle(other, 0), 0);
    }
}
