//! Rules: queries evaluated on what the index committed, firings queued on
//! disk, actions run with limits.
//!
//! ```text
//! the parser's index commits (events carry their commit number)
//!   -> rules thread, every RULES_TICK: per rule, the lines committed since
//!      its cursor (engine.rs: any, frequency), or a wall-time window that
//!      ended (flatline, heartbeat) -> firings (firing.rs, stable ids)
//!   -> store.rs: queued in <state_dir>/rules/firings.log with the rule's
//!      new cursor, synced; then published on alert/<rule>
//!   -> each action of each firing, at most MAX_RUNNING per rule at once,
//!      one thread per attempt (action.rs: command or webhook), its outcome
//!      appended to the store; retries after backoff
//! ```
//!
//! The rules run in the parser process, beside the index thread and never
//! in its way: a slow action holds only its own rule's queue, and a rule
//! whose queue holds [`QUEUE_MAX`] unfinished firings stops reading lines
//! (its cursor waits; nothing is skipped) until it drains.

pub mod action;
pub mod engine;
pub mod firing;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rill_bus::Publisher;
use rill_config::rules::{Action, Rule};
use rill_config::Config;
use rill_index::IndexSearcher;
use rill_proto::Topic;
use tracing::{error, info, warn};

pub use crate::firing::Firing;
use crate::firing::{ActionState, State};
use crate::store::Store;

/// Actions of one rule running at once, at most.
pub const MAX_RUNNING: usize = 4;
/// Unfinished firings of one rule, at most: beyond, the rule waits.
pub const QUEUE_MAX: usize = 10_000;
/// How often the rules thread looks for new commits and due actions.
const RULES_TICK: Duration = Duration::from_millis(100);
/// At shutdown, how long running actions get to report.
const STOP_WAIT: Duration = Duration::from_secs(3);

/// Where the rules keep their store.
pub fn dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("rules")
}

/// How an action is named in the history.
pub fn describe(a: &Action) -> String {
    match a {
        Action::Command(c) => format!("command {}", c.argv.join(" ")),
        Action::Webhook(w) => format!("webhook {}", redact(&w.url)),
    }
}

/// A webhook's URL as shown: scheme and host only (a user, password, path
/// or query may be the hook's secret).
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let more = if rest.len() > host.len() { "/..." } else { "" };
    format!("{scheme}://{host}{more}")
}

/// A rule's query, checked; the error as `check-config` words it.
pub fn check(name: &str, rule: &Rule) -> Result<(), String> {
    rill_index::query::check_text(&rule.query.text).map_err(|e| {
        let key = match &rule.query.saved {
            Some(saved) => format!("queries.{saved}"),
            None => format!("rules.{name}.query"),
        };
        let at = e
            .position
            .map(|p| format!(" at position {p}"))
            .unwrap_or_default();
        format!("{key}: expected {}{at}", e.expected)
    })
}

/// The rules thread of the parser process.
pub struct Rules {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Rules {
    /// Starts the thread when the config has rules.
    pub fn start(cfg: &Config, ctx: &zmq::Context) -> anyhow::Result<Option<Rules>> {
        if cfg.rules.is_empty() {
            return Ok(None);
        }
        let store = Store::open(&dir(cfg))?;
        let stop = Arc::new(AtomicBool::new(false));
        let theirs = Arc::clone(&stop);
        let cfg = cfg.clone();
        let ctx = ctx.clone();
        let thread = std::thread::Builder::new()
            .name("rules".into())
            .spawn(move || {
                if let Err(e) = run(&cfg, &ctx, store, &theirs) {
                    error!("the rules stopped: {e:#}");
                }
            })
            .context("could not start the rules thread")?;
        Ok(Some(Rules {
            stop,
            thread: Some(thread),
        }))
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An attempt's end, from its thread.
struct Done {
    id: String,
    index: usize,
    outcome: action::Outcome,
}

/// What the rules thread runs on.
struct Runner<'a> {
    cfg: &'a Config,
    store: Store,
    states: Vec<engine::RuleState>,
    searcher: Option<IndexSearcher>,
    /// The index commit last read.
    seen: Option<u64>,
    live: Option<Publisher>,
    running: HashMap<String, usize>,
    in_flight: HashSet<(String, usize)>,
    done_tx: Sender<Done>,
    cancel: Arc<AtomicBool>,
    /// Rules whose queue was full, reported once per episode.
    full: HashSet<String>,
}

fn run(cfg: &Config, ctx: &zmq::Context, store: Store, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut states = Vec::new();
    for (name, rule) in &cfg.rules {
        match check(name, rule) {
            Ok(()) => states.push(engine::RuleState::new(name, rule)),
            Err(e) => error!(rule = %name, "rule not run: {e}"),
        }
    }
    let live = Publisher::connect(ctx, &cfg.bus_endpoint())
        .map_err(|e| warn!("rules: no alert/ stream: {e}"))
        .ok();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut r = Runner {
        cfg,
        store,
        states,
        searcher: None,
        seen: None,
        live,
        running: HashMap::new(),
        in_flight: HashSet::new(),
        done_tx,
        cancel: Arc::new(AtomicBool::new(false)),
        full: HashSet::new(),
    };
    info!(rules = r.states.len(), "rules running");
    while !stop.load(Ordering::Acquire) {
        r.results(&done_rx, RULES_TICK)?;
        r.evaluate()?;
        r.dispatch()?;
    }
    r.cancel.store(true, Ordering::Release);
    let deadline = Instant::now() + STOP_WAIT;
    while !r.in_flight.is_empty() && Instant::now() < deadline {
        r.results(&done_rx, Duration::from_millis(50))?;
    }
    r.store.sync()?;
    info!("rules stopped");
    Ok(())
}

impl Runner<'_> {
    /// Outcomes that arrived (waiting up to `wait` for the first).
    fn results(&mut self, rx: &Receiver<Done>, wait: Duration) -> anyhow::Result<()> {
        let mut next = rx.recv_timeout(wait).ok();
        while let Some(d) = next {
            self.finish(d)?;
            next = rx.try_recv().ok();
        }
        self.store.sync()
    }

