//! Firings and rule cursors on disk (`<state_dir>/rules/firings.log`).
//!
//! One JSON object per line, appended, synced before anything it records
//! is acted on: a firing (`fire`) before its first attempt, an action's new
//! state (`action`) after each attempt, a rule's place in the index
//! (`cursor`) with the firings its evaluation made. Reading the file back
//! gives the newest state of everything; an action that was `running` when
//! the process died is `pending` again (retried). A line cut short by a
//! crash ends the file (it is cut off before anything is appended).
//!
//! The file is rewritten (to a temporary file, synced, renamed) when it
//! grows past [`COMPACT_BYTES`] or holds more than [`KEEP_FINISHED`]
//! finished firings of a rule twice over: it keeps every unfinished firing,
//! the newest [`KEEP_FINISHED`] finished ones per rule, and the cursors.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::firing::{ActionState, Record, State};

/// Finished firings kept per rule.
pub const KEEP_FINISHED: usize = 1000;
/// The log is rewritten past this size.
const COMPACT_BYTES: u64 = 32 << 20;
const FILE: &str = "firings.log";

/// Where a rule stands: the index commits it has evaluated, and what its
/// windows need to go on after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub rule: String,
    /// Every event with a `commit` number below this was evaluated.
    pub commit: u64,
    /// Lines that matched, in all.
    pub matched: u64,
    /// When the rule was first evaluated (flatline and heartbeat windows
    /// start after it).
    pub since: DateTime<Utc>,
    /// The end of the last window a flatline or heartbeat evaluated
    /// (microseconds since the epoch).
    #[serde(default)]
    pub window: Option<i64>,
    /// The time of each group's last firing, for `realert` (microseconds).
    #[serde(default)]
    pub fired: BTreeMap<String, i64>,
    /// The newest line time evaluated (microseconds; frequency windows are
    /// rebuilt back from it).
    #[serde(default)]
    pub max_ts: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry {
    Fire(Record),
    Action {
        id: String,
        index: usize,
        state: ActionState,
    },
    Cursor(Cursor),
}

/// What the store holds, as read back.
#[derive(Default)]
pub struct Contents {
    pub records: HashMap<String, Record>,
    pub cursors: BTreeMap<String, Cursor>,
}

impl Contents {
    /// Reads the log in `dir` (empty when there is none); the length of
    /// its whole lines.
    fn read(dir: &Path) -> anyhow::Result<(Contents, u64)> {
        let path = dir.join(FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Contents::default(), 0))
            }
            Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
        };
        let mut c = Contents::default();
        let mut good = 0u64;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("could not read {}", path.display()))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            good += n as u64;
            match serde_json::from_slice::<Entry>(&line) {
                Ok(entry) => c.apply(entry),
                // Written whole by us, so never expected; one such line
                // must not cost the lines after it.
                Err(e) => {
                    tracing::warn!(path = %path.display(), at = good - n as u64, "a line of the rules' log that cannot be read was skipped: {e}")
                }
            }
        }
        Ok((c, good))
    }

    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Fire(r) => {
                self.records.insert(r.firing.id.clone(), r);
            }
            Entry::Action { id, index, state } => {
                if let Some(a) = self
                    .records
                    .get_mut(&id)
                    .and_then(|r| r.actions.get_mut(index))
                {
                    *a = state;
                }
            }
            Entry::Cursor(c) => {
                self.cursors.insert(c.rule.clone(), c);
            }
        }
    }

    /// Firings of `rule` (or every rule), newest first, at most `limit`.
    pub fn history(&self, rule: Option<&str>, limit: usize) -> Vec<&Record> {
        let mut v: Vec<&Record> = self
            .records
            .values()
            .filter(|r| rule.is_none_or(|n| r.firing.rule == n))
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.seq));
        v.truncate(limit);
        v
    }

    /// Firings of each rule by state.
    pub fn counts(&self) -> BTreeMap<&str, BTreeMap<State, u64>> {
        let mut m: BTreeMap<&str, BTreeMap<State, u64>> = BTreeMap::new();
        for r in self.records.values() {
            *m.entry(r.firing.rule.as_str())
                .or_default()
                .entry(r.state())
                .or_default() += 1;
        }
        m
    }
}

