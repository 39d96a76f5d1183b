//! Issue 22 (the page): the search page in a real headless Chromium
//! (Debian's `chromium` and `chromium-driver`) driven over WebDriver: a
//! query shows its hits and histogram, a hit opens its context, a facet
//! filters, a bad query shows the parser's message with its position, and
//! a URL with the state in it runs that search; a range of days and all
//! time draw their histograms, and all time stays in the URL; Live shows
//! new lines, and counts the lines a page too busy to read lost, as the
//! status tab does. A failing test saves a screenshot
//! (`/tmp/rill-browser-<test>.png`).

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

/// Whether the Live tab shows a line `text`.
fn shown_live(b: &Browser, text: &str) -> bool {
    b.eval(
        "return [...document.querySelectorAll('#live-lines li')].some(e => e.dataset.line === arguments[0]);",
        json!([text]),
    ) == json!(true)
}

/// Starts the Live tab on `topic` (lines holding `filter`) and waits until
/// it shows a probe line written to `log`: from then on every line comes.
fn live_streaming(b: &Browser, h: &OneHost, topic: &str, filter: &str, log: &str) {
    b.open(&format!("http://127.0.0.1:{}/", h.rill.search_port));
    b.click("#tab-live");
    b.type_into("#topic", topic);
    b.type_into("#filter", filter);
    b.click("#live-go");
    b.wait(
        "the stream is ready",
        "return document.getElementById('live-lines').dataset.ready === '1';",
        json!([]),
    );
    // The subscription reaches the stream proxy a moment after: probes
    // until one is shown.
    let mut n = 0;
    if !wait_until(WITHIN, || {
        n += 1;
        h.append(log, format!("probe {filter} {n}\n").as_bytes());
        wait_until(Duration::from_millis(300), || {
            shown_live(b, &format!("probe {filter} {n}"))
        })
    }) {
        b.fail("no probe line shown");
    }
}

/// The Live tab's summary: lines shown and lines dropped.
fn live_counts(b: &Browser) -> (u64, u64) {
    let v = b.eval(
        "const m = /(\\d+) lines · (\\d+) dropped/.exec(document.getElementById('live-summary').textContent); return m ? [Number(m[1]), Number(m[2])] : null;",
        json!([]),
    );
    match (v[0].as_u64(), v[1].as_u64()) {
        (Some(shown), Some(dropped)) => (shown, dropped),
        _ => b.fail(&format!("no counts in the Live summary: {v}")),
    }
}

