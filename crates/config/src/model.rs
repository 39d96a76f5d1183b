//! The validated config the rest of Rill uses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::glob::{NameGlob, PathGlob};
use crate::sessions::SessionSettings;

/// The default endpoint clients subscribe to.
pub const DEFAULT_STREAMS_ENDPOINT: &str = "tcp://127.0.0.1:7600";

/// A validated Rill config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was loaded from (absolute).
    pub file: PathBuf,
    /// Where checkpoints, the index, known hosts and sockets live (absolute).
    pub state_dir: PathBuf,
    /// The one endpoint stream clients subscribe to.
    pub streams_endpoint: String,
    /// Where other collectors take this one's streams (`streams.federation`;
    /// off when None): each is sent what it asks for except what came from it.
    pub federation_endpoint: Option<String>,
    /// Who may subscribe to either (`streams.allow`, `credentials_file`,
    /// `curve`).
    pub streams_guard: crate::hub::StreamsGuard,
    /// This collector's id (`collector`, default the host name): the
    /// `collector` of every line read here.
    pub collector: String,
    /// Events received over HTTP (`ingest:`), when configured.
    pub ingest: Option<crate::hub::IngestSettings>,
    /// Collectors whose streams this one takes (`upstreams:`), by name.
    pub upstreams: BTreeMap<String, crate::hub::Upstream>,
    /// The cluster this collector is a member of (`cluster:`), if any.
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// How taps follow files.
    pub tap: TapSettings,
    /// Retention of the index.
    pub index: IndexSettings,
    /// The HTTP search API.
    pub search: SearchSettings,
    pub hosts: BTreeMap<String, Host>,
    pub logs: BTreeMap<String, Log>,
    /// Saved queries by name (`queries:`), in `rill search` syntax: their
    /// syntax is checked by `rill check-config`, which has the query parser.
    pub queries: BTreeMap<String, String>,
    /// Rules by name (`rules:`); a saved query they name is resolved.
    pub rules: BTreeMap<String, crate::rules::Rule>,
}

/// How taps follow files (the `tap:` block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapSettings {
    /// How often each remote follow script checks its file for rotation and
    /// truncation (default 1 s). Fractions need a `sleep` that takes them
    /// (GNU, BusyBox).
    pub poll_interval: std::time::Duration,
    /// How often GNU `tail` on the server looks for new lines of a file it
    /// follows (default 20 ms): the longest a line waits there, and one
    /// `read` per file per turn on the server.
    pub stream_poll: std::time::Duration,
    /// Longer lines are split into pieces marked partial (default 1 MiB).
    pub max_line_bytes: usize,
    /// A last line still without its newline after this long is published,
    /// marked partial (default 5 s); the rest follows as its own line.
    pub partial_line_after: std::time::Duration,
    /// Lines a tap holds that the parser has not confirmed yet (default
    /// 200,000): when full (or `max_unacked_bytes` is), the live stream
    /// goes on and the lines the index could not take wait in the files on
    /// the server.
    pub max_unacked_lines: usize,
    /// Bytes (lines and their metadata) a tap holds unconfirmed (default
    /// 16 MiB).
    pub max_unacked_bytes: usize,
    /// Hosts followed by one `ssh_tap` process, each on a thread of its own
    /// that is restarted by itself (default [`HostsPerProcess::Auto`]).
    /// More save memory on large fleets; a crash of the process restarts
    /// all of them.
    pub hosts_per_process: HostsPerProcess,
}

/// How many hosts one `ssh_tap` process follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostsPerProcess {
    /// One process per host up to [`AUTO_PROCESSES`] hosts; beyond, the
    /// hosts are spread over that many processes.
    Auto,
    Fixed(usize),
}

/// The most `ssh_tap` processes [`HostsPerProcess::Auto`] starts.
pub const AUTO_PROCESSES: usize = 16;

impl HostsPerProcess {
    /// Hosts per process for a fleet of `hosts`.
    pub fn for_fleet(self, hosts: usize) -> usize {
        match self {
            HostsPerProcess::Auto => hosts.div_ceil(AUTO_PROCESSES).max(1),
            HostsPerProcess::Fixed(n) => n.max(1),
        }
    }
}

impl Default for TapSettings {
    fn default() -> Self {
        TapSettings {
            poll_interval: std::time::Duration::from_secs(1),
            stream_poll: std::time::Duration::from_millis(20),
            max_line_bytes: 1 << 20,
            partial_line_after: std::time::Duration::from_secs(5),
            max_unacked_lines: 200_000,
            max_unacked_bytes: 16 << 20,
            hosts_per_process: HostsPerProcess::Auto,
        }
    }
}

/// A server to follow logs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
    pub known_hosts: KnownHostsPolicy,
    /// The session-control protocol's socket; `None` (no `sessions` block)
    /// means off.
    pub sessions: Option<SessionSettings>,
    /// The password `sudo -S` is fed for logs with `sudo: true`; without
    /// it sudo must not ask (`sudo -n`).
    pub sudo_password: Option<Secret>,
    /// Another host of `hosts:` whose connection this one is reached
    /// through (`direct-tcpip`); `address` and `port` are as it sees them.
    pub jump: Option<String>,
}

