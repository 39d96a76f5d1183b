//! Issue 22 (the page): the search page in a real headless Chromium
//! (Debian's `chromium` and `chromium-driver`) driven over WebDriver: a
//! query shows its hits and histogram, a hit opens its context, a facet
//! filters, a bad query shows the parser's message with its position, and
//! a URL with the state in it runs that search. A failed check saves a
//! screenshot (`/tmp/rill-browser-<test>.png`).

use std::time::Duration;

use rill_e2e::webdriver::Browser;
use rill_e2e::*;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(60);

/// The lines of `.hit` elements on the page.
const HITS: &str = "return [...document.querySelectorAll('#hits .hit')].map(e => e.dataset.line);";

#[test]
fn search_histogram_context_facets_and_errors_in_a_browser() {
    // `other` is JSON: its `status` is a parsed field, a facet of its own.
    let h = OneHost::new(&["app", "other"]);
    h.rill.set_log_options("other", "parser: json");
    let h = OneHost::start(h, &["app", "other"]);
    let mut text = String::new();
    for i in 0..40 {
        let status = if i % 4 == 0 { 404 } else { 200 };
        text.push_str(&format!("GET /item/{i} {status}\n"));
    }
    h.append("app", text.as_bytes());
    h.append("other", b"{\"req\":\"GET /elsewhere\",\"status\":404}\n");
    assert!(h.rill.wait_count("GET", &[], 41, WITHIN).is_some());
    let base = format!("http://127.0.0.1:{}", h.rill.search_port);

    let b = Browser::start("search");
    b.open(&format!("{base}/"));
    b.type_into("#q", "GET AND 404");
    b.click("#go");
    // 10 in app, 1 in other, newest first; every line holds 404.
    b.wait(
        "eleven hits",
        "return document.querySelectorAll('#hits .hit').length === 11;",
        json!([]),
    );
    let lines = b.eval(HITS, json!([]));
    let lines: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    if !lines.iter().all(|l| l.contains("404")) {
        b.fail(&format!("a hit without 404: {lines:?}"));
    }
    b.wait(
        "the histogram counts the eleven",
        "return [...document.querySelectorAll('#histogram .bar')].reduce((s, e) => s + Number(e.dataset.count), 0) === 11;",
        json!([]),
    );
    // The matched terms are marked, both of them.
    b.wait(
        "404 marked",
        "const m = [...document.querySelectorAll('#hits .hit')][0].querySelectorAll('mark'); return [...m].map(e => e.textContent).join(',') === 'GET,404';",
        json!([]),
    );
    // A hit's context: the line before it in its file.
    b.eval(
        "const hit = [...document.querySelectorAll('#hits .hit')].find(e => e.dataset.line === 'GET /item/36 404'); hit.click();",
        json!([]),
    );
    b.wait(
        "the context of /item/36 shows /item/35 before it",
        "const hit = [...document.querySelectorAll('#hits .hit')].find(e => e.dataset.line === 'GET /item/36 404'); const ctx = hit.querySelector('.ctx.before'); return getComputedStyle(ctx).display !== 'none' && ctx.textContent.includes('GET /item/35 200');",
        json!([]),
    );
    // Facets: both logs, and the JSON log's status.
    b.wait(
        "facets for both logs and fields.status",
        "return document.querySelectorAll('#facets .facet[data-field=log]').length === 2 && document.querySelector('#facets .facet[data-field=\"fields.status\"][data-value=\"404\"]') !== null;",
        json!([]),
    );
    b.eval(
        "document.querySelector('#facets .facet[data-field=log][data-value=other]').click();",
        json!([]),
    );
    b.wait(
        "one hit in other",
        "const h = [...document.querySelectorAll('#hits .hit')]; return h.length === 1 && h[0].dataset.line.includes('/elsewhere') && location.search.includes('log=other');",
        json!([]),
    );

    // A bad query: the parser's message and where.
    b.type_into("#q", "GET AND (404");
    b.click("#go");
    b.wait(
        "the error with its position",
        "const e = document.getElementById('error').textContent; return e.includes('expected') && e.includes('^') && document.querySelectorAll('#hits .hit').length === 0;",
        json!([]),
    );

    // The state in the URL: opening it runs the search.
    b.open(&format!(
        "{base}/?q={}&since=1h&log=app",
        url_encode("/item/8")
    ));
    b.wait(
        "the linked search ran",
        "const h = [...document.querySelectorAll('#hits .hit')]; return h.length === 1 && h[0].dataset.line === 'GET /item/8 404' && document.getElementById('q').value === '/item/8';",
        json!([]),
    );

    // Status: the host and its logs.
    b.click("#tab-status");
    b.wait(
        "the status shows web01",
        "return document.getElementById('status-body').textContent.includes('web01');",
        json!([]),
    );
}

#[test]
fn live_shows_a_line_written_after_the_page_opened_within_two_seconds() {
    let h = OneHost::running(&["app", "other"]);
    let b = Browser::start("live");
    b.open(&format!("http://127.0.0.1:{}/", h.rill.search_port));
    b.click("#tab-live");
    b.type_into("#topic", "line/+/app");
    b.type_into("#filter", "wanted");
    b.click("#live-go");
    b.wait(
        "the stream is ready",
        "return document.getElementById('live-lines').dataset.ready === '1';",
        json!([]),
    );
    // The subscription reaches the stream proxy a moment after: probes
    // until one is shown.
    let shown = |text: &str| {
        b.eval(
            "return [...document.querySelectorAll('#live-lines li')].some(e => e.dataset.line === arguments[0]);",
            json!([text]),
        ) == json!(true)
    };
    let mut n = 0;
    assert!(wait_until(WITHIN, || {
        n += 1;
        h.append("app", format!("probe wanted {n}\n").as_bytes());
        wait_until(Duration::from_millis(300), || {
            shown(&format!("probe wanted {n}"))
        })
    }));
    // Now a line, and one of another log and one without the filter's text
    // that must not show.
    h.append("other", b"other wanted line\n");
    h.append("app", b"app plain line\n");
    h.append("app", b"the wanted line\n");
    if !wait_until(Duration::from_secs(2), || shown("the wanted line")) {
        b.fail("the line did not show within 2 s");
    }
    assert!(!shown("other wanted line") && !shown("app plain line"));
    b.wait(
        "nothing dropped, the count shown",
        "return document.getElementById('live-summary').textContent.includes('0 dropped');",
        json!([]),
    );
    // Paused: lines are not added (the stream is in order: the line after
    // the resume shows, the one before it never does).
    b.click("#live-pause");
    h.append("app", b"while paused wanted\n");
    b.wait(
        "the paused line counted as skipped",
        "return document.getElementById('live-summary').textContent.includes('1 skipped while paused');",
        json!([]),
    );
    b.click("#live-pause");
    h.append("app", b"resumed wanted\n");
    if !wait_until(Duration::from_secs(5), || shown("resumed wanted")) {
        b.fail("no line after resume");
    }
    assert!(!shown("while paused wanted"));
}

#[test]
fn the_page_is_small_and_needs_no_network() {
    let h = OneHost::running(&["app"]);
    let (status, page) = http_get(h.rill.search_port, "/").unwrap();
    assert_eq!(status, 200);
    let page = page.as_str().unwrap().to_owned();
    assert!(page.len() < 300 * 1024, "{} bytes", page.len());
    // Nothing is loaded from elsewhere.
    for external in ["http://", "https://", "//cdn"] {
        assert!(!page.contains(&format!("src=\"{external}")), "{external}");
        assert!(!page.contains(&format!("href=\"{external}")), "{external}");
    }
}
