//! The hosts and logs of a test config, the YAML written for them, and
//! edits to a config already written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::{Rill, Sshd, TestKey, TestUser};

/// How a host in a test config authenticates.
pub enum TestAuth<'a> {
    Key(&'a Path),
    PasswordEnv(&'a str),
    Agent,
}

/// One host entry of a test config.
pub struct TestHost<'a> {
    pub name: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub auth: TestAuth<'a>,
    pub known_hosts: &'a str,
}

impl<'a> TestHost<'a> {
    /// `web01` on `sshd`, logging in as `user` with `key`, host key strict.
    pub fn web01(sshd: &Sshd, user: &'a TestUser, key: &'a TestKey) -> TestHost<'a> {
        TestHost {
            name: "web01",
            port: sshd.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        }
    }
}

/// One log entry: name, absolute path, `all` or a list of hosts.
pub struct TestLog<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub hosts: &'a [&'a str],
}

/// The search API's block every test config starts with: a port of its
/// own, so tests running side by side never answer each other's health
/// probes. A test that sets `search:` itself replaces it.
pub(crate) fn search_block(port: u16) -> String {
    format!("search:\n  listen: 127.0.0.1:{port}\n")
}

/// Writes `dir/rill.yaml` for `hosts` and `logs` (streams on `streams`,
/// the search API on `search_port`, state in `dir/state`) and pre-seeds
/// `known_hosts` lines into `state/known_hosts`; returns the config's path.
pub(crate) fn write_config(
    dir: &Path,
    (streams, search_port): (&str, u16),
    hosts: &[TestHost],
    logs: &[TestLog],
    known_hosts: &[String],
) -> PathBuf {
    let mut y = String::new();
    writeln!(y, "state_dir: ./state\nstreams:\n  endpoint: {streams}").unwrap();
    y.push_str(&search_block(search_port));
    writeln!(y, "hosts:").unwrap();
    for h in hosts {
        writeln!(
            y,
            "  {}:\n    address: 127.0.0.1\n    port: {}\n    user: {}",
            h.name, h.port, h.user
        )
        .unwrap();
        match &h.auth {
            TestAuth::Key(p) => writeln!(y, "    auth:\n      key: {}", p.display()).unwrap(),
            TestAuth::PasswordEnv(v) => writeln!(y, "    auth:\n      password_env: {v}").unwrap(),
            TestAuth::Agent => writeln!(y, "    auth:\n      agent: true").unwrap(),
        }
        writeln!(y, "    known_hosts: {}", h.known_hosts).unwrap();
    }
    writeln!(y, "logs:").unwrap();
    for l in logs {
        writeln!(
            y,
            "  {}:\n    path: '{}'\n    hosts: [{}]",
            l.name,
            l.path.display().to_string().replace('\'', "''"),
            l.hosts.join(", ")
        )
        .unwrap();
    }
    let config = dir.join("rill.yaml");
    std::fs::write(&config, y).unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("known_hosts"),
        known_hosts
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    config
}

impl Rill {
    /// Appends top-level YAML (e.g. a `tap:` block) to the config.
    pub fn append_config(&self, yaml: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        if yaml.lines().any(|l| l == "search:") {
            text = text.replacen(&search_block(self.search_port), "", 1);
        }
        text.push_str(yaml);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Adds YAML keys to log `log`'s entry, e.g. `"parser: combined"` or a
    /// nested block; each line of `yaml` is indented under the log.
    pub fn set_log_options(&self, log: &str, yaml: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let entry = text
            .find(&format!("\n  {log}:\n"))
            .unwrap_or_else(|| panic!("no log {log} in config:\n{text}"));
        let hosts = entry + text[entry..].find("\n    hosts:").unwrap() + 1;
        let end = hosts + text[hosts..].find('\n').unwrap() + 1;
        let extra: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let text = format!("{}{extra}{}", &text[..end], &text[end..]);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Adds YAML keys to host `host`'s entry (after its `known_hosts`),
    /// e.g. `"sudo_password_env: RILL_SUDO_PW"`.
    pub fn set_host_options(&self, host: &str, yaml: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let entry = text
            .find(&format!("\n  {host}:\n"))
            .unwrap_or_else(|| panic!("no host {host} in config:\n{text}"));
        let known = entry + text[entry..].find("\n    known_hosts:").unwrap() + 1;
        let end = known + text[known..].find('\n').unwrap() + 1;
        let extra: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let text = format!("{}{extra}{}", &text[..end], &text[end..]);
        std::fs::write(&self.config, text).unwrap();
    }
}