/// How to authenticate to a host. Secrets are named, not held: they are read
/// from the environment or a file only when connecting.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// A private key file, optionally encrypted with a passphrase.
    Key {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
    /// A password (tried as `password`, then `keyboard-interactive`).
    Password(Secret),
    /// Every identity offered by the ssh-agent at `$SSH_AUTH_SOCK`.
    Agent,
}

/// Where a secret comes from. Its `Debug` never shows the value.
#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("could not read secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Secret {
    /// Reads the secret now. A trailing newline in a secret file is not part of it.
    pub fn read(&self) -> Result<String, SecretError> {
        match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvMissing(name.clone()))
            }
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// What to do with a server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHostsPolicy {
    /// The key must already be in `state_dir/known_hosts` or `~/.ssh/known_hosts`.
    #[default]
    Strict,
    /// An unknown key is recorded in `state_dir/known_hosts` on first sight; a
    /// changed key is still refused.
    AcceptNew,
}

impl fmt::Display for KnownHostsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KnownHostsPolicy::Strict => "strict",
            KnownHostsPolicy::AcceptNew => "accept-new",
        })
    }
}

/// How lines of a log are turned into events (`parser:`). Every parser keeps
/// the whole event text as the body; it adds a timestamp and fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ParserSpec {
    /// The line is the body; its timestamp is the time it was read.
    #[default]
    Raw,
    /// RFC 3164 (`<34>Oct 11 22:14:15 host app[42]: msg`, no year, no zone:
    /// read in `timezone`) and RFC 5424 (`<165>1 2003-10-11T22:14:15.003Z ...`).
    Syslog { timezone: chrono_tz::Tz },
    /// One JSON object per line. The timestamp comes from `timestamp_key`
    /// (default: the first of `@timestamp`, `timestamp`, `time`, `ts`);
    /// zone-less stamps are read in `timezone`.
    Json {
        timestamp_key: Option<String>,
        timezone: chrono_tz::Tz,
    },
    /// nginx/Apache combined log format.
    Combined,
    /// systemd journal entries (`journalctl -o json`): the parser of every
    /// `journal:` log, and of no other.
    Journal,
    /// Named captures become fields; `timestamp` says which one holds the time.
    Regex {
        /// Validated: compiles and has at least one named capture.
        pattern: String,
        timestamp: Option<RegexTimestamp>,
    },
}

impl ParserSpec {
    /// The name used in the config (`raw`, `syslog`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ParserSpec::Raw => "raw",
            ParserSpec::Syslog { .. } => "syslog",
            ParserSpec::Json { .. } => "json",
            ParserSpec::Combined => "combined",
            ParserSpec::Journal => "journal",
            ParserSpec::Regex { .. } => "regex",
        }
    }
}

/// Where a regex parser finds an event's time.
#[derive(Debug, Clone, PartialEq)]
pub struct RegexTimestamp {
    /// A named capture of the pattern.
    pub capture: String,
    /// A chrono (strftime-like) format, e.g. `%d/%b/%Y:%H:%M:%S %z`.
    pub format: String,
    /// For stamps without an offset. Default UTC.
    pub timezone: chrono_tz::Tz,
}

/// How lines of one log are joined into multiline events (`multiline:`).
#[derive(Debug, Clone, PartialEq)]
pub struct Multiline {
    pub rule: MultilineRule,
    /// A pending event with no new line for this long is complete (default 500ms).
    pub flush_after: std::time::Duration,
    /// An event is complete at this many lines (default 1000).
    pub max_lines: usize,
}

/// Which lines belong to the previous event.
#[derive(Debug, Clone, PartialEq)]
pub enum MultilineRule {
    /// A line matching this regex continues the previous event
    /// (e.g. `^(\s|Caused by)` for Java stack traces).
    Continues(String),
    /// A line matching this regex starts a new event; any other line continues
    /// the previous one (e.g. `^\d{4}-\d{2}-\d{2}`).
    Starts(String),
}

/// The `index:` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSettings {
    /// Events older than this (by their timestamp) are deleted while the
    /// parser runs. `None`: kept forever.
    pub retention: Option<std::time::Duration>,
    /// The parser's niceness (0 to 19, default 10): when the CPU is short,
    /// the live path (taps, stream proxy) goes first and the index (with
    /// the `parsed/` streams it feeds) catches up after, by the durable
    /// path's gaps and receipts.
    pub nice: i32,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            retention: None,
            nice: 10,
        }
    }
}

/// The `search:` block: the HTTP search API served by the parser.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSettings {
    /// Where the API listens; `None` when `listen: off`. Off loopback only
    /// with `tls` and `tokens_file`.
    pub listen: Option<std::net::SocketAddr>,
    /// TLS for the API, the page and `/metrics`.
    pub tls: Option<crate::hub::TlsFiles>,
    /// `TOKEN NAME` lines; when set, every request needs
    /// `Authorization: Bearer TOKEN`.
    pub tokens_file: Option<PathBuf>,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 7680))),
            tls: None,
            tokens_file: None,
        }
    }
}

