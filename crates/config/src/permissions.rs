//! Secrets other users of this machine can read.
//!
//! OpenSSH refuses a private key that others can read; Rill warns (at
//! `check-config` and when the supervisor and taps start), naming the file
//! and the fix, for every key, password file, credentials file, token file
//! and secret key file whose mode gives group or others any access.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::model::{Auth, Config, Secret};

impl Config {
    /// One line per secret file that others can read:
    /// `hosts.web01.auth.key: /etc/rill/id (mode 0644) is readable by other users; chmod 600 it`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |key: String, path: &Path| {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push(format!(
                        "{key}: {} (mode {mode:04o}) is readable by other users; chmod 600 it",
                        path.display()
                    ));
                }
            }
        };
        for h in self.hosts.values() {
            match &h.auth {
                Auth::Key { path, .. } => check(format!("hosts.{}.auth.key", h.name), path),
                Auth::Password(Secret::File(path)) => {
                    check(format!("hosts.{}.auth.password_file", h.name), path)
                }
                _ => {}
            }
            if let Some(path) = h
                .sessions
                .as_ref()
                .and_then(|s| s.credentials_file.as_ref())
            {
                check(format!("hosts.{}.sessions.credentials_file", h.name), path);
            }
        }
        let g = &self.streams_guard;
        if let Some(path) = &g.credentials_file {
            check("streams.credentials_file".into(), path);
        }
        if let Some(c) = &g.curve {
            check("streams.curve.secret_key_file".into(), &c.secret_key_file);
        }
        if let Some(t) = &self.search.tls {
            check("search.tls.key".into(), &t.key);
        }
        if let Some(path) = &self.search.tokens_file {
            check("search.tokens_file".into(), path);
        }
        if let Some(i) = &self.ingest {
            if let Some(t) = &i.tls {
                check("ingest.tls.key".into(), &t.key);
            }
            if let Some(path) = &i.tokens_file {
                check("ingest.tokens_file".into(), path);
            }
        }
        for u in self.upstreams.values() {
            if let Some(c) = &u.curve {
                check(
                    format!("upstreams.{}.curve.secret_key_file", u.name),
                    &c.secret_key_file,
                );
            }
            if let Some(Secret::File(path)) = u.plain.as_ref().map(|p| &p.password) {
                check(format!("upstreams.{}.plain.password_file", u.name), path);
            }
        }
        out
    }
}
