//! What a tap reports: a status file per host under `state_dir/run/status/`
//! (read by the supervisor for `rill status`, and still there after a crash)
//! and the same JSON on the `status/<host>` topic for stream clients.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use rill_config::{Config, Log};
use rill_proto::{FileId, LogStatus, TapStatus, Topic};

pub use rill_sessions::SessionsReport;

/// The status file of `host`.
pub fn status_file(cfg: &Config, host: &str) -> PathBuf {
    cfg.run_dir().join("status").join(format!("{host}.json"))
}

/// The last status a tap of `host` wrote, if any. The tap rewrites the
/// file in place, so a read can catch it half-written: that read does not
/// parse and is tried again.
pub fn read_status(cfg: &Config, host: &str) -> Option<TapStatus> {
    let file = status_file(cfg, host);
    for _ in 0..5 {
        let text = std::fs::read(&file).ok()?;
        if let Ok(s) = serde_json::from_slice(&text) {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// How often an unchanged status is written again (it doubles as a liveness beat).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// A change of state is written at most this long after it happened.
pub const PROMPTLY: Duration = Duration::from_millis(200);

/// The tap's current status, written out once a second (at once when the
/// connection changes).
pub struct StatusBoard {
    /// The tap's status; `logs` holds a row per followed log (by its
    /// number, retired members' rows included: see [`StatusBoard::hide`]).
    pub status: TapStatus,
    /// Rows of retired members, left out of what is written.
    hidden: Vec<bool>,
    /// A row per pattern log: its pattern, how many files match, notes.
    patterns: Vec<LogStatus>,
    file: PathBuf,
    last_write: Option<Instant>,
    /// The status file, open for rewriting.
    out: Option<std::fs::File>,
    written_state: State,
    /// The session server's counts, when the host has one.
    sessions: Option<SessionsReport>,
}

/// The part of a status that changes rarely and matters at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct State {
    connected: bool,
    error: Option<String>,
    logs: Vec<(Option<FileId>, Option<String>)>,
}

impl State {
    fn of(s: &TapStatus) -> State {
        State {
            connected: s.connected,
            error: s.error.clone(),
            logs: s
                .logs
                .iter()
                .map(|l| (l.file_id, l.error.clone()))
                .collect(),
        }
    }

    /// Whether `s` is still in this state. Asked on every turn of the
    /// tap's loop, so it compares in place rather than building a State.
    fn matches(&self, s: &TapStatus) -> bool {
        self.connected == s.connected
            && self.error == s.error
            && self.logs.len() == s.logs.len()
            && self
                .logs
                .iter()
                .zip(&s.logs)
                .all(|((id, err), l)| *id == l.file_id && *err == l.error)
    }
}

impl StatusBoard {
    /// A board with a row for each of `logs` (more are added as pattern
    /// logs find files: [`StatusBoard::add_log`]).
    pub fn new(cfg: &Config, host: &str, logs: &[Log]) -> Self {
        let mut b = StatusBoard::empty(cfg, host);
        for l in logs {
            b.add_log(l);
        }
        b
    }

    fn empty(cfg: &Config, host: &str) -> Self {
        StatusBoard {
            hidden: Vec::new(),
            patterns: Vec::new(),
            status: TapStatus {
                host: host.to_owned(),
                connected: false,
                error: None,
                logs: Vec::new(),
                at: Utc::now(),
                sessions: None,
                unconfirmed_lines: 0,
            },
            file: status_file(cfg, host),
            last_write: None,
            out: None,
            written_state: State::default(),
            sessions: None,
        }
    }

    /// Reports the session server's counts from now on.
    pub fn watch_sessions(&mut self, report: SessionsReport) {
        self.sessions = Some(report);
    }

    pub fn set_connected(&mut self, connected: bool, error: Option<String>) {
        self.status.connected = connected;
        self.status.error = error;
    }

    /// Lines held for the index, not confirmed yet.
    pub fn set_unconfirmed(&mut self, lines: usize) {
        self.status.unconfirmed_lines = lines as u64;
    }

    /// Adds the row of the next log (number = rows so far); returns it.
    pub fn add_log(&mut self, l: &Log) -> usize {
        self.status.logs.push(LogStatus {
            log: l.name.clone(),
            path: l.path.clone(),
            ..Default::default()
        });
        self.hidden.push(false);
        self.status.logs.len() - 1
    }

    /// Leaves the row of log `i` out from now on (a retired member).
    pub fn hide(&mut self, i: usize) {
        if let Some(h) = self.hidden.get_mut(i) {
            *h = true;
        }
    }

    /// Adds a pattern log's row; returns its number among patterns.
    pub fn add_pattern(&mut self, l: &Log) -> usize {
        self.patterns.push(LogStatus {
            log: l.name.clone(),
            path: l.path.clone(),
            files: Some(0),
            ..Default::default()
        });
        self.patterns.len() - 1
    }

    /// Adds the row of a log that is not followed as files (a journal);
    /// returns its number among the rows [`StatusBoard::pattern`] gives.
    pub fn add_other(&mut self, l: &Log) -> usize {
        self.patterns.push(LogStatus {
            log: l.name.clone(),
            path: l.path.clone(),
            ..Default::default()
        });
        self.patterns.len() - 1
    }

    /// The row of pattern (or other log) number `k`.
    pub fn pattern(&mut self, k: usize) -> &mut LogStatus {
        &mut self.patterns[k]
    }

    /// The status of log number `i`.
    pub fn log(&mut self, i: usize) -> &mut LogStatus {
        &mut self.status.logs[i]
    }

    /// When [`StatusBoard::flush`] will next write without being forced.
    pub fn next_due(&self) -> Instant {
        let Some(t) = self.last_write else {
            return Instant::now();
        };
        if self.written_state.matches(&self.status) {
            t + REPORT_EVERY
        } else {
            t + PROMPTLY
        }
    }

    /// Writes the file and publishes: when `force`d (the connection came
    /// or went), within [`PROMPTLY`] of a change of state (connection, an
    /// error set or cleared, a new file followed), else once per
    /// [`REPORT_EVERY`]. Counters, offsets and lags change with every line;
    /// writing for each of those changes meant a file written several times
    /// a second per host, which on a collector of hundreds of hosts cost
    /// more CPU than the lines themselves.
    pub fn flush(&mut self, live: &zmq::Socket, force: bool) {
        let due = self.last_write.is_none() || Instant::now() >= self.next_due();
        if !(force || due) {
            return;
        }
        self.written_state = State::of(&self.status);
        if let Some(r) = &self.sessions {
            self.status.sessions = r.lock().map(|s| s.clone()).unwrap_or_default();
        }
        self.status.at = Utc::now();
        let json = if self.patterns.is_empty() && !self.hidden.contains(&true) {
            // Files' rows only, in log order: as they are.
            serde_json::to_vec(&self.status)
        } else {
            // Each pattern's row first, then its files' rows.
            let mut shown = TapStatus {
                logs: self.patterns.clone(),
                ..self.status.clone()
            };
            shown.logs.extend(
                self.status
                    .logs
                    .iter()
                    .zip(&self.hidden)
                    .filter(|(_, hidden)| !**hidden)
                    .map(|(l, _)| l.clone()),
            );
            shown
                .logs
                .sort_by(|a, b| (&a.log, a.files.is_none()).cmp(&(&b.log, b.files.is_none())));
            serde_json::to_vec(&shown)
        };
        let Ok(json) = json else {
            return;
        };
        self.write(&json);
        let topic = Topic::Status {
            host: &self.status.host,
        }
        .to_string();
        let _ = live.send_multipart([topic.as_bytes(), &json], zmq::DONTWAIT);
        self.last_write = Some(Instant::now());
    }

    /// Rewrites the file in place. A new file per write (temp + rename)
    /// would be atomic, but allocating and freeing an inode every second
    /// per host was the biggest CPU cost of an idle tap (ext4 inode
    /// search); readers retry a torn read instead.
    fn write(&mut self, json: &[u8]) {
        use std::os::unix::fs::FileExt;
        if self.out.is_none() {
            if let Some(dir) = self.file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            self.out = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&self.file)
                .ok();
        }
        let Some(f) = &self.out else { return };
        if f.write_all_at(json, 0).is_err() || f.set_len(json.len() as u64).is_err() {
            self.out = None;
        }
    }
}
