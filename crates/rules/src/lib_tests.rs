//! The rules thread as the parser runs it, on a real index with real
//! commands: a rule's hung actions take at most [`MAX_RUNNING`] places and
//! hold back no other rule; a rule with [`QUEUE_MAX`] unfinished firings is
//! shown `queue_full` and its new lines wait (nothing skipped) until one
//! finishes.
//!
//! A hung action is `flock --no-fork --shared LOCK /bin/true`: it waits
//! while the test holds LOCK, and the processes with LOCK on their command
//! line are the ones running (flock forks nothing; its /bin/true replaces
//! it and exits once the lock is let go).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use chrono::Utc;
use rill_index::{IndexWriter, IndexedLine};
use rill_test_support::wait_until;
use serde_json::Value;

use super::*;
use crate::action::tests::processes_with_arg;

/// Long enough for a busy 2-core machine; each wait ends as soon as its
/// condition holds.
const WITHIN: Duration = Duration::from_secs(30);

/// A config, an index the test writes to, and the rules thread over them.
struct Fixture {
    /// Dropped first (fields drop in order): stops the thread, killing
    /// running commands, before the context it uses goes.
    _rules: Option<Rules>,
    _ctx: zmq::Context,
    cfg: Config,
    index: IndexWriter,
    /// Lines added so far (each gets its own offset, so its own identity).
    added: u64,
    /// Held (exclusively) until [`Fixture::release`]; hung actions wait
    /// for a shared lock on it.
    lock: Option<File>,
    /// The lock's path: on the command line of every hung action.
    marker: String,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Starts the rules of `rules` (YAML under `rules:`, where `{hang}`
    /// stands for a hung action's argv) and waits until each has its
    /// cursor: lines committed after that are theirs.
    fn start(rules: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // Commands run as nobody (we are root): they must open the lock.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("hang.lock");
        let lock = File::create(&path).unwrap();
        // SAFETY: flock(2) on a descriptor we own.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let marker = path.display().to_string();
        let hang = format!("[/usr/bin/flock, --no-fork, --shared, '{marker}', /bin/true]");
        let file = dir.path().join("rill.yaml");
        let text = format!(
            "hosts: {{web01: {{address: 127.0.0.1, user: u, auth: {{agent: true}}}}}}\n\
             logs: {{app: {{path: /var/log/app.log, hosts: all}}}}\n\
             rules:\n{}",
            rules.replace("{hang}", &hang)
        );
        let cfg = Config::from_yaml(&file, &text).unwrap();
        std::fs::create_dir_all(cfg.index_dir()).unwrap();
        let index = IndexWriter::open(&cfg.index_dir()).unwrap();
        let ctx = zmq::Context::new();
        let rules = Rules::start(&cfg, &ctx).unwrap();
        let f = Fixture {
            _rules: rules,
            _ctx: ctx,
            cfg,
            index,
            added: 0,
            lock: Some(lock),
            marker,
            _dir: dir,
        };
        assert!(
            wait_until(WITHIN, || {
                let store = crate::read(&crate::dir(&f.cfg)).unwrap();
                f.cfg.rules.keys().all(|r| store.cursors.contains_key(r))
            }),
            "the rules never started"
        );
        f
    }

    /// Indexes `bodies` in one commit.
    fn commit<S: AsRef<str>>(&mut self, bodies: impl IntoIterator<Item = S>) {
        for body in bodies {
            let offset = self.added * 100;
            self.added += 1;
            self.index
                .add(&IndexedLine {
                    ts: Utc::now(),
                    host: "web01".into(),
                    log: "app".into(),
                    path: "/var/log/app.log".into(),
                    file_id: Default::default(),
                    offset,
                    end_offset: offset + 1,
                    body: body.as_ref().to_owned(),
                    fields: Default::default(),
                    parse_error: false,
                    collector: String::new(),
                })
                .unwrap();
        }
        self.index.commit().unwrap();
    }

    /// [`summary`] by rule, as `rill rules --json` shows it.
    fn summary(&self) -> BTreeMap<String, Value> {
        summary(&self.cfg)
            .unwrap()
            .into_iter()
            .map(|r| (r["rule"].as_str().unwrap().to_owned(), r))
            .collect()
    }

    /// The bodies of `rule`'s firings' first matches.
    fn fired_bodies(&self, rule: &str) -> Vec<String> {
        crate::read(&crate::dir(&self.cfg))
            .unwrap()
            .history(Some(rule), usize::MAX)
            .iter()
            .map(|r| r.firing.matches[0]["body"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Hung actions running now.
    fn hung(&self) -> usize {
        processes_with_arg(&self.marker).len()
    }

    /// Lets every hung action end (and every later one end at once).
    fn release(&mut self) {
        self.lock = None;
    }
}

/// `firings` of one rule's summary: (pending, running, success).
fn states(rule: &Value) -> (u64, u64, u64) {
    let n = |s: &str| rule["firings"][s].as_u64().unwrap();
    (n("pending"), n("running"), n("success"))
}

#[test]
fn a_rule_runs_four_actions_at_once_and_its_hung_ones_hold_back_no_other_rule() {
    let mut f = Fixture::start(
        "  slow: {query: SLOW, kind: any, actions: [{command: {hang}, timeout: 1h}]}\n\
         \x20 quick: {query: QUICK, kind: any, actions: [{command: [/bin/true]}]}\n",
    );
    f.commit((0..10).map(|i| format!("SLOW {i}")));
    assert!(
        wait_until(WITHIN, || f.hung() >= MAX_RUNNING),
        "{} hung actions running",
        f.hung()
    );

    // Another rule's lines, committed while slow's four hang: they fire and
    // their actions run to the end.
    f.commit((0..3).map(|i| format!("QUICK {i}")));
    assert!(
        wait_until(WITHIN, || states(&f.summary()["quick"]) == (0, 0, 3)),
        "quick: {}",
        f.summary()["quick"]
    );
    let mut quick = f.fired_bodies("quick");
    quick.sort();
    assert_eq!(quick, ["QUICK 0", "QUICK 1", "QUICK 2"]);

    // Meanwhile slow fired for each line, but runs four: the rules thread
    // went round again (quick ran) and started none of the other six.
    assert_eq!(states(&f.summary()["slow"]), (6, 4, 0));
    assert_eq!(f.hung(), MAX_RUNNING);
    assert_eq!(f.summary()["slow"]["queue_full"], false);

    // Released, the six run too, never more than four at once.
    f.release();
    let mut peak = 0;
    assert!(
        wait_until(WITHIN, || {
            peak = peak.max(f.hung());
            states(&f.summary()["slow"]) == (0, 0, 10)
        }),
        "slow: {}",
        f.summary()["slow"]
    );
    assert!(peak <= MAX_RUNNING, "{peak} ran at once");
    assert!(wait_until(WITHIN, || f.hung() == 0));
}

#[test]
fn a_full_queue_is_shown_and_its_lines_wait_until_it_drains() {
    let mut f = Fixture::start(
        "  flood: {query: FLOOD, kind: any, actions: [{command: {hang}, timeout: 1h}]}\n\
         \x20 other: {query: OTHER, kind: any, actions: [{command: [/bin/true]}]}\n",
    );
    f.commit((0..QUEUE_MAX).map(|i| format!("FLOOD {i}")));
    assert!(
        wait_until(WITHIN, || {
            let flood = &f.summary()["flood"];
            states(flood) == (QUEUE_MAX as u64 - 4, 4, 0)
        }),
        "flood: {}",
        f.summary()["flood"]
    );
    let flood = &f.summary()["flood"];
    assert_eq!(flood["queue_full"], true, "{flood}");
    assert_eq!(flood["matched"], QUEUE_MAX);

    // Five more of its lines wait; the other rule goes on.
    f.commit(
        (0..5)
            .map(|i| format!("FLOOD late {i}"))
            .chain(["OTHER".into()]),
    );
    assert!(
        wait_until(WITHIN, || states(&f.summary()["other"]) == (0, 0, 1)),
        "other: {}",
        f.summary()["other"]
    );
    let flood = &f.summary()["flood"];
    assert_eq!(flood["matched"], QUEUE_MAX, "the late lines wait");
    assert_eq!(flood["queue_full"], true);
    assert_eq!(states(flood), (QUEUE_MAX as u64 - 4, 4, 0));

    // One firing done is room: the late lines are read, each fires once.
    f.release();
    assert!(
        wait_until(WITHIN, || f.summary()["flood"]["matched"]
            == QUEUE_MAX as u64 + 5),
        "flood: {}",
        f.summary()["flood"]
    );
    let mut late: Vec<String> = f
        .fired_bodies("flood")
        .into_iter()
        .filter(|b| b.starts_with("FLOOD late"))
        .collect();
    late.sort();
    assert_eq!(
        late,
        (0..5)
            .map(|i| format!("FLOOD late {i}"))
            .collect::<Vec<_>>()
    );
}
