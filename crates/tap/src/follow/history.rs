//! `history: N`: the first time a log sees its file, the rotated
//! generations next to it (`app.log.1`, `app.log.2.gz`,
//! `app.log-20261201`) are read too, the newest N, oldest first.
//!
//! A channel runs `generations.sh`, which lists them with the inode and
//! the first bytes of what each decompresses to; each becomes a file to
//! finish from offset 0 (a finish finds a file by inode, a compressed one
//! by what it decompresses to, and reads it decompressed). The current file
//! is opened once the list is in, so what the log read is in its
//! checkpoint before anything else: a restart resumes the generations
//! where they stood.

use std::time::Instant;

use rill_proto::FileId;
use tracing::{info, warn};

use super::channel::{Channel, Opener};
use super::Follow;
use crate::checkpoint::{LogCheckpoint, Unfinished, Verify};
use crate::script::Script;
use crate::status::StatusBoard;

/// The longest listing read (a few dozen lines are expected).
const MAX_LISTING: usize = 1 << 20;

/// Where the generations of a log are.
#[derive(Default)]
pub enum Generations {
    /// Not wanted, or read already.
    #[default]
    Done,
    /// To list, the newest this many.
    Due(usize),
    /// Being listed.
    Listing {
        channel: Box<dyn Channel>,
        conn: usize,
        out: Vec<u8>,
        want: usize,
    },
}

/// One listed generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub dev: u64,
    pub ino: u64,
    pub verify: Verify,
    pub name: String,
}

/// Parses the listing's lines up to `RILL-END`; `None` until it came.
pub fn parse(out: &[u8]) -> Option<Result<Vec<Generation>, String>> {
    let text = String::from_utf8_lossy(out);
    let mut found = Vec::new();
    for line in text.split_inclusive('\n') {
        let line = line.strip_suffix('\n')?;
        if line == "RILL-END" {
            return Some(Ok(found));
        }
        let Some(rest) = line.strip_prefix("G ") else {
            // A login banner before the script started: not ours.
            continue;
        };
        let mut w = rest.splitn(5, ' ');
        let mut num = || w.next().and_then(|x| x.parse::<u64>().ok());
        let (Some(dev), Some(ino), Some(len), Some(fp)) = (num(), num(), num(), num()) else {
            return Some(Err(format!("an unreadable generation: {line:?}")));
        };
        let (Ok(fp), Some(name)) = (u32::try_from(fp), w.next()) else {
            return Some(Err(format!("an unreadable generation: {line:?}")));
        };
        found.push(Generation {
            dev,
            ino,
            verify: Verify { len, fp },
            name: name.to_owned(),
        });
    }
    None
}

/// The files to finish for `found` (oldest first): the newest `want` with
/// any bytes, each from offset 0, named by device, inode and first bytes.
pub fn to_finish(found: &[Generation], want: usize) -> Vec<Unfinished> {
    let nonempty: Vec<&Generation> = found.iter().filter(|g| g.verify.len > 0).collect();
    let skip = nonempty.len().saturating_sub(want);
    nonempty[skip..]
        .iter()
        .map(|g| Unfinished {
            at: LogCheckpoint::new(
                FileId {
                    dev: g.dev,
                    ino: g.ino,
                    fingerprint: g.verify.fp,
                },
                0,
                g.verify,
            ),
            copy: false,
        })
        .collect()
}

impl Follow {
    /// Lists the generations when due.
    pub(super) fn open_generations(&mut self, conns: &mut dyn Opener) -> anyhow::Result<()> {
        let Generations::Due(want) = self.generations else {
            return Ok(());
        };
        let script = Script::Generations {
            path: self.log.path.clone(),
            interval: self.settings.poll_interval,
            others: self.others.clone(),
        };
        let (channel, conn) = conns.open(&self.run_as.wrap(script))?;
        self.generations = Generations::Listing {
            channel,
            conn,
            out: Vec::new(),
            want,
        };
        Ok(())
    }