/// A log file followed on one or more hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub name: String,
    /// The absolute path on the remote host, or a pattern of paths.
    pub path: String,
    /// `Some` when `path` is a pattern (`*`, `?`, `[..]`, `**`): every
    /// matching file is followed, each with its own identity and offsets.
    pub glob: Option<PathGlob>,
    /// File names never followed, though `path` matches them.
    pub exclude: Vec<NameGlob>,
    /// At most this many files of a pattern followed at once per host.
    pub max_files: usize,
    /// Where a file is read from the first time the log sees it.
    pub read_from: ReadFrom,
    /// Rotated generations found next to a file the first time the log
    /// sees it, indexed too (the newest this many, oldest first).
    pub history: usize,
    /// The remote programs run as root through `sudo`.
    pub sudo: bool,
    /// `Some`: the log is the systemd journal (`journalctl`), not a file;
    /// `path` then only names it (`journald`, or `journald:DIRECTORY`).
    pub journal: Option<Journal>,
    /// The hosts it is followed on (`all` expanded).
    pub hosts: Vec<String>,
    pub parser: ParserSpec,
    /// `None`: every line is an event.
    pub multiline: Option<Multiline>,
}

/// Which journal entries a `journal:` log reads (`journalctl` options).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Journal {
    /// `--unit=`: entries of these systemd units.
    pub units: Vec<String>,
    /// `--identifier=`: entries with these syslog identifiers.
    pub identifiers: Vec<String>,
    /// `--priority=`: at most this syslog level (0 emerg .. 7 debug).
    pub priority: Option<u8>,
    /// `FIELD=VALUE` matches.
    pub matches: Vec<String>,
    /// `--directory=`: journal files in this folder of the server instead
    /// of the system journal.
    pub directory: Option<String>,
}

/// Where a file seen for the first time is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// Only lines written from then on (what the file held is not indexed).
    #[default]
    End,
    /// Everything the file holds, once.
    Beginning,
}

/// Files of one pattern followed at once, per host, unless `max_files` says.
pub const DEFAULT_MAX_FILES: usize = 256;

impl Log {
    /// Whether `path` is one of this log's files: its path, or a match of
    /// its pattern whose name no `exclude` names.
    pub fn covers(&self, path: &str) -> bool {
        match &self.glob {
            None => path == self.path,
            Some(g) => {
                g.matches(path) && {
                    let name = path.rsplit('/').next().unwrap_or(path);
                    !self.exclude.iter().any(|x| x.matches(name))
                }
            }
        }
    }
}

impl Config {
    /// The host this machine connects to first on the way to `host`: itself,
    /// or the end of its chain of jump hosts (checked to end at load).
    pub fn first_hop<'a>(&'a self, host: &'a Host) -> &'a Host {
        let mut h = host;
        // A chain is at most as long as the list of hosts.
        for _ in 0..=self.hosts.len() {
            match h.jump.as_deref().and_then(|j| self.hosts.get(j)) {
                Some(next) => h = next,
                None => break,
            }
        }
        h
    }

    /// The hosts each `ssh_tap` process follows: in name order, at most
    /// `tap.hosts_per_process` to a process.
    pub fn tap_groups(&self) -> Vec<Vec<String>> {
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        names
            .chunks(self.tap.hosts_per_process.for_fleet(names.len()))
            .map(<[String]>::to_vec)
            .collect()
    }

    /// The logs followed on `host`, in name order.
    pub fn logs_for<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Log> + 'a {
        self.logs
            .values()
            .filter(move |l| l.hosts.iter().any(|h| h == host))
    }

    /// Sockets and pid files.
    pub fn run_dir(&self) -> PathBuf {
        self.state_dir.join("run")
    }

    pub fn index_dir(&self) -> PathBuf {
        self.state_dir.join("index")
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.state_dir.join("checkpoints")
    }

    /// Host keys Rill recorded (accept-new) or the operator placed (strict).
    pub fn known_hosts_file(&self) -> PathBuf {
        self.state_dir.join("known_hosts")
    }

    /// Where publishers (taps, parser, masspinger) send; the supervisor
    /// forwards everything from here to [`Config::streams_endpoint`].
    pub fn bus_endpoint(&self) -> String {
        ipc(&self.run_dir(), "bus")
    }

    /// Where taps hand lines to the parser for indexing (the durable path).
    pub fn ingest_endpoint(&self) -> String {
        ipc(&self.run_dir(), "ingest")
    }

    /// The streams again, on a unix socket (0600 in the 0700 `run/`) for
    /// this collector's own subscribers (taps, the page's Live tab, a
    /// local `rill tail`): no allowlist applies to it, the login still
    /// does.
    pub fn local_streams_endpoint(&self) -> String {
        ipc(&self.run_dir(), "streams")
    }

    /// The supervisor's control socket, asked by `rill status`.
    pub fn control_endpoint(&self) -> String {
        ipc(&self.run_dir(), "control")
    }
}

fn ipc(dir: &Path, name: &str) -> String {
    format!("ipc://{}/{name}.sock", dir.display())
}
