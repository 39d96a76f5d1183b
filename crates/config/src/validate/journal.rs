//! `logs.<name>.journal`: which systemd journal entries a log reads.

use crate::error::Invalid;
use crate::model::Journal;
use crate::raw::{RawJournal, RawPriority};

/// Syslog levels by name, as `journalctl --priority` takes them.
const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

pub fn validate(j: RawJournal) -> Result<Journal, Invalid> {
    let words = |key: &str, v: Option<Vec<String>>| -> Result<Vec<String>, Invalid> {
        let v = v.unwrap_or_default();
        for (i, w) in v.iter().enumerate() {
            if w.trim().is_empty() || w.contains(['\0', '\n']) {
                return Err(Invalid::at(
                    format!("{key}[{i}]"),
                    "expected a name, without NUL or newline",
                ));
            }
        }
        Ok(v)
    };
    let units = words(".units", j.units)?;
    let identifiers = words(".identifiers", j.identifiers)?;
    let matches = words(".matches", j.matches)?;
    for (i, m) in matches.iter().enumerate() {
        let field = m.split_once('=').map(|(f, _)| f);
        if !field.is_some_and(|f| {
            !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        }) {
            return Err(Invalid::at(
                format!(".matches[{i}]"),
                format!("expected FIELD=VALUE with FIELD of A-Z, 0-9 and '_' (like _SYSTEMD_UNIT=nginx.service), got {m:?}"),
            ));
        }
    }
    let priority = match j.priority {
        None => None,
        Some(RawPriority::Number(n)) if n <= 7 => Some(n as u8),
        Some(RawPriority::Name(n)) if LEVELS.contains(&n.as_str()) => {
            LEVELS.iter().position(|l| *l == n).map(|p| p as u8)
        }
        Some(other) => {
            let got = match other {
                RawPriority::Number(n) => n.to_string(),
                RawPriority::Name(n) => format!("{n:?}"),
            };
            return Err(Invalid::at(
                ".priority",
                format!("expected 0..7 or one of {}, got {got}", LEVELS.join(", ")),
            ));
        }
    };
    let directory = match j.directory {
        Some(d) if !d.starts_with('/') || d.contains(['\0', '\n']) => {
            return Err(Invalid::at(
                ".directory",
                format!("expected an absolute path on the server, got {d:?}"),
            ))
        }
        d => d,
    };
    Ok(Journal {
        units,
        identifiers,
        priority,
        matches,
        directory,
    })
}