    /// Reads the listing; once whole, the generations become files to
    /// finish and the current file is opened.
    pub(super) fn pump_generations(
        &mut self,
        buf: &mut [u8],
        heard: &mut Instant,
        board: &mut StatusBoard,
        i: usize,
    ) {
        let Generations::Listing {
            channel, out, want, ..
        } = &mut self.generations
        else {
            return;
        };
        let mut failed = None;
        loop {
            match channel.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    *heard = Instant::now();
                    out.extend_from_slice(&buf[..n]);
                    if out.len() > MAX_LISTING {
                        failed = Some(format!("a listing of generations over {MAX_LISTING} bytes"));
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        let mut missing_tools = Vec::new();
        while let Ok(n) = channel.read_stderr(buf) {
            if n == 0 {
                break;
            }
            *heard = Instant::now();
            let text = String::from_utf8_lossy(&buf[..n]);
            missing_tools.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("RILL-NOTOOL "))
                    .map(str::to_owned),
            );
        }
        for tool in missing_tools {
            warn!(log = %self.log.name, tool, "a compressed generation is left out: the server has no such tool");
        }
        let parsed = match failed {
            Some(e) => Some(Err(e)),
            None => parse(out).or_else(|| {
                (channel.eof() && !channel.queued())
                    .then(|| Err("the listing of generations ended early".to_owned()))
            }),
        };
        let Some(parsed) = parsed else { return };
        let want = *want;
        if let Generations::Listing { mut channel, .. } = std::mem::take(&mut self.generations) {
            channel.close();
        }
        match parsed {
            Ok(found) => {
                let files = to_finish(&found, want);
                info!(log = %self.log.name, found = found.len(), reading = files.len(), "rotated generations to index");
                self.finishes.extend(files);
                self.identity_changed = true;
            }
            Err(e) => {
                warn!(log = %self.log.name, error = %e, "could not list the rotated generations; following the file alone");
                board.log(i).error = Some(format!("history: {e}"));
            }
        }
        self.reopen_at = Some(Instant::now());
    }

    /// The generations' listing channel, if open: (connection, pending).
    pub(super) fn generations_channel(&self) -> Option<(usize, bool)> {
        match &self.generations {
            Generations::Listing { channel, conn, .. } => {
                Some((*conn, channel.queued() || channel.eof()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_generations_with_bytes_are_read_oldest_first() {
        let out = b"motd\nG 1 10 64 100 app.log.3.gz\nG 1 11 0 0 app.log.2\nG 1 12 64 120 app.log-2026 x\nG 1 13 20 130 app.log.1\nRILL-END\n";
        let found = parse(out).unwrap().unwrap();
        assert_eq!(found.len(), 4);
        assert_eq!(found[2].name, "app.log-2026 x");
        let names: Vec<u64> = to_finish(&found, 2)
            .iter()
            .map(|u| u.at.file_id.ino)
            .collect();
        assert_eq!(names, vec![12, 13]);
        let all = to_finish(&found, 10);
        assert_eq!(all.len(), 3, "the empty one is left out");
        assert!(all.iter().all(|u| u.at.offset == 0 && !u.copy));
        assert_eq!(all[0].at.verify(), Verify { len: 64, fp: 100 });
    }

    #[test]
    fn a_listing_is_whole_only_with_its_end_and_bad_lines_are_errors() {
        assert_eq!(parse(b"G 1 10 64 100 app.log.1\n"), None);
        assert_eq!(parse(b"G 1 10 64 100 app.log.1\nRILL-E"), None);
        assert!(parse(b"G x 10 64 100 a\nRILL-END\n").unwrap().is_err());
        assert!(parse(b"G 1 10 64 99999999999 a\nRILL-END\n")
            .unwrap()
            .is_err());
        assert!(parse(b"G 1 10 64 1\nRILL-END\n").unwrap().is_err());
        assert_eq!(parse(b"RILL-END\n"), Some(Ok(Vec::new())));
    }
}
