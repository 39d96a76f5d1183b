//! The `logs:` block: which files to follow on which hosts, and how their
//! lines become events (`parser` and `multiline`, checked by their own
//! modules).

use std::collections::BTreeMap;

use super::{multiline, parser};
use crate::error::Invalid;
use crate::glob::{has_pattern, NameGlob, PathGlob};
use crate::model::{Host, Log, ParserSpec, ReadFrom, DEFAULT_MAX_FILES};
use crate::raw::{HostSelection, RawLog, RawReadFrom};
use crate::values::{check_name, number_between};

/// Every log, keyed by name; each names hosts among `hosts`.
pub fn validate(
    raw: BTreeMap<String, RawLog>,
    hosts: &BTreeMap<String, Host>,
) -> Result<BTreeMap<String, Log>, Invalid> {
    if raw.is_empty() {
        return Err(Invalid::at("", "expected at least one log"));
    }
    let mut logs = BTreeMap::new();
    for (name, l) in raw {
        let log = log(&name, l, hosts).map_err(|e| e.under(&format!(".{name}")))?;
        logs.insert(name, log);
    }
    Ok(logs)
}

/// One log; errors are keyed below `logs.<name>`.
fn log(name: &str, l: RawLog, hosts: &BTreeMap<String, Host>) -> Result<Log, Invalid> {
    check_name("log", name).map_err(|m| Invalid::at("", m))?;
    let journal = match (l.path.is_some(), l.journal) {
        (true, Some(_)) => {
            return Err(Invalid::at(
                ".journal",
                "expected `path` (a file or a pattern) or `journal`, not both",
            ))
        }
        (false, None) => {
            return Err(Invalid::at(
                ".path",
                "missing: expected `path` (a file or a pattern) or `journal`",
            ))
        }
        (_, j) => j
            .map(super::journal::validate)
            .transpose()
            .map_err(|e| e.under(".journal"))?,
    };
    if let Some(j) = &journal {
        for (key, set) in [
            (".parser", l.parser.is_some()),
            (".multiline", l.multiline.is_some()),
            (".history", l.history.is_some()),
            (".exclude", l.exclude.is_some()),
            (".max_files", l.max_files.is_some()),
        ] {
            if set {
                return Err(Invalid::at(
                    key,
                    "not for a journal log (its entries are read as journal entries, one event each)",
                ));
            }
        }
        let selected = selected_hosts(l.hosts, hosts)?;
        check_sudo(l.sudo.unwrap_or(false), &selected, hosts)?;
        return Ok(Log {
            name: name.to_owned(),
            path: j
                .directory
                .as_ref()
                .map_or_else(|| "journald".to_owned(), |d| format!("journald:{d}")),
            glob: None,
            exclude: Vec::new(),
            max_files: DEFAULT_MAX_FILES,
            read_from: read_from(l.read_from),
            history: 0,
            sudo: l.sudo.unwrap_or(false),
            journal,
            hosts: selected,
            parser: ParserSpec::Journal,
            multiline: None,
        });
    }
    let path = l.path.unwrap_or_default();
    if !path.starts_with('/') {
        return Err(Invalid::at(
            ".path",
            format!("expected an absolute path, got {path:?}"),
        ));
    }
    if path.contains('\0') || path.contains('\n') {
        return Err(Invalid::at(
            ".path",
            "expected a path without NUL or newline",
        ));
    }
    let glob = if has_pattern(&path) {
        Some(PathGlob::parse(&path).map_err(|m| Invalid::at(".path", m))?)
    } else {
        None
    };
    let mut exclude = Vec::new();
    for (i, x) in l.exclude.unwrap_or_default().iter().enumerate() {
        let key = format!(".exclude[{i}]");
        if glob.is_none() {
            return Err(Invalid::at(
                key,
                "only allowed when `path` is a pattern (with '*', '?' or '[')",
            ));
        }
        exclude.push(NameGlob::parse(x).map_err(|m| Invalid::at(key, m))?);
    }
    let max_files = match l.max_files {
        None => DEFAULT_MAX_FILES,
        Some(_) if glob.is_none() => {
            return Err(Invalid::at(
                ".max_files",
                "only allowed when `path` is a pattern (with '*', '?' or '[')",
            ))
        }
        Some(n) => number_between(n, 1, 10_000).map_err(|m| Invalid::at(".max_files", m))? as usize,
    };
    let read_from = read_from(l.read_from);
    let history = match l.history {
        None => 0,
        Some(n) => number_between(n, 0, 1000).map_err(|m| Invalid::at(".history", m))? as usize,
    };
    let selected = selected_hosts(l.hosts, hosts)?;
    let sudo = l.sudo.unwrap_or(false);
    check_sudo(sudo, &selected, hosts)?;
    let parser = match l.parser {
        None => ParserSpec::Raw,
        Some(p) => parser::validate(p).map_err(|e| e.under(".parser"))?,
    };
    let multiline = l
        .multiline
        .map(multiline::validate)
        .transpose()
        .map_err(|e| e.under(".multiline"))?;
    Ok(Log {
        name: name.to_owned(),
        path,
        glob,
        exclude,
        max_files,
        read_from,
        history,
        sudo,
        journal: None,
        hosts: selected,
        parser,
        multiline,
    })
}

fn read_from(r: Option<RawReadFrom>) -> ReadFrom {
    match r {
        None | Some(RawReadFrom::End) => ReadFrom::End,
        Some(RawReadFrom::Beginning) => ReadFrom::Beginning,
    }
}

/// `sudo: true` only where the user is not root already.
fn check_sudo(
    sudo: bool,
    selected: &[String],
    hosts: &BTreeMap<String, Host>,
) -> Result<(), Invalid> {
    if let Some(root) = selected
        .iter()
        .find(|h| sudo && hosts.get(*h).is_some_and(|h| h.user == "root"))
    {
        return Err(Invalid::at(
            ".sudo",
            format!("host {root:?} logs in as root: sudo is not needed; drop `sudo: true`"),
        ));
    }
    Ok(())
}

/// `all` expanded to every host's name, or the names given, each a host.
fn selected_hosts(
    selection: HostSelection,
    hosts: &BTreeMap<String, Host>,
) -> Result<Vec<String>, Invalid> {
    let names = match selection {
        HostSelection::All => return Ok(hosts.keys().cloned().collect()),
        HostSelection::Named(names) => names,
    };
    if names.is_empty() {
        return Err(Invalid::at(".hosts", "expected `all` or at least one host"));
    }
    for (i, h) in names.iter().enumerate() {
        if !hosts.contains_key(h) {
            let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
            return Err(Invalid::at(
                format!(".hosts[{i}]"),
                format!("unknown host {h:?}; expected one of: {}", known.join(", ")),
            ));
        }
    }
    Ok(names)
}
