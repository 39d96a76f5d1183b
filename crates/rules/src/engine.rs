//! Deciding what fires.
//!
//! `any` and `frequency` rules read what the index committed since their
//! cursor (events carry the commit they were made searchable by, see
//! `rill_index::schema::Fields::commit`), oldest line first, and count in
//! the lines' own time: a backlog of last night's lines fires as last
//! night's lines would have. `flatline` and `heartbeat` rules look at wall
//! time windows, each evaluated once it ended [`GRACE`] ago (the index
//! commits twice a second).
//!
//! Every decision is made again the same way after a crash: the cursor,
//! the groups' last firing times and the newest line time are stored with
//! the firings they made (one sync), frequency windows are rebuilt from the
//! index back from the cursor, and a firing's id comes from what caused it,
//! so a firing made twice (lines indexed again after a crash) is queued
//! once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rill_config::rules::{GroupBy, Rule, RuleKind};
use rill_config::Config;
use rill_index::{IndexSearcher, IndexedLine, SearchRequest};

use crate::firing::{self, Firing};
use crate::store::Cursor;

/// A time window is evaluated this long after it ended.
pub const GRACE: Duration = Duration::from_secs(2);
/// Groups a rule keeps windows and realert times for, at most (the least
/// recently matched are forgotten).
const MAX_GROUPS: usize = 10_000;
/// Lines read per evaluation of a rule, at most: more committed since its
/// cursor are read in parts, a range of commit numbers at a time.
const MAX_READ: usize = 50_000;
/// A group's value is cut to this many bytes (a field may hold anything).
const MAX_GROUP_BYTES: usize = 256;

