//! Where each log of a host was read up to, kept under
//! `state_dir/checkpoints/<host>.json` (written atomically: temp file, fsync,
//! rename) so a restarted tap resumes instead of starting at the file's end.
//!
//! The offset is the one after the last line handed to the parser's queue;
//! lines still in that queue when a tap is killed are not re-read (the
//! acknowledged durable path closes that gap).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use rill_config::Config;
use rill_proto::FileId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCheckpoint {
    pub file_id: FileId,
    /// Offset just past the last line read.
    pub offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// Per log: the file at its path now.
    pub logs: BTreeMap<String, LogCheckpoint>,
    /// Per log: rotated files not yet read to their end.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub draining: BTreeMap<String, Vec<LogCheckpoint>>,
}

pub fn path(cfg: &Config, host: &str) -> PathBuf {
    cfg.checkpoints_dir().join(format!("{host}.json"))
}

/// The saved checkpoints of `host`; empty if none were saved or the file is unreadable.
pub fn load(cfg: &Config, host: &str) -> Checkpoints {
    std::fs::read(path(cfg, host))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(cfg: &Config, host: &str, c: &Checkpoints) -> std::io::Result<()> {
    let file = path(cfg, host);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(c)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_through_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("rill.yaml");
        let cfg = Config::from_yaml(
            &cfg_path,
            "hosts: {h: {address: a, user: u, auth: {agent: true}}}\nlogs: {x: {path: /x, hosts: all}}\n",
        )
        .unwrap();
        assert_eq!(load(&cfg, "h"), Checkpoints::default());
        let mut c = Checkpoints::default();
        c.logs.insert(
            "x".into(),
            LogCheckpoint {
                file_id: FileId {
                    dev: 1,
                    ino: 2,
                    fingerprint: 3,
                },
                offset: 99,
            },
        );
        save(&cfg, "h", &c).unwrap();
        assert_eq!(load(&cfg, "h"), c);
    }
}
