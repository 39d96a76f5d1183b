//! The engine on a real index: lines committed in two commits, each read
//! once through the commit numbers; frequency per group with realert;
//! windows rebuilt after a restart decide as before it.

use chrono::{Duration as Span, TimeZone, Utc};
use rill_config::rules::{GroupBy, Rule, RuleKind, RuleQuery};
use rill_index::{IndexSearcher, IndexWriter, IndexedLine};
use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

fn line(host: &str, offset: u64, secs: i64, body: &str) -> IndexedLine {
    IndexedLine {
        ts: Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap(),
        host: host.into(),
        log: "app".into(),
        path: "/var/log/app.log".into(),
        file_id: Default::default(),
        offset,
        end_offset: offset + 1,
        body: body.into(),
        fields: Default::default(),
        parse_error: false,
        collector: String::new(),
    }
}

fn rule(kind: RuleKind, realert: Option<Duration>) -> Rule {
    Rule {
        query: RuleQuery {
            text: "fail".into(),
            saved: None,
        },
        logs: Some(vec!["app".into()]),
        hosts: None,
        kind,
        group_by: Some(GroupBy::Host),
        realert,
        actions: vec![],
    }
}

#[test]
fn each_committed_line_is_read_once_and_frequency_counts_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    let s = IndexSearcher::open(dir.path()).unwrap();
    let r = rule(
        RuleKind::Frequency {
            count: 3,
            within: Duration::from_secs(60),
        },
        Some(Duration::from_secs(3600)),
    );
    let mut state = RuleState::new("bursts", &r);
    let mut cursor = new_cursor("bursts", s.committed().unwrap(), Utc::now());

    // a: three fails in a minute, b: two; an unrelated line.
    for (i, (host, secs)) in [("a", 0), ("a", 10), ("b", 11), ("a", 20), ("b", 12)]
        .into_iter()
        .enumerate()
    {
        w.add(&line(host, i as u64 * 10, secs, "login fail"))
            .unwrap();
    }
    w.add(&line("a", 100, 21, "login ok")).unwrap();
    w.commit().unwrap();
    let committed = s.committed().unwrap();
    s.reload().unwrap();
    let e = state.evaluate_lines(&s, cursor.clone(), committed).unwrap();
    assert_eq!(e.firings.len(), 1);
    assert_eq!((e.firings[0].group.as_str(), e.firings[0].count), ("a", 3));
    assert_eq!(e.cursor.matched, 5);
    cursor = e.cursor;
    // The same commit again: nothing new is read.
    let again = state.evaluate_lines(&s, cursor.clone(), committed).unwrap();
    assert!(again.firings.is_empty() && again.cursor.matched == 5);

    // A restart: windows come back from the index (b's two count), a's
    // realert still holds.
    let mut restarted = RuleState::new("bursts", &r);
    for (i, host) in ["a", "a", "a", "b"].into_iter().enumerate() {
        w.add(&line(
            host,
            200 + i as u64 * 10,
            30 + i as i64,
            "fail again",
        ))
        .unwrap();
    }
    w.commit().unwrap();
    let committed = s.committed().unwrap();
    s.reload().unwrap();
    let e = restarted.evaluate_lines(&s, cursor, committed).unwrap();
    let groups: Vec<(&str, u64)> = e
        .firings
        .iter()
        .map(|f| (f.group.as_str(), f.count))
        .collect();
    assert_eq!(groups, [("b", 3)], "a is held by realert");
    assert_eq!(e.firings[0].matches.len(), 3);

    // `rill rules test` over every line, from a fresh cursor: a once (its
    // second three within realert), b once.
    let (matched, fired) = test(
        &s,
        &test_config(),
        "bursts",
        &r,
        Utc.timestamp_opt(1_700_000_000, 0).unwrap() - Span::seconds(1),
    )
    .unwrap();
    assert_eq!(matched, 9);
    assert_eq!(fired.len(), 2);
}

