//! From [`RawConfig`] to [`Config`]: the checks serde cannot express.
//!
//! One module per section, each validating its own block and reporting an
//! [`Invalid`] keyed below it; [`validate`] calls them in order and adds the
//! section's key and the file. The order decides which problem a file with
//! several reports first, and follows what later sections need: `state_dir`
//! holds the sessions sockets, `streams.endpoint` must differ from every
//! sessions endpoint, logs name hosts, and rules name saved queries, hosts
//! and logs.

mod auth;
mod cluster;
mod hosts;
mod index;
mod ingest;
mod journal;
mod logs;
mod multiline;
mod parser;
mod rules;
mod search;
mod sessions;
mod streams;
mod tap;
mod upstreams;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, Invalid};
use crate::model::Config;
use crate::raw::RawConfig;
use crate::values::{absolute, check_name, resolve, Environment};

/// Unix socket paths are limited to 107 bytes; `run/control.sock` and friends
/// are added to `state_dir`, so keep room for them.
const MAX_STATE_DIR_LEN: usize = 80;

/// The config of `file` (made absolute; relative paths in it resolve against
/// its folder), or the first problem found, in the order of the sections.
pub fn validate(file: &Path, raw: RawConfig, env: Environment) -> Result<Config, ConfigError> {
    let file = absolute(file);
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();

    let state_dir = state_dir(&base, raw.state_dir.as_deref()).map_err(at(&file, "state_dir"))?;
    let streams::Streams {
        endpoint: streams_endpoint,
        federation: federation_endpoint,
        guard: streams_guard,
    } = streams::validate(&base, raw.streams, env).map_err(at(&file, "streams"))?;
    let tap = tap::validate(raw.tap).map_err(at(&file, "tap"))?;
    let index = index::validate(raw.index).map_err(at(&file, "index"))?;
    let search = search::validate(&base, raw.search, env).map_err(at(&file, "search"))?;
    let hosts = hosts::validate(
        raw.hosts,
        &base,
        &state_dir.join("run"),
        (&streams_endpoint, federation_endpoint.as_deref()),
        env,
    )
    .map_err(at(&file, "hosts"))?;
    let logs = logs::validate(raw.logs, &hosts).map_err(at(&file, "logs"))?;
    let queries = queries(raw.queries.unwrap_or_default()).map_err(at(&file, "queries"))?;
    let known = rules::Known {
        queries: &queries,
        hosts: &hosts,
        logs: &logs,
    };
    let rules =
        rules::validate(raw.rules.unwrap_or_default(), &known, env).map_err(at(&file, "rules"))?;
    let collector = upstreams::collector(raw.collector).map_err(at(&file, "collector"))?;
    let ingest = raw
        .ingest
        .map(|i| ingest::validate(&base, i, env))
        .transpose()
        .map_err(at(&file, "ingest"))?;
    let upstreams = upstreams::validate(
        &base,
        raw.upstreams.unwrap_or_default(),
        &collector,
        [Some(&streams_endpoint), federation_endpoint.as_ref()],
        env,
    )
    .map_err(at(&file, "upstreams"))?;
    let cluster = raw
        .cluster
        .map(|c| cluster::validate(c, &collector, &streams_endpoint, search.listen))
        .transpose()
        .map_err(at(&file, "cluster"))?;

    Ok(Config {
        file,
        state_dir,
        streams_endpoint,
        federation_endpoint,
        streams_guard,
        collector,
        ingest,
        upstreams,
        cluster,
        tap,
        index,
        search,
        hosts,
        logs,
        queries,
        rules,
    })
}

/// The longest saved query or rule query, in bytes (as `rill search` takes
/// them).
const MAX_QUERY_BYTES: usize = 4096;

/// Saved queries: names as log names, texts not empty and not too long.
fn queries(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Invalid> {
    for (name, text) in &raw {
        check_name("query", name).map_err(|m| Invalid::at(format!(".{name}"), m))?;
        check_query_text(text).map_err(|m| Invalid::at(format!(".{name}"), m))?;
    }
    Ok(raw)
}

/// A query's text, not empty and not too long; its syntax is checked by
/// `rill check-config`, which has the query parser.
fn check_query_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("expected a query, got an empty one".to_owned());
    }
    if text.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "expected a query of at most {MAX_QUERY_BYTES} bytes, got {}",
            text.len()
        ));
    }
    Ok(())
}

/// Turns a section's [`Invalid`] into the [`ConfigError`] of `file`, the
/// section being the top-level key `section`.
fn at<'a>(file: &'a Path, section: &'a str) -> impl Fn(Invalid) -> ConfigError + 'a {
    move |e| e.under(section).in_file(file)
}

/// `state_dir`, default `./state`, resolved against the config's folder.
fn state_dir(base: &Path, raw: Option<&str>) -> Result<PathBuf, Invalid> {
    let state_dir = resolve(base, raw.unwrap_or("./state"));
    let len = state_dir.as_os_str().len();
    if len > MAX_STATE_DIR_LEN {
        return Err(Invalid::at(
            "",
            format!(
                "resolves to {} ({len} bytes); expected at most {MAX_STATE_DIR_LEN} bytes so \
                 its unix sockets fit the system's path limit",
                state_dir.display(),
            ),
        ));
    }
    Ok(state_dir)
}
