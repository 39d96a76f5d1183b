//! The search page's first page of hits over a large index, in Debian's
//! headless Chromium: from asking the browser to open `/?q=...` until
//! the page shows its hits (WebDriver's navigation waits for the page's
//! load; the search, histogram and facets are fetched after it, so the
//! time is polled from inside the page with `performance.now()`). The
//! index is one `tests/bench/search` left (default
//! `/tmp/rill-bench/state-raw/index`, 5 M lines); the search API serves it
//! in this process, as the parser would. A page that shows no hits (the
//! API's error, no match) ends the run with what it showed: it is no
//! render to time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rill_e2e::webdriver::Browser;
use serde_json::json;

use crate::stats::{ms, Samples};

#[derive(clap::Args)]
pub struct Args {
    /// The index to serve.
    #[arg(long, default_value = "/tmp/rill-bench/state-raw/index")]
    pub index: PathBuf,
    /// Queries, each opened this many times.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
}

/// Queries as an engineer would type them into the page.
const QUERIES: [&str; 4] = ["ERROR", "ERROR AND reviews", "u33144", "*"];

pub fn run(a: &Args) -> anyhow::Result<()> {
    let api = rill_parser::http::SearchApi::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        &a.index,
    )
    .context("could not serve the index")?;
    let base = format!("http://{}", api.local_addr());
    let b = Browser::start("bench-page");
    for q in QUERIES {
        let mut took = Vec::new();
        for i in 0..a.runs + 1 {
            b.open("about:blank");
            let url = format!("{base}/?q={}&since=&x={i}", rill_e2e::url_encode(q));
            b.open(&url);
            // The time since navigation began at which hits were shown, or
            // the page's answer without hits (an error, no match), which is
            // no render to time.
            let t = b.eval(
                "return new Promise(done => { const check = () => { const n = document.querySelectorAll('#hits .hit').length; const error = document.getElementById('error').textContent; const summary = document.getElementById('summary').textContent; if (n > 0 || summary || error) done([performance.now(), n, error || summary]); else requestAnimationFrame(check); }; check(); });",
                json!([]),
            );
            let (Some(at), Some(n)) = (t[0].as_f64(), t[1].as_u64()) else {
                anyhow::bail!("the page did not answer for {q:?}: {t}");
            };
            if n == 0 {
                anyhow::bail!("no hits shown for {q:?}: {}", t[2]);
            }
            if i > 0 {
                took.push(Duration::from_secs_f64(at / 1000.0));
            }
            if i == 1 {
                eprintln!("  {q:?}: {n} hits shown");
            }
        }
        let s = Samples::new(took);
        println!(
            "page {q:?} over {}: first page shown after p50 {} p99 {} max {} ({} runs, after one warm-up)",
            a.index.display(),
            ms(s.percentile(50.0)),
            ms(s.percentile(99.0)),
            ms(s.max()),
            s.len(),
        );
    }
    Ok(())
}