/// One rule's query as a search request (its text, logs and hosts).
pub fn request(rule: &Rule) -> SearchRequest {
    SearchRequest {
        query: rule.query.text.clone(),
        logs_in: rule.logs.clone(),
        hosts_in: rule.hosts.clone(),
        limit: MAX_READ,
        oldest_first: true,
        ..Default::default()
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The group a line belongs to.
pub fn group_of(g: Option<&GroupBy>, l: &IndexedLine) -> String {
    let mut v = group_value(g, l);
    if v.len() > MAX_GROUP_BYTES {
        let mut end = MAX_GROUP_BYTES;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
    }
    v
}

fn group_value(g: Option<&GroupBy>, l: &IndexedLine) -> String {
    match g {
        None => String::new(),
        Some(GroupBy::Host) => l.host.clone(),
        Some(GroupBy::Log) => l.log.clone(),
        Some(GroupBy::Path) => l.path.clone(),
        Some(GroupBy::Field(name)) => {
            let v = l.fields.get(name).or_else(|| {
                let mut parts = name.split('.');
                let first = l.fields.get(parts.next()?)?;
                parts.try_fold(first, |v, p| v.get(p))
            });
            match v {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            }
        }
    }
}

/// A line's durable name: host, log, file and offset.
fn identity(l: &IndexedLine) -> String {
    format!("{}/{}/{}/{}", l.host, l.log, l.file_id, l.offset)
}

/// Matches of one group in a frequency window, oldest first.
#[derive(Default)]
struct Window {
    /// (line time, identity, the line as JSON for the newest few).
    entries: VecDeque<(i64, String, Option<serde_json::Value>)>,
    /// The identities in `entries`: a line indexed again (after a crash)
    /// is not counted twice.
    ids: HashSet<String>,
}

impl Window {
    fn push(&mut self, ts: i64, id: String, json: serde_json::Value, within: i64) {
        if !self.ids.insert(id.clone()) {
            return;
        }
        let at = self.entries.partition_point(|e| e.0 <= ts);
        self.entries.insert(at, (ts, id, Some(json)));
        let newest = self.entries.back().map_or(ts, |e| e.0);
        while self
            .entries
            .front()
            .is_some_and(|e| e.0 < newest.saturating_sub(within))
        {
            if let Some(e) = self.entries.pop_front() {
                self.ids.remove(&e.1);
            }
        }
        // Only the newest lines go into a firing.
        let n = self.entries.len();
        for e in self
            .entries
            .iter_mut()
            .take(n.saturating_sub(firing::MAX_MATCHES))
        {
            e.2 = None;
        }
    }

    /// Matches within `within` of the newest.
    fn count(&self) -> u64 {
        self.entries.len() as u64
    }
}

/// What evaluating one rule made: firings to queue and its new cursor.
pub struct Evaluation {
    pub firings: Vec<Firing>,
    pub cursor: Cursor,
    /// The read stopped at [`MAX_READ`] lines.
    pub truncated: bool,
}

/// One rule's state between evaluations.
pub struct RuleState {
    pub name: String,
    pub rule: Rule,
    windows: HashMap<String, Window>,
    /// Frequency windows were rebuilt from the index (after a start).
    rebuilt: bool,
    /// Lines read per evaluation, at most ([`MAX_READ`]; less in tests).
    max_read: usize,
}

impl RuleState {
    pub fn new(name: &str, rule: &Rule) -> RuleState {
        RuleState {
            name: name.to_owned(),
            rule: rule.clone(),
            windows: HashMap::new(),
            rebuilt: false,
            max_read: MAX_READ,
        }
    }

    fn realert(&self) -> Option<i64> {
        match (self.rule.realert, self.rule.kind) {
            (Some(r), _) => Some(duration_us(r)),
            (None, RuleKind::Flatline { within, .. }) => Some(duration_us(within)),
            (None, _) => None,
        }
    }

    /// Whether a firing of `group` at `at` is suppressed by `realert`.
    fn suppressed(&self, cursor: &Cursor, group: &str, at: i64) -> bool {
        match (self.realert(), cursor.fired.get(group)) {
            (Some(r), Some(last)) => at.saturating_sub(*last) < r,
            _ => false,
        }
    }

    fn fired(&self, cursor: &mut Cursor, group: &str, at: i64) {
        if self.realert().is_some_and(|r| r > 0) || self.is_frequency() {
            cursor.fired.insert(group.to_owned(), at);
        }
        if cursor.fired.len() > MAX_GROUPS {
            if let Some(oldest) = cursor
                .fired
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(g, _)| g.clone())
            {
                cursor.fired.remove(&oldest);
            }
        }
    }

    fn is_frequency(&self) -> bool {
        matches!(self.rule.kind, RuleKind::Frequency { .. })
    }

    /// Reads the lines committed since `cursor` (up to the index's commit
    /// `committed`) and decides what they fire.
    pub fn evaluate_lines(
        &mut self,
        searcher: &IndexSearcher,
        mut cursor: Cursor,
        committed: u64,
    ) -> anyhow::Result<Evaluation> {
        let mut out = Vec::new();
        if committed < cursor.commit {
            // A new index (the old one was moved away): its numbers start
            // again; the rule goes on from its start.
            tracing::warn!(rule = %self.name, "the index is new: the rule reads from its start");
            cursor.commit = 0;
            self.windows.clear();
        }
        if !matches!(self.rule.kind, RuleKind::Any | RuleKind::Frequency { .. })
            || cursor.commit >= committed
        {
            return Ok(Evaluation {
                firings: out,
                cursor,
                truncated: false,
            });
        }
        if self.is_frequency() && !self.rebuilt {
            self.rebuild(searcher, &cursor)?;
        }
        let mut req = request(&self.rule);
        let to = self.read_up_to(searcher, &mut req, cursor.commit, committed)?;
        req.commits = Some((cursor.commit, to));
        req.limit = self.max_read;
        let lines: Vec<IndexedLine> = searcher.search(&req)?;
        let truncated = lines.len() >= self.max_read;
        for line in &lines {
            cursor.matched += 1;
            cursor.max_ts = cursor.max_ts.max(micros(line.ts));
            self.take(line, &mut cursor, &mut out);
        }
        cursor.commit = to;
        // A group's last firing matters for realert, and for a frequency
        // window rebuilt after a restart (within of the newest line).
        let keep = match self.rule.kind {
            RuleKind::Frequency { within, .. } => {
                self.realert().unwrap_or(0).max(duration_us(within))
            }
            _ => self.realert().unwrap_or(0),
        };
        let horizon = cursor.max_ts.saturating_sub(keep);
        cursor.fired.retain(|_, t| *t >= horizon);
        Ok(Evaluation {
            firings: out,
            cursor,
            truncated,
        })
    }

    /// The end of the commit range to read now: `committed`, or less when
    /// more than [`MAX_READ`] matching lines were committed since `from`
    /// (the largest end whose range holds at most that many, found by
    /// counting; at least one commit number further).
    fn read_up_to(
        &self,
        searcher: &IndexSearcher,
        req: &mut SearchRequest,
        from: u64,
        committed: u64,
    ) -> anyhow::Result<u64> {
        let mut count = |to: u64| -> anyhow::Result<u64> {
            req.commits = Some((from, to));
            Ok(searcher.count(req)?)
        };
        let max = self.max_read as u64;
        if count(committed)? <= max {
            return Ok(committed);
        }
        let (mut lo, mut hi) = (from + 1, committed);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if count(mid)? <= max {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// One matching line of an `any` or `frequency` rule.
    fn take(&mut self, line: &IndexedLine, cursor: &mut Cursor, out: &mut Vec<Firing>) {
        let group = group_of(self.rule.group_by.as_ref(), line);
        let ts = micros(line.ts);
        let json = rill_index::hit_json(line, &[], None);
        match self.rule.kind {
            RuleKind::Any => {
                if self.suppressed(cursor, &group, ts) {
                    return;
                }
                self.fired(cursor, &group, ts);
                out.push(Firing {
                    id: firing::id(&[&self.name, &identity(line)]),
                    rule: self.name.clone(),
                    kind: "any".into(),
                    fired_at: Utc::now(),
                    group,
                    count: 1,
                    matches: firing::bounded(vec![json]),
                });
            }
            RuleKind::Frequency { count, within } => {
                if self.windows.len() >= MAX_GROUPS && !self.windows.contains_key(&group) {
                    let oldest = self
                        .windows
                        .iter()
                        .min_by_key(|(_, w)| w.entries.back().map_or(i64::MIN, |e| e.0))
                        .map(|(g, _)| g.clone());
                    if let Some(g) = oldest {
                        self.windows.remove(&g);
                    }
                }
                let w = self.windows.entry(group.clone()).or_default();
                w.push(ts, identity(line), json, duration_us(within));
                if w.count() < count {
                    return;
                }
                let w = self.windows.remove(&group).unwrap_or_default();
                if self.suppressed(cursor, &group, ts) {
                    return;
                }
                self.fired(cursor, &group, ts);
                let first = w.entries.front().map(|e| e.1.as_str()).unwrap_or_default();
                let last = w.entries.back().map(|e| e.1.as_str()).unwrap_or_default();
                out.push(Firing {
                    id: firing::id(&[&self.name, &group, first, last]),
                    rule: self.name.clone(),
                    kind: "frequency".into(),
                    fired_at: Utc::now(),
                    group,
                    count: w.count(),
                    matches: firing::bounded(w.entries.into_iter().filter_map(|e| e.2).collect()),
                });
            }
            _ => {}
        }
    }

    /// Frequency windows as they stood at the cursor: the matches of the
    /// last `within` before its newest line, after each group's last
    /// firing.
    fn rebuild(&mut self, searcher: &IndexSearcher, cursor: &Cursor) -> anyhow::Result<()> {
        self.rebuilt = true;
        let RuleKind::Frequency { within, .. } = self.rule.kind else {
            return Ok(());
        };
        if cursor.commit == 0 || cursor.max_ts == 0 {
            return Ok(());
        }
        let w = duration_us(within);
        let mut req = request(&self.rule);
        req.commits = Some((0, cursor.commit));
        req.since = Some(time(cursor.max_ts.saturating_sub(w)));
        for line in searcher.search(&req)? {
            let group = group_of(self.rule.group_by.as_ref(), &line);
            let ts = micros(line.ts);
            if cursor.fired.get(&group).is_some_and(|f| ts <= *f) {
                continue;
            }
            let json = rill_index::hit_json(&line, &[], None);
            self.windows
                .entry(group)
                .or_default()
                .push(ts, identity(&line), json, w);
        }
        Ok(())
    }

    /// A flatline's or heartbeat's window due at `now`, if one is: its end.
    fn due_window(&self, cursor: &Cursor, now: DateTime<Utc>) -> Option<i64> {
        let step = match self.rule.kind {
            RuleKind::Heartbeat { every } => duration_us(every),
            RuleKind::Flatline { within, .. } => {
                duration_us(within / 10).clamp(1_000_000, 60_000_000)
            }
            _ => return None,
        };
        // Windows end at the rule's start plus whole steps.
        let ready = micros(now).saturating_sub(duration_us(GRACE));
        let start = micros(cursor.since);
        let end = ready - ready.saturating_sub(start).rem_euclid(step.max(1));
        let first = match self.rule.kind {
            // A heartbeat's first beat ends its first whole period.
            RuleKind::Heartbeat { .. } => micros(cursor.since).saturating_add(step),
            // A flatline judges only windows wholly after the rule began.
            RuleKind::Flatline { within, .. } => {
                micros(cursor.since).saturating_add(duration_us(within))
            }
            _ => return None,
        };
        (end >= first && cursor.window.is_none_or(|w| end > w)).then_some(end)
    }

    /// Evaluates a flatline's or heartbeat's window if one is due.
    pub fn evaluate_time(
        &mut self,
        searcher: &IndexSearcher,
        cfg: &Config,
        mut cursor: Cursor,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Evaluation> {
        let mut out = Vec::new();
        if let Some(end) = self.due_window(&cursor, now) {
            cursor.window = Some(end);
            match self.rule.kind {
                RuleKind::Heartbeat { every } => {
                    let mut req = request(&self.rule);
                    req.since = Some(time(end.saturating_sub(duration_us(every))));
                    req.until = Some(time(end));
                    let count = searcher.count(&req)?;
                    out.push(Firing {
                        id: firing::id(&[&self.name, &end.to_string()]),
                        rule: self.name.clone(),
                        kind: "heartbeat".into(),
                        fired_at: Utc::now(),
                        group: String::new(),
                        count,
                        matches: Vec::new(),
                    });
                }
                RuleKind::Flatline { count: min, within } => {
                    for group in self.flatline_groups(cfg) {
                        let mut req = request(&self.rule);
                        req.since = Some(time(end.saturating_sub(duration_us(within))));
                        req.until = Some(time(end));
                        match self.rule.group_by {
                            Some(GroupBy::Host) => req.host = Some(group.clone()),
                            Some(GroupBy::Log) => req.log = Some(group.clone()),
                            _ => {}
                        }
                        let n = searcher.count(&req)?;
                        if n >= min || self.suppressed(&cursor, &group, end) {
                            continue;
                        }
                        self.fired(&mut cursor, &group, end);
                        out.push(Firing {
                            id: firing::id(&[&self.name, &group, &end.to_string()]),
                            rule: self.name.clone(),
                            kind: "flatline".into(),
                            fired_at: Utc::now(),
                            group,
                            count: n,
                            matches: Vec::new(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(Evaluation {
            firings: out,
            cursor,
            truncated: false,
        })
    }

    /// The groups a flatline watches: the configured hosts or logs the
    /// rule covers (a group that never wrote is quiet too), or one group.
    fn flatline_groups(&self, cfg: &Config) -> Vec<String> {
        let logs: Vec<&rill_config::Log> = cfg
            .logs
            .values()
            .filter(|l| self.rule.logs.as_ref().is_none_or(|v| v.contains(&l.name)))
            .collect();
        match self.rule.group_by {
            Some(GroupBy::Log) => logs.iter().map(|l| l.name.clone()).collect(),
            Some(GroupBy::Host) => cfg
                .hosts
                .keys()
                .filter(|h| self.rule.hosts.as_ref().is_none_or(|v| v.contains(h)))
                .filter(|h| {
                    logs.iter()
                        .any(|l| cfg.logs_for(h).any(|x| x.name == l.name))
                })
                .cloned()
                .collect(),
            _ => vec![String::new()],
        }
    }
}

/// A new rule's cursor: it starts at the index's current commit (a rule
/// added today does not fire on last year's lines; `rill rules test` runs
/// it over them).
pub fn new_cursor(name: &str, committed: u64, now: DateTime<Utc>) -> Cursor {
    Cursor {
        rule: name.to_owned(),
        commit: committed,
        matched: 0,
        since: now,
        window: None,
        fired: Default::default(),
        max_ts: 0,
    }
}

/// What `rule` would fire over the lines since `since` (`rill rules
/// test`): `any` and `frequency` over those lines in order, a flatline or
/// heartbeat over the window that ended now. Nothing is queued.
pub fn test(
    searcher: &IndexSearcher,
    cfg: &Config,
    name: &str,
    rule: &Rule,
    since: DateTime<Utc>,
) -> anyhow::Result<(u64, Vec<Firing>)> {
    let mut state = RuleState::new(name, rule);
    state.rebuilt = true;
    let now = Utc::now();
    let mut cursor = new_cursor(name, 0, since);
    let mut out = Vec::new();
    match rule.kind {
        RuleKind::Any | RuleKind::Frequency { .. } => {
            let mut req = request(rule);
            req.since = Some(since);
            for line in searcher.search(&req)? {
                cursor.matched += 1;
                state.take(&line, &mut cursor, &mut out);
            }
        }
        RuleKind::Flatline { within, .. } | RuleKind::Heartbeat { every: within } => {
            // The window that ends now, whenever the rule began.
            let cursor = Cursor {
                since: now
                    - chrono::Duration::from_std(within).unwrap_or_default()
                    - chrono::Duration::from_std(GRACE).unwrap_or_default()
                    - chrono::Duration::days(3650),
                ..new_cursor(name, 0, now)
            };
            out = state.evaluate_time(searcher, cfg, cursor, now)?.firings;
        }
    }
    Ok((cursor.matched, out))
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
