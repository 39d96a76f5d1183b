//! Property tests: query texts and time bounds as a hostile user types
//! them. Every input gets an answer (a query or a clear error), never a
//! panic, and the query-limit check agrees with a plain model of it.

use std::time::{Duration, Instant};

use chrono::Utc;
use proptest::prelude::*;
use rill_index::query::{check_limits, MAX_GROUPS, MAX_QUERY_BYTES};
use rill_index::{IndexSearcher, IndexWriter, SearchRequest};

/// Strings made mostly of what tantivy's grammar cares about.
fn query_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just(" ".to_owned()),
        Just(":".to_owned()),
        Just("-".to_owned()),
        Just("+".to_owned()),
        Just("*".to_owned()),
        Just("[a TO b]".to_owned()),
        Just(" AND ".to_owned()),
        Just(" OR ".to_owned()),
        Just("NOT ".to_owned()),
        Just("body:".to_owned()),
        Just("fields.status:".to_owned()),
        Just("error".to_owned()),
        "[a-zé0-9]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..200).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_limit_check_agrees_with_its_model(text in query_text()) {
        let ok = text.len() <= MAX_QUERY_BYTES && text.matches('(').count() <= MAX_GROUPS;
        prop_assert_eq!(check_limits(&text).is_ok(), ok);
    }

    #[test]
    fn every_query_gets_an_answer_without_a_panic(text in query_text()) {
        let searcher = &shared_index().1;
        let req = SearchRequest { query: text.clone(), limit: 10, ..Default::default() };
        let t = Instant::now();
        // On a thread with the stack of a worker thread of the HTTP API's
        // runtime, as its searches run.
        let counted = std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn_scoped(s, || searcher.count(&req).is_ok())
                .unwrap()
                .join()
                .is_ok()
        });
        prop_assert!(counted);
        // An exponential parse takes seconds at depth 20 and forever at 100;
        // within the limits it takes milliseconds.
        prop_assert!(t.elapsed() < Duration::from_secs(2), "{:?} for {:?}", t.elapsed(), text);
    }

    #[test]
    fn time_bounds_never_panic(text in "[0-9]{0,30}(ms|s|m|h|d|w|x|)|.{0,40}") {
        let _ = rill_index::time::parse_bound(&text, Utc::now());
        let _ = rill_index::time::parse_span(&text);
    }

    #[test]
    fn every_span_that_fits_is_taken_and_the_rest_refused(n in any::<u64>(), unit in "(ms|s|m|h|d|w)") {
        let text = format!("{n}{unit}");
        let span = rill_index::time::parse_span(&text);
        let bound = rill_index::time::parse_bound(&text, Utc::now());
        if let Some(d) = span {
            prop_assert!(d.num_milliseconds() >= 0);
        }
        if bound.is_ok() {
            prop_assert!(span.is_some());
        }
    }
}

/// One empty index for every case.
fn shared_index() -> &'static (tempfile::TempDir, IndexSearcher) {
    static INDEX: std::sync::OnceLock<(tempfile::TempDir, IndexSearcher)> =
        std::sync::OnceLock::new();
    INDEX.get_or_init(index)
}

fn index() -> (tempfile::TempDir, IndexSearcher) {
    let dir = tempfile::tempdir().unwrap();
    IndexWriter::open(dir.path()).unwrap().commit().unwrap();
    let s = IndexSearcher::open(dir.path()).unwrap();
    (dir, s)
}

/// Regression: tantivy's strict grammar panics on `- *` (an exclusion of
/// everything); `rill search '- *'` exited 101.
#[test]
fn queries_that_panic_tantivys_grammar_get_an_answer() {
    let (_dir, searcher) = index();
    let deep_behind_quote = format!("'\"'{}a{}", "(".repeat(1000), ")".repeat(1000));
    for q in [
        "- *",
        "a AND - *",
        "\\ AND - *",
        "+ *",
        "(- *)",
        &deep_behind_quote,
    ] {
        let req = SearchRequest {
            query: q.into(),
            limit: 10,
            ..Default::default()
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| searcher.count(&req)));
        assert!(r.is_ok(), "{q} panicked");
    }
}
