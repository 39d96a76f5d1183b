//! What a tap reports: a status file per host under `state_dir/run/status/`
//! (read by the supervisor for `rill status`, and still there after a crash)
//! and the same JSON on the `status/<host>` topic for stream clients.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use rill_config::{Config, Log};
use rill_proto::{LogStatus, TapStatus, Topic};

/// The status file of `host`.
pub fn status_file(cfg: &Config, host: &str) -> PathBuf {
    cfg.run_dir().join("status").join(format!("{host}.json"))
}

/// The last status a tap of `host` wrote, if any.
pub fn read_status(cfg: &Config, host: &str) -> Option<TapStatus> {
    let text = std::fs::read(status_file(cfg, host)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// How often an unchanged status is written again (it doubles as a liveness beat).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The tap's current status, written out when changed or once a second.
pub struct StatusBoard {
    pub status: TapStatus,
    file: PathBuf,
    last_write: Option<Instant>,
    changed: bool,
}

impl StatusBoard {
    pub fn new(cfg: &Config, host: &str, logs: &[Log]) -> Self {
        let logs = logs
            .iter()
            .map(|l| LogStatus {
                log: l.name.clone(),
                path: l.path.clone(),
                ..Default::default()
            })
            .collect();
        StatusBoard {
            status: TapStatus {
                host: host.to_owned(),
                connected: false,
                error: None,
                logs,
                at: Utc::now(),
            },
            file: status_file(cfg, host),
            last_write: None,
            changed: true,
        }
    }

    pub fn set_connected(&mut self, connected: bool, error: Option<String>) {
        self.status.connected = connected;
        self.status.error = error;
        self.changed = true;
    }

    /// The status of log number `i`, marked as changed.
    pub fn log(&mut self, i: usize) -> &mut LogStatus {
        self.changed = true;
        &mut self.status.logs[i]
    }

    /// Writes the file atomically and publishes, if changed or due.
    pub fn flush(&mut self, live: &zmq::Socket, force: bool) {
        let due = self.last_write.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        if !(force
            || due
            || (self.changed
                && self
                    .last_write
                    .is_some_and(|t| t.elapsed() >= Duration::from_millis(200))))
        {
            return;
        }
        self.status.at = Utc::now();
        let Ok(json) = serde_json::to_vec(&self.status) else {
            return;
        };
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = self.file.with_extension("json.tmp");
        if std::fs::write(&tmp, &json).is_ok() {
            let _ = std::fs::rename(&tmp, &self.file);
        }
        let topic = Topic::Status {
            host: &self.status.host,
        }
        .to_string();
        let _ = live.send_multipart([topic.as_bytes(), &json], zmq::DONTWAIT);
        self.last_write = Some(Instant::now());
        self.changed = false;
    }
}
