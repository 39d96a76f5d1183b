//! Where a log stands: what it saves in checkpoints, how far the index lags
//! behind the server, and reading everything again when the index was lost.

use std::time::Instant;

use tracing::info;

use super::reader::Reader;
use super::{resume_at, Follow};
use crate::checkpoint::{LogCheckpoint, Unfinished};
use crate::durable::Durable;

impl Follow {
    /// What to save for this log (log number `i` of the tap): the current
    /// file and every unfinished one, each at its oldest line the index has
    /// not confirmed, and the files finished lately.
    pub fn checkpoint(
        &mut self,
        i: usize,
        durable: &Durable,
    ) -> (Option<LogCheckpoint>, Vec<Unfinished>, Vec<Unfinished>) {
        let confirmed = |at: LogCheckpoint| match durable.first_unconfirmed(i, at.file_id) {
            Some(off) if off < at.offset => LogCheckpoint { offset: off, ..at },
            _ => at,
        };
        self.closed
            .retain(|u| durable.first_unconfirmed(i, u.at.file_id).is_some());
        let current = self
            .current
            .as_ref()
            .and_then(Reader::position)
            .or(self.resume)
            .map(confirmed);
        let unfinished = self
            .finishing
            .iter()
            .filter_map(|r| {
                r.position().map(|at| Unfinished {
                    at: confirmed(at),
                    copy: r.role.copy(),
                })
            })
            .chain(
                self.finishes
                    .iter()
                    .chain(&self.closed)
                    .map(|u| Unfinished {
                        at: confirmed(u.at),
                        copy: u.copy,
                    }),
            )
            .collect();
        (current, unfinished, self.history.clone())
    }

    /// The offset the index has confirmed in the current file, and the bytes
    /// on the server not in the index yet (the current file's rest, plus
    /// what is left of files being finished whose final size is known).
    pub fn lag(&self, i: usize, durable: &Durable) -> (Option<u64>, Option<u64>) {
        let confirmed = |at: LogCheckpoint| {
            durable
                .first_unconfirmed(i, at.file_id)
                .map_or(at.offset, |off| off.min(at.offset))
        };
        let Some(r) = &self.current else {
            return (self.resume.map(confirmed), None);
        };
        let Some(at) = r.position() else {
            return (None, None);
        };
        let indexed = confirmed(at);
        let lag = r.remote_size.map(|size| {
            let older: u64 = self
                .finishing
                .iter()
                .filter_map(|d| {
                    let (size, at) = (d.role.old()?.final_size?, d.position()?);
                    Some(size.saturating_sub(confirmed(at)))
                })
                .sum();
            size.saturating_sub(indexed) + older
        });
        (Some(indexed), lag)
    }

    /// The index was lost or replaced: read every file this log still knows
    /// again from its start (the current one, unfinished ones, and the ones
    /// finished lately), as far as they are still on the server.
    pub fn rewind_to_start(&mut self) {
        if self.retired {
            // A pattern's file done with: its files were read, and are no
            // longer its to read again.
            return;
        }
        let start = |at: LogCheckpoint| LogCheckpoint { offset: 0, ..at };
        let mut again: Vec<Unfinished> = Vec::new();
        let current = self
            .current
            .as_ref()
            .and_then(Reader::position)
            .or(self.resume);
        for r in self.finishing.drain(..) {
            if let Some(at) = r.position() {
                again.push(Unfinished {
                    at: start(at),
                    copy: r.role.copy(),
                });
            }
            r.abandon();
        }
        for r in self
            .current
            .take()
            .into_iter()
            .chain(self.catchup.reader.take())
        {
            r.abandon();
        }
        self.catchup.copy_of = None;
        for u in self
            .finishes
            .drain(..)
            .chain(self.closed.drain(..))
            .chain(self.history.iter().copied())
        {
            if !again.iter().any(|a| a.at.file_id == u.at.file_id)
                && current.is_none_or(|c| c.file_id != u.at.file_id)
            {
                again.push(Unfinished {
                    at: start(u.at),
                    copy: u.copy,
                });
            }
        }
        info!(log = %self.log.name, files = again.len() + usize::from(current.is_some()), "reading the log's files again from the start");
        self.finishes = again;
        if let Some(c) = current {
            self.resume = Some(start(c));
            self.next = resume_at(start(c));
        }
        self.reopen_at = Some(Instant::now());
        self.identity_changed = true;
    }
}