#[test]
fn any_fires_per_line_with_ids_from_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    let s = IndexSearcher::open(dir.path()).unwrap();
    let r = rule(RuleKind::Any, None);
    let mut state = RuleState::new("each", &r);
    let cursor = new_cursor("each", s.committed().unwrap(), Utc::now());
    w.add(&line("a", 0, 0, "fail one")).unwrap();
    w.add(&line("a", 10, 1, "fail two")).unwrap();
    w.commit().unwrap();
    let committed = s.committed().unwrap();
    s.reload().unwrap();
    let e = state.evaluate_lines(&s, cursor.clone(), committed).unwrap();
    assert_eq!(e.firings.len(), 2);
    // Made again from the same lines (a crash before the cursor was
    // stored): the same ids.
    let again = RuleState::new("each", &r)
        .evaluate_lines(&s, cursor, committed)
        .unwrap();
    let ids = |v: &[Firing]| v.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&e.firings), ids(&again.firings));
    assert_ne!(e.firings[0].id, e.firings[1].id);
    assert_eq!(e.firings[0].matches[0]["body"], "fail one");
}

fn test_config() -> Config {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rill.yaml");
    std::fs::write(
        &file,
        "hosts: {a: {address: 127.0.0.1, user: u, auth: {agent: true}}}\nlogs: {app: {path: /x, hosts: all}}\n",
    )
    .unwrap();
    Config::load_for_client(&file).unwrap()
}

#[test]
fn a_long_backlog_is_read_in_parts_and_a_new_index_starts_the_rule_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    let s = IndexSearcher::open(dir.path()).unwrap();
    let r = rule(RuleKind::Any, None);
    let mut state = RuleState::new("each", &r);
    state.max_read = 4;
    let mut cursor = new_cursor("each", s.committed().unwrap(), Utc::now());
    // Five commits of three matching lines: read four lines at most a time.
    for c in 0..5u64 {
        for i in 0..3u64 {
            w.add(&line("a", c * 100 + i * 10, (c * 3 + i) as i64, "fail"))
                .unwrap();
        }
        w.commit().unwrap();
    }
    let committed = s.committed().unwrap();
    s.reload().unwrap();
    let mut fired = BTreeSet::new();
    let mut rounds = 0;
    while cursor.commit < committed {
        let e = state.evaluate_lines(&s, cursor, committed).unwrap();
        assert!(e.firings.len() <= 4 && !e.truncated);
        fired.extend(e.firings.into_iter().map(|f| f.id));
        cursor = e.cursor;
        rounds += 1;
    }
    assert_eq!((fired.len(), cursor.matched), (15, 15));
    assert!(rounds >= 4, "{rounds} rounds");

    // The index moved away and made anew: its numbers start low again.
    drop(w);
    let dir2 = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir2.path()).unwrap();
    w.add(&line("a", 0, 0, "fail anew")).unwrap();
    w.commit().unwrap();
    let s = IndexSearcher::open(dir2.path()).unwrap();
    let e = state
        .evaluate_lines(&s, cursor, s.committed().unwrap())
        .unwrap();
    assert_eq!(e.firings.len(), 1);
}

#[test]
fn a_line_indexed_again_counts_once_in_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    let s = IndexSearcher::open(dir.path()).unwrap();
    let r = rule(
        RuleKind::Frequency {
            count: 3,
            within: Duration::from_secs(60),
        },
        None,
    );
    let mut state = RuleState::new("bursts", &r);
    let mut cursor = new_cursor("bursts", s.committed().unwrap(), Utc::now());
    for (i, secs) in [0, 1].into_iter().enumerate() {
        w.add(&line("a", i as u64 * 10, secs, "fail")).unwrap();
    }
    w.commit().unwrap();
    let committed = s.committed().unwrap();
    s.reload().unwrap();
    cursor = state.evaluate_lines(&s, cursor, committed).unwrap().cursor;
    // The same two lines again (a crash before the index position was
    // stored), in a later commit: still two lines, nothing fires.
    for (i, secs) in [0, 1].into_iter().enumerate() {
        w.add(&line("a", i as u64 * 10, secs, "fail")).unwrap();
    }
    w.commit().unwrap();
    let committed = s.committed().unwrap();
    s.reload().unwrap();
    let e = state.evaluate_lines(&s, cursor, committed).unwrap();
    assert!(e.firings.is_empty(), "{:?}", e.firings);
}