    fn finish(&mut self, d: Done) -> anyhow::Result<()> {
        self.in_flight.remove(&(d.id.clone(), d.index));
        let Some(record) = self.store.contents.records.get(&d.id) else {
            return Ok(());
        };
        let rule = record.firing.rule.clone();
        if let Some(n) = self.running.get_mut(&rule) {
            *n = n.saturating_sub(1);
        }
        let Some(mut state) = record.actions.get(d.index).cloned() else {
            return Ok(());
        };
        if self.cancel.load(Ordering::Acquire) && d.outcome.status != action::Status::Success {
            // Stopped by our shutdown: not the action's failure; it runs
            // again after the restart, this attempt not counted.
            state.state = State::Pending;
            state.attempts = state.attempts.saturating_sub(1);
            return self.store.set_action(&d.id, d.index, state);
        }
        let retries = self
            .cfg
            .rules
            .get(&rule)
            .and_then(|r| r.actions.get(d.index))
            .map_or(0, |a| match a {
                Action::Command(c) => c.retries,
                Action::Webhook(w) => w.retries,
            });
        state.state = match d.outcome.status {
            action::Status::Success => State::Success,
            _ if state.attempts <= retries => {
                state.next_at = Some(
                    Utc::now()
                        + chrono::Duration::from_std(action::backoff(state.attempts))
                            .unwrap_or_default(),
                );
                State::Pending
            }
            action::Status::Timeout => State::Timeout,
            action::Status::Failure => State::Failure,
        };
        if state.state.finished() {
            state.next_at = None;
        }
        if state.state != State::Success {
            warn!(
                rule = %rule, firing = %d.id, action = %state.action,
                attempt = state.attempts, status = ?d.outcome.status,
                "an action failed: {}", d.outcome.output.lines().last().unwrap_or_default()
            );
        }
        state.last = Some(d.outcome);
        self.store.set_action(&d.id, d.index, state)
    }