impl PartialOrd for State {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for State {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// Reads the store in `dir` without writing (for `rill rules` and the API).
pub fn read(dir: &Path) -> anyhow::Result<Contents> {
    Ok(Contents::read(dir)?.0)
}

/// The store the rules thread owns.
pub struct Store {
    dir: PathBuf,
    file: BufWriter<File>,
    size: u64,
    pub contents: Contents,
    next_seq: u64,
    /// Appended and not synced yet.
    unsynced: bool,
    /// The log's size after its last rewrite (the next one waits until it
    /// doubled, whatever it holds).
    compacted: u64,
}

impl Store {
    /// Opens (or makes) the store in `dir`: what it holds, with running
    /// actions pending again, and a log cut after its last whole line.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not make {}", dir.display()))?;
        let (mut contents, good) = Contents::read(dir)?;
        for r in contents.records.values_mut() {
            for a in &mut r.actions {
                if a.state == State::Running {
                    a.state = State::Pending;
                    a.next_at = None;
                }
            }
        }
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("could not open {}", path.display()))?;
        file.set_len(good)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(drop))
            .with_context(|| format!("could not write {}", path.display()))?;
        let next_seq = contents
            .records
            .values()
            .map(|r| r.seq + 1)
            .max()
            .unwrap_or(0);
        let mut store = Store {
            dir: dir.to_owned(),
            file: BufWriter::new(file),
            size: good,
            contents,
            next_seq,
            unsynced: false,
            compacted: 0,
        };
        store.compact()?;
        Ok(store)
    }

    fn append(&mut self, entry: &Entry) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .context("could not write the rules' log")?;
        self.size += line.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Whether a firing with this id is held.
    pub fn knows(&self, id: &str) -> bool {
        self.contents.records.contains_key(id)
    }

    /// Queues a firing (not synced yet); false if its id is held already.
    pub fn fire(
        &mut self,
        firing: crate::Firing,
        actions: Vec<ActionState>,
    ) -> anyhow::Result<bool> {
        if self.knows(&firing.id) {
            return Ok(false);
        }
        let record = Record {
            firing,
            actions,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let entry = Entry::Fire(record);
        self.append(&entry)?;
        self.contents.apply(entry);
        Ok(true)
    }

    /// An action's new state.
    pub fn set_action(&mut self, id: &str, index: usize, state: ActionState) -> anyhow::Result<()> {
        let entry = Entry::Action {
            id: id.to_owned(),
            index,
            state,
        };
        self.append(&entry)?;
        self.contents.apply(entry);
        Ok(())
    }

    pub fn set_cursor(&mut self, cursor: Cursor) -> anyhow::Result<()> {
        let entry = Entry::Cursor(cursor);
        self.append(&entry)?;
        self.contents.apply(entry);
        Ok(())
    }

    pub fn cursor(&self, rule: &str) -> Option<&Cursor> {
        self.contents.cursors.get(rule)
    }

    /// Makes what was appended durable; rewrites the log when it is due.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        if self.unsynced {
            self.file
                .flush()
                .context("could not write the rules' log")?;
            self.file
                .get_ref()
                .sync_data()
                .context("could not sync the rules' log")?;
            self.unsynced = false;
        }
        if self.size > COMPACT_BYTES.max(2 * self.compacted) || self.finished_over() {
            self.compact()?;
        }
        Ok(())
    }

    /// Some rule has more than twice [`KEEP_FINISHED`] finished firings.
    fn finished_over(&self) -> bool {
        self.contents.counts().values().any(|by| {
            by.iter()
                .filter(|(s, _)| s.finished())
                .map(|(_, n)| *n as usize)
                .sum::<usize>()
                > 2 * KEEP_FINISHED
        })
    }

    /// Rewrites the log with what is kept (see the module docs).
    fn compact(&mut self) -> anyhow::Result<()> {
        let mut by_rule: HashMap<&str, Vec<&Record>> = HashMap::new();
        for r in self.contents.records.values() {
            by_rule.entry(&r.firing.rule).or_default().push(r);
        }
        let mut keep: Vec<String> = Vec::new();
        for records in by_rule.values_mut() {
            records.sort_by_key(|r| std::cmp::Reverse(r.seq));
            let mut finished = 0;
            for r in records.iter() {
                if r.state().finished() {
                    finished += 1;
                    if finished > KEEP_FINISHED {
                        continue;
                    }
                }
                keep.push(r.firing.id.clone());
            }
        }
        let kept: HashMap<String, Record> = keep
            .into_iter()
            .filter_map(|id| self.contents.records.remove_entry(&id))
            .collect();
        self.contents.records = kept;

        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let path = self.dir.join(FILE);
        let mut out = BufWriter::new(
            File::create(&tmp).with_context(|| format!("could not write {}", tmp.display()))?,
        );
        let mut size = 0u64;
        let mut records: Vec<&Record> = self.contents.records.values().collect();
        records.sort_by_key(|r| r.seq);
        let entries = records
            .into_iter()
            .map(|r| Entry::Fire(r.clone()))
            .chain(self.contents.cursors.values().cloned().map(Entry::Cursor));
        for e in entries {
            let mut line = serde_json::to_vec(&e)?;
            line.push(b'\n');
            out.write_all(&line)?;
            size += line.len() as u64;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("could not replace {}", path.display()))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("could not sync {}", self.dir.display()))?;
        let mut file = OpenOptions::new().append(true).open(&path)?;
        file.seek(SeekFrom::End(0))?;
        self.file = BufWriter::new(file);
        self.size = size;
        self.compacted = size;
        self.unsynced = false;
        Ok(())
    }

    /// Actions due now, oldest firing first: `(id, action index)`.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<(u64, String, usize)> {
        let mut v: Vec<(u64, String, usize)> = Vec::new();
        for r in self.contents.records.values() {
            for (i, a) in r.actions.iter().enumerate() {
                if a.state == State::Pending && a.next_at.is_none_or(|t| t <= now) {
                    v.push((r.seq, r.firing.id.clone(), i));
                }
            }
        }
        v.sort();
        v
    }

    /// Firings of `rule` not finished.
    pub fn unfinished(&self, rule: &str) -> usize {
        self.contents
            .records
            .values()
            .filter(|r| r.firing.rule == rule && !r.state().finished())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Firing;

    fn firing(id: &str) -> Firing {
        Firing {
            id: id.into(),
            rule: "r".into(),
            kind: "any".into(),
            fired_at: Utc::now(),
            group: String::new(),
            count: 1,
            matches: vec![],
        }
    }

    fn pending() -> ActionState {
        ActionState {
            action: "command /bin/true".into(),
            state: State::Pending,
            attempts: 0,
            next_at: None,
            last: None,
        }
    }

    #[test]
    fn what_was_synced_is_read_back_and_running_is_pending_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            assert!(s.fire(firing("a"), vec![pending()]).unwrap());
            assert!(
                !s.fire(firing("a"), vec![pending()]).unwrap(),
                "same id twice"
            );
            assert!(s.fire(firing("b"), vec![pending()]).unwrap());
            let mut running = pending();
            running.state = State::Running;
            running.attempts = 1;
            s.set_action("a", 0, running).unwrap();
            let mut done = pending();
            done.state = State::Success;
            s.set_action("b", 0, done).unwrap();
            s.set_cursor(Cursor {
                rule: "r".into(),
                commit: 7,
                matched: 2,
                since: Utc::now(),
                window: None,
                fired: BTreeMap::new(),
                max_ts: 0,
            })
            .unwrap();
            s.sync().unwrap();
        }
        // A line cut short by a crash.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"fire\":{\"firing\"").unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = &s.contents.records["a"];
        assert_eq!(a.actions[0].state, State::Pending);
        assert_eq!(a.actions[0].attempts, 1);
        assert_eq!(s.contents.records["b"].state(), State::Success);
        assert_eq!(s.cursor("r").unwrap().commit, 7);
        let due: Vec<String> = s.due(Utc::now()).into_iter().map(|d| d.1).collect();
        assert_eq!(due, ["a"]);
        assert_eq!(read(dir.path()).unwrap().history(None, 10).len(), 2);
    }

    #[test]
    fn compaction_keeps_unfinished_and_the_newest_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let n = 2 * KEEP_FINISHED + 5;
        for i in 0..n {
            let id = format!("f{i}");
            s.fire(firing(&id), vec![pending()]).unwrap();
            if i != 3 {
                let mut done = pending();
                done.state = State::Failure;
                s.set_action(&id, 0, done).unwrap();
            }
        }
        s.sync().unwrap();
        let c = read(dir.path()).unwrap();
        assert_eq!(c.records.len(), KEEP_FINISHED + 1);
        assert!(c.records.contains_key("f3"), "unfinished kept");
        assert!(c.records.contains_key(&format!("f{}", n - 1)));
        assert!(!c.records.contains_key("f4"));
        // And appends go on after the rewrite.
        s.fire(firing("new"), vec![pending()]).unwrap();
        s.sync().unwrap();
        assert!(read(dir.path()).unwrap().records.contains_key("new"));
    }
}