#[test]
fn live_shows_a_line_written_after_the_page_opened_within_two_seconds() {
    let h = OneHost::running(&["app", "other"]);
    let b = Browser::start("live");
    live_streaming(&b, &h, "line/+/app", "wanted", "app");
    let shown = |text: &str| shown_live(&b, text);
    // Now a line, and one of another log and one without the filter's text
    // that must not show.
    h.append("other", b"other wanted line\n");
    h.append("app", b"app plain line\n");
    h.append("app", b"the wanted line\n");
    if !wait_until(Duration::from_secs(2), || shown("the wanted line")) {
        b.fail("the line did not show within 2 s");
    }
    assert!(!shown("other wanted line") && !shown("app plain line"));
    let (_, dropped) = live_counts(&b);
    assert_eq!(dropped, 0, "nothing dropped, the count shown");
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

/// Takes the page's script from a second from now (chromedriver asks the
/// page something after a script returns) until the line holding
/// `arguments[0]` is in the index, or 60 s: the page reads nothing
/// meanwhile, as one on a loaded machine. Synchronous requests only.
const BUSY_UNTIL_INDEXED: &str = "const marker = arguments[0];
setTimeout(() => {
  const end = Date.now() + 60000;
  while (Date.now() < end) {
    const x = new XMLHttpRequest();
    x.open('GET', '/count?q=' + encodeURIComponent(marker), false);
    x.send();
    if (x.status === 200 && JSON.parse(x.responseText).count > 0) return;
    const t = Date.now() + 200;
    while (Date.now() < t) {}
  }
}, 1000);";

#[test]
fn live_counts_the_lines_a_page_too_busy_to_read_lost() {
    let h = OneHost::running(&["app"]);
    let b = Browser::start("live-dropped");
    live_streaming(&b, &h, "line/+/app", "", "app");
    let (before, _) = live_counts(&b);
    b.eval(BUSY_UNTIL_INDEXED, json!(["lastline"]));
    // Lines of 1 KB until the stream drops some (here the first 10,000 do:
    // its queue, the sockets' buffers and Chromium's fill after ~6 MB), as
    // its report to the supervisor (every 5 s) says in /metrics.
    let (mut written, dropped) = h.burst_until_live_drops("app");
    assert!(dropped, "no line dropped after {written} lines");
    // The page reads again once a last line is in the index.
    h.append("app", b"lastline\n");
    written += 1;
    assert!(h.rill.wait_count("lastline", &[], 1, WITHIN).is_some());

    // Every line written is shown or counted as dropped.
    let mut counts = (0, 0);
    if !wait_until(Duration::from_secs(30), || {
        counts = live_counts(&b);
        counts.1 > 0 && counts.0 - before + counts.1 == written
    }) {
        b.fail(&format!(
            "{written} lines written: {} shown after {before}, {} dropped",
            counts.0, counts.1
        ));
    }
    // The status tab lists the stream with the same counts.
    b.click("#tab-status");
    b.wait(
        "the status shows the page's stream with what it showed and lost",
        "return [...document.querySelectorAll('tr.subscriber')].some((r) => r.dataset.id.startsWith('page-live-') && r.children[1].textContent === String(arguments[0]) && r.dataset.dropped === String(arguments[1]));",
        json!([counts.0, counts.1]),
    );
}

/// `t` as RFC 3339 with a `Z`.
fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The histogram's bars: how many, their counts' sum, how many are not
/// empty, and the histogram's error.
const BARS: &str = "const b = [...document.querySelectorAll('#histogram .bar')].map((e) => Number(e.dataset.count)); return [b.length, b.reduce((s, n) => s + n, 0), b.filter((n) => n > 0).length, document.getElementById('histogram-error')?.textContent ?? ''];";

#[test]
fn a_range_of_days_and_all_time_draw_their_histograms_and_all_time_stays_in_the_url() {
    // Events 9 days, 2 days and a minute old (their `time`).
    let h = OneHost::new(&["events"]);
    h.rill.set_log_options("events", "parser: json");
    let h = OneHost::start(h, &["events"]);
    let now = chrono::Utc::now();
    let mut text = String::new();
    for (age, name) in [(9 * 24 * 60, "old"), (2 * 24 * 60, "older"), (1, "new")] {
        let t = rfc3339(now - chrono::Duration::minutes(age));
        text.push_str(&format!("{{\"time\":\"{t}\",\"msg\":\"{name}\"}}\n"));
    }
    h.append("events", text.as_bytes());
    assert!(h.rill.wait_count("*", &[], 3, WITHIN).is_some());
    let base = format!("http://127.0.0.1:{}", h.rill.search_port);
    let b = Browser::start("histogram-range");
    // Two timestamps 10 days apart: a bar per 3 h, not 14,460 of a minute
    // (over the 10,000 the API draws), each event in a bar of its own.
    let (from, until) = (
        rfc3339(now - chrono::Duration::days(10)),
        rfc3339(now + chrono::Duration::hours(1)),
    );
    b.open(&format!(
        "{base}/?q=*&from={}&until={}",
        url_encode(&from),
        url_encode(&until)
    ));
    let drawn = |what: &str| {
        let mut bars = json!(null);
        if !wait_until(Duration::from_secs(20), || {
            bars = b.eval(BARS, json!([]));
            bars[1] == 3 && bars[2] == 3
        }) {
            b.fail(&format!("{what}: bars, sum, not empty, error: {bars}"));
        }
        let n = bars[0].as_u64().unwrap();
        assert!(n <= 200 && bars[3] == "", "{what}: {bars}");
    };
    drawn("from and until 10 days apart");

    // All time: the three, and the URL says so.
    b.eval(
        "for (const [id, v] of [['since', ''], ['from', ''], ['until', '']]) document.getElementById(id).value = v; document.getElementById('go').click();",
        json!([]),
    );
    b.wait(
        "all time finds the three, since= in the URL",
        "return document.getElementById('summary').textContent.startsWith('3 matching events') && new URLSearchParams(location.search).get('since') === '';",
        json!([]),
    );
    drawn("all time");
    // The link opens all time again (the default, 24 h, holds one).
    let link = b.eval("return location.href;", json!([]));
    b.open("about:blank");
    b.open(link.as_str().unwrap());
    b.wait(
        "the link opens all time",
        "return document.getElementById('since').value === '' && document.getElementById('summary').textContent.startsWith('3 matching events');",
        json!([]),
    );
    drawn("all time from the link");
}
