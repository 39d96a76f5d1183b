//! Where each log of a host was read up to, kept under
//! `state_dir/checkpoints/<host>.json` (written atomically: temp file, fsync,
//! rename) so a restarted tap resumes instead of starting at the file's end.
//!
//! Each offset is that of the file's oldest line the index has not
//! confirmed yet (the durable window and its gaps say which), so a tap
//! killed with lines in flight reads them again, and the index keeps each
//! line once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rill_config::Config;
use rill_proto::FileId;
use serde::{Deserialize, Serialize};

/// How the server can tell that a file is still the one we read: the
/// fingerprint (`cksum`, or `md5sum` where BusyBox lacks `cksum`) of its
/// first `len` bytes, as the remote script computes it.
///
/// A file seen with 64 bytes or more has `len` 64 and its identity's
/// fingerprint is this `fp`. A file first seen shorter gets a random tag as
/// its identity's fingerprint instead (two short files of one inode would
/// otherwise share a name) and is verified over the bytes it had; the remote
/// script upgrades `len` to 64 once the file has grown that far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Verify {
    pub len: u64,
    pub fp: u32,
}

impl Verify {
    /// Nothing to compare (a file that was empty when first seen).
    pub const NOTHING: Verify = Verify { len: 0, fp: 0 };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCheckpoint {
    pub file_id: FileId,
    /// Offset just past the last line read.
    pub offset: u64,
    /// Absent in checkpoints written before it existed: see [`LogCheckpoint::verify`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

impl LogCheckpoint {
    pub fn new(file_id: FileId, offset: u64, verify: Verify) -> Self {
        LogCheckpoint {
            file_id,
            offset,
            verify: Some(verify),
        }
    }

    /// What to check the file against: as recorded, or for older checkpoints
    /// the identity's fingerprint (of 64 bytes; 0 meant "was empty").
    pub fn verify(&self) -> Verify {
        self.verify.unwrap_or(match self.file_id.fingerprint {
            0 => Verify::NOTHING,
            fp => Verify { len: 64, fp },
        })
    }
}

/// A file whose end has not been read yet, though its path names another
/// file now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfinished {
    #[serde(flatten)]
    pub at: LogCheckpoint,
    /// Where its bytes are: `false` in the same inode under another name
    /// (rename rotation), `true` in a copy with the same first bytes
    /// (copytruncate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy: bool,
}

/// Where each log of a host stands. Offsets are those the index has
/// committed: a restarted tap reads again whatever came after them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// The index these positions are in (its generation); a tap that finds
    /// the index replaced reads its files again from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// Per log: the file at its path now.
    pub logs: BTreeMap<String, LogCheckpoint>,
    /// Per log: older files not yet in the index to their end.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub draining: BTreeMap<String, Vec<Unfinished>>,
    /// Per log: the last few files read to their end (their offset is their
    /// final size), newest last: what can be read again if the index is lost.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub history: BTreeMap<String, Vec<Unfinished>>,
    /// Per pattern log: what it knows besides its files' entries (those
    /// are under `NAME:PATH` in the maps above). Present once the pattern
    /// was listed: files found after that are new, read from their start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub patterns: BTreeMap<String, PatternCheckpoint>,
    /// Per journal log: the cursor of the last entry the index holds with
    /// every entry before it (the journal's byte offset): a restarted tap
    /// reads the entries after it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub journals: BTreeMap<String, String>,
}

/// What a pattern keeps in the checkpoint file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatternCheckpoint {
    /// Files a pattern's log read and no member follows under their name now (a
    /// rotated generation, a file finished): never followed again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known: Vec<KnownFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFile {
    pub ino: u64,
    #[serde(flatten)]
    pub verify: Verify,
}

/// Finished files remembered per log.
pub const HISTORY: usize = 8;

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
    rill_process::replace_file(&path(cfg, host), &serde_json::to_vec(c)?)
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
            LogCheckpoint::new(
                FileId {
                    dev: 1,
                    ino: 2,
                    fingerprint: 3,
                },
                99,
                Verify { len: 10, fp: 7 },
            ),
        );
        c.draining.insert(
            "x".into(),
            vec![Unfinished {
                at: LogCheckpoint::new(FileId::default(), 5, Verify::NOTHING),
                copy: true,
            }],
        );
        save(&cfg, "h", &c).unwrap();
        assert_eq!(load(&cfg, "h"), c);
    }

    #[test]
    fn checkpoints_written_before_verify_existed_still_load() {
        let old = r#"{"logs":{"x":{"file_id":"1:2:0000000a","offset":9}},"draining":{"x":[{"file_id":"1:3:00000000","offset":4}]}}"#;
        let c: Checkpoints = serde_json::from_str(old).unwrap();
        assert_eq!(c.logs["x"].verify(), Verify { len: 64, fp: 10 });
        let d = c.draining["x"][0];
        assert!(!d.copy);
        assert_eq!(d.at.verify(), Verify::NOTHING);
    }
}