    /// Each rule's new lines or due window; the firings queued and synced,
    /// then published.
    fn evaluate(&mut self) -> anyhow::Result<()> {
        let index_dir = self.cfg.index_dir();
        if self.searcher.is_none() {
            self.searcher = IndexSearcher::open(&index_dir).ok();
        }
        let Some(searcher) = &self.searcher else {
            return Ok(());
        };
        let committed = searcher.committed()?;
        if self.seen != Some(committed) {
            searcher.reload()?;
        }
        let now = Utc::now();
        let mut new = Vec::new();
        for state in &mut self.states {
            let cursor = match self.store.cursor(&state.name) {
                Some(c) => c.clone(),
                None => {
                    let c = engine::new_cursor(&state.name, committed, now);
                    self.store.set_cursor(c.clone())?;
                    c
                }
            };
            if self.store.unfinished(&state.name) >= QUEUE_MAX {
                if self.full.insert(state.name.clone()) {
                    warn!(rule = %state.name, "the rule's queue is full ({QUEUE_MAX} firings unfinished): its lines wait");
                }
                continue;
            }
            self.full.remove(&state.name);
            // (Nothing to read returns at once: the cursor is at `committed`.)
            let evaluated = state
                .evaluate_lines(searcher, cursor.clone(), committed)
                .and_then(|e| {
                    let t = state.evaluate_time(searcher, self.cfg, e.cursor.clone(), now)?;
                    Ok(engine::Evaluation {
                        firings: e.firings.into_iter().chain(t.firings).collect(),
                        cursor: t.cursor,
                        truncated: e.truncated,
                    })
                });
            let e = match evaluated {
                Ok(e) => e,
                Err(err) => {
                    warn!(rule = %state.name, "rule not evaluated: {err:#}");
                    continue;
                }
            };
            if e.truncated {
                warn!(rule = %state.name, "one commit held more matching lines than one evaluation reads; the rest were not evaluated");
            }
            let actions: Vec<ActionState> = state
                .rule
                .actions
                .iter()
                .map(|a| ActionState {
                    action: describe(a),
                    state: State::Pending,
                    attempts: 0,
                    next_at: None,
                    last: None,
                })
                .collect();
            for f in e.firings {
                if self.store.fire(f.clone(), actions.clone())? {
                    new.push(f);
                }
            }
            if e.cursor != cursor {
                self.store.set_cursor(e.cursor)?;
            }
        }
        self.seen = Some(committed);
        self.store.sync()?;
        if let Some(live) = &mut self.live {
            live.hear();
            for f in &new {
                let topic = Topic::Alert { rule: &f.rule }.to_string();
                if live.wanted(topic.as_bytes()) {
                    if let Ok(json) = serde_json::to_vec(f) {
                        live.send(&[topic.as_bytes(), &json]);
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts the actions that are due, as far as each rule has room.
    fn dispatch(&mut self) -> anyhow::Result<()> {
        for (_, id, index) in self.store.due(Utc::now()) {
            if self.in_flight.contains(&(id.clone(), index)) {
                continue;
            }
            let Some(record) = self.store.contents.records.get(&id) else {
                continue;
            };
            let rule_name = record.firing.rule.clone();
            let running = self.running.get(&rule_name).copied().unwrap_or(0);
            if running >= MAX_RUNNING {
                continue;
            }
            let mut state = record.actions[index].clone();
            let action = self
                .cfg
                .rules
                .get(&rule_name)
                .and_then(|r| r.actions.get(index))
                .filter(|a| describe(a) == state.action)
                .cloned();
            let Some(action) = action else {
                // The config changed since it fired: its action is gone.
                let now = Utc::now();
                state.state = State::Failure;
                state.last = Some(action::Outcome {
                    status: action::Status::Failure,
                    exit_code: None,
                    signal: None,
                    http_status: None,
                    output: "not run: the rule or this action is no longer in the config".into(),
                    started_at: now,
                    finished_at: now,
                });
                self.store.set_action(&id, index, state)?;
                continue;
            };
            let body = serde_json::to_vec(&record.firing)?;
            state.state = State::Running;
            state.attempts += 1;
            state.next_at = None;
            self.store.set_action(&id, index, state)?;
            self.running.insert(rule_name.clone(), running + 1);
            self.in_flight.insert((id.clone(), index));
            let key = (id.clone(), index);
            let tx = self.done_tx.clone();
            let cancel = Arc::clone(&self.cancel);
            let spawned = std::thread::Builder::new()
                .name("rule-action".into())
                .spawn(move || {
                    let f = action::Firing {
                        rule: &rule_name,
                        id: &id,
                        body: &body,
                    };
                    let outcome = match &action {
                        Action::Command(c) => action::run_command(c, &f, &cancel),
                        Action::Webhook(w) => action::post_webhook(w, &f),
                    };
                    let _ = tx.send(Done { id, index, outcome });
                });
            if let Err(e) = spawned {
                warn!("could not start an action: {e}");
                let now = Utc::now();
                let _ = self.done_tx.send(Done {
                    id: key.0,
                    index: key.1,
                    outcome: action::Outcome {
                        status: action::Status::Failure,
                        exit_code: None,
                        signal: None,
                        http_status: None,
                        output: format!("could not start a thread: {e}"),
                        started_at: now,
                        finished_at: now,
                    },
                });
            }
        }
        self.store.sync()
    }
}

const STATES: [State; 5] = [
    State::Pending,
    State::Running,
    State::Success,
    State::Failure,
    State::Timeout,
];

/// Each rule as `rill rules --json` prints it and the API's `/rules`
/// serves it: matched lines, firings by state, whether its queue is full,
/// a query error, and its last firing.
pub fn summary(cfg: &Config) -> anyhow::Result<Vec<serde_json::Value>> {
    let store = crate::read(&crate::dir(cfg))?;
    let counts = store.counts();
    Ok(cfg
        .rules
        .iter()
        .map(|(name, rule)| {
            let by = counts.get(name.as_str());
            let n = |s: State| by.and_then(|m| m.get(&s)).copied().unwrap_or(0);
            let firings: serde_json::Map<String, serde_json::Value> = STATES
                .iter()
                .map(|s| (s.name().to_owned(), n(*s).into()))
                .collect();
            let unfinished = n(State::Pending) + n(State::Running);
            let last = store.history(Some(name), 1).first().map(|r| r.json());
            serde_json::json!({
                "rule": name,
                "kind": rule.kind.name(),
                "query": rule.query.text,
                "matched": store.cursors.get(name).map_or(0, |c| c.matched),
                "firings": firings,
                "queue_full": unfinished as usize >= crate::QUEUE_MAX,
                "error": crate::check(name, rule).err(),
                "last": last,
            })
        })
        .collect())
}

/// The store in `dir`, read without writing (for `rill rules` and the API).
pub fn read(dir: &Path) -> anyhow::Result<store::Contents> {
    store::read(dir)
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
