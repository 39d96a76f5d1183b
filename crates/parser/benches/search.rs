//! The search benchmark (not a test): generates N lines of an application
//! log (`raw` parser) and of an nginx access log (`combined` parser),
//! indexes each the way the parser process does (format + idempotent writer,
//! a commit every 500 ms), then times queries in-process, through the
//! `rill search` binary, and `rg` over the same raw files, side by side.
//!
//! Usage: `tests/bench/search [--lines N] [--dir DIR] [--runs N]` (the
//! script builds the release `rill` and runs this with `cargo bench -p
//! rill-parser --bench search`). Results are printed as markdown;
//! docs/BENCHMARKS.md keeps a run.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use rill_config::ParserSpec;
use rill_index::{IndexSearcher, IndexWriter, SearchRequest};
use rill_parser::events::{EventBuilder, LogRules};
use rill_parser::formats::LineFormat;
use rill_proto::{FileId, LineMeta};

/// One event per 100 ms: 5 M lines span about 5.8 days.
const STEP_MS: i64 = 100;
/// Every this many lines, one carries the rare word (50 hits in 5 M lines).
const RARE_EVERY: u64 = 100_000;

struct Args {
    /// Which parsers to index with (default both).
    formats: Vec<String>,
    /// Indexing threads (default: what the parser uses).
    threads: Option<usize>,
    /// Skip the queries (indexing experiments).
    no_queries: bool,
    lines: u64,
    dir: PathBuf,
    runs: usize,
    rill: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        formats: vec!["raw".into(), "combined".into()],
        threads: None,
        no_queries: false,
        lines: 5_000_000,
        dir: PathBuf::from("/tmp/rill-bench"),
        runs: 50,
        rill: std::env::current_exe()?.with_file_name("rill"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-queries" {
            a.no_queries = true;
            continue;
        }
        if flag == "--bench" {
            // What `cargo bench` passes to every bench binary.
            continue;
        }
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--lines" => a.lines = v.parse()?,
            "--dir" => a.dir = v.into(),
            "--runs" => a.runs = v.parse()?,
            "--rill" => a.rill = v.into(),
            "--formats" => a.formats = v.split(',').map(str::to_owned).collect(),
            "--threads" => a.threads = Some(v.parse()?),
            _ => anyhow::bail!(
                "unknown flag {flag}; expected --lines, --dir, --runs, --rill, --formats, --threads, --no-queries"
            ),
        }
    }
    Ok(a)
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const RESOURCES: [&str; 8] = [
    "items", "users", "orders", "carts", "payments", "search", "stock", "reviews",
];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];

fn generate(dir: &Path, lines: u64) -> anyhow::Result<(PathBuf, PathBuf)> {
    let app = dir.join("app.log");
    let access = dir.join("access.log");
    let meta = dir.join(format!("generated-{lines}"));
    if meta.exists() && app.exists() && access.exists() {
        eprintln!("reusing {} and {}", app.display(), access.display());
        return Ok((app, access));
    }
    let mut a = BufWriter::with_capacity(1 << 20, File::create(&app)?);
    let mut c = BufWriter::with_capacity(1 << 20, File::create(&access)?);
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let t0 = start();
    for i in 0..lines {
        let ts = t0 + chrono::Duration::milliseconds(i as i64 * STEP_MS);
        let level = match r.below(100) {
            0..=4 => "ERROR",
            5..=19 => "WARN",
            _ => "INFO",
        };
        let method = METHODS[r.below(4) as usize];
        let res = RESOURCES[r.below(8) as usize];
        let id = r.below(1_000_000);
        let status = match r.below(100) {
            0..=1 => 500,
            2..=6 => 404,
            _ => 200,
        };
        let rare = i % RARE_EVERY == RARE_EVERY / 2;
        writeln!(
            a,
            "{} {level} [worker-{}] {method} /api/v1/{res}/{id} status={status} took={}ms user=u{} req={:016x}{}",
            ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            r.below(16),
            r.below(2000),
            r.below(50_000),
            r.next(),
            if rare { " deadlock detected" } else { "" }
        )?;
        let path = if rare {
            "/admin/deadlock".to_owned()
        } else {
            format!("/api/v1/{res}/{id}")
        };
        writeln!(
            c,
            "10.{}.{}.{} - - [{}] \"{method} {path} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64; rv:1{}.0) Gecko/20100101 Firefox/1{}.0\"",
            r.below(256),
            r.below(256),
            r.below(256),
            ts.format("%d/%b/%Y:%H:%M:%S +0000"),
            r.below(100_000),
            r.below(40),
            r.below(40),
        )?;
    }
    a.flush()?;
    c.flush()?;
    File::create(meta)?;
    Ok((app, access))
}

struct Indexed {
    lines: u64,
    bytes: u64,
    took: Duration,
    /// CPU time of this process (all threads) while indexing.
    cpu: Duration,
    index_bytes: u64,
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Reads `file` line by line through the parser's EventBuilder and the
/// index writer, committing every 500 ms like the parser process.
fn index(
    file: &Path,
    log: &str,
    spec: &ParserSpec,
    state: &Path,
    threads: Option<usize>,
) -> anyhow::Result<Indexed> {
    let dir = state.join("index");
    let _ = std::fs::remove_dir_all(&dir);
    let mut rules = HashMap::new();
    rules.insert(
        log.to_owned(),
        LogRules {
            format: LineFormat::new(spec).map_err(|e| anyhow::anyhow!("{e}"))?,
            joiner: None,
        },
    );
    let mut events = EventBuilder::with_rules(rules);
    let mut opts = rill_index::WriterOptions::default();
    if let Some(t) = threads {
        opts.threads = t;
    }
    let mut writer = IndexWriter::open_with(&dir, opts)?;
    let mut reader = BufReader::with_capacity(1 << 20, File::open(file)?);
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::new();
    let (mut offset, mut n) = (0u64, 0u64);
    let file_id = FileId {
        dev: 1,
        ino: 2,
        fingerprint: 3,
    };
    let path = file.display().to_string();
    let t0 = start();
    let began = Instant::now();
    let cpu0 = cpu_time();
    let mut first_pending: Option<Instant> = None;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let meta = LineMeta {
            host: "bench".into(),
            log: log.into(),
            path: path.clone(),
            file_id,
            offset,
            seq: n,
            lines: 1,
            epoch: "bench".into(),
            read_at: t0 + chrono::Duration::milliseconds(n as i64 * STEP_MS),
            partial: false,
            collector: String::new(),
            ndjson: false,
            via: Vec::new(),
        };
        events.push(meta, line, &mut out);
        for e in out.drain(..) {
            writer.add_event(e)?;
        }
        offset += read as u64;
        n += 1;
        let pending = *first_pending.get_or_insert_with(Instant::now);
        if n % 4096 == 0 && pending.elapsed() >= Duration::from_millis(500) {
            writer.commit()?;
            first_pending = None;
        }
    }
    writer.commit()?;
    let took = began.elapsed();
    let cpu = cpu_time() - cpu0;
    writer.finish()?;
    Ok(Indexed {
        lines: n,
        bytes: offset,
        took,
        cpu,
        index_bytes: du(&dir)?,
    })
}

fn du(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

/// p50 and p99 of `runs` timings of `f` (after one warm-up run).
fn percentiles(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    f()?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

fn run_quiet(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    // rg exits 1 when nothing matched; that is still a finished search.
    anyhow::ensure!(
        status.code().is_some_and(|c| c <= 1),
        "{cmd:?} failed: {status}"
    );
    Ok(())
}

/// `GET path` over HTTP/1.0; fails unless the status is 200.
fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<()> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    anyhow::ensure!(
        out.starts_with(b"HTTP/1.1 200") || out.starts_with(b"HTTP/1.0 200"),
        "{path}: {}",
        String::from_utf8_lossy(&out[..out.len().min(200)])
    );
    Ok(())
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Query {
    name: &'static str,
    /// The same query on the HTTP API.
    http: String,
    rill: Vec<String>,
    req: SearchRequest,
    count: bool,
    /// Context lines on each side of every hit (`-C`).
    context: usize,
    rg: Vec<String>,
}

fn queries(format: &str, file: &Path) -> Vec<Query> {
    let (from, to) = ("2026-11-03T12:00:00Z", "2026-11-03T13:00:00Z");
    let window_rg = if format == "raw" {
        "^2026-11-03T12:"
    } else {
        r"\[03/Nov/2026:12:"
    };
    let (count_q, count_rg) = if format == "raw" {
        ("error", "ERROR")
    } else {
        ("fields.status:500", "\" 500 ")
    };
    let f = file.display().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        Query {
            name: "selective term (`deadlock`, 50 hits, newest 100)",
            http: "/search?limit=100&q=deadlock".into(),
            rill: s(&["--limit", "100", "deadlock"]),
            req: SearchRequest {
                query: "deadlock".into(),
                limit: 100,
                ..Default::default()
            },
            count: false,
            context: 0,
            rg: s(&["deadlock", &f]),
        },
        Query {
            name: "time range (1 h = 36,000 events, newest 100)",
            http: format!(
                "/search?limit=100&q=*&since={}&until={}",
                enc(from),
                enc(to)
            ),
            rill: s(&["--limit", "100", "--since", from, "--until", to, "*"]),
            req: SearchRequest {
                query: "*".into(),
                since: Some(from.parse().unwrap()),
                until: Some(to.parse().unwrap()),
                limit: 100,
                ..Default::default()
            },
            count: false,
            context: 0,
            rg: s(&["-c", window_rg, &f]),
        },
        Query {
            name: if format == "raw" {
                "--count `error` (5 %)"
            } else {
                "--count `fields.status:500` (2 %)"
            },
            http: format!("/count?q={}", enc(count_q)),
            rill: s(&["--count", count_q]),
            req: SearchRequest {
                query: count_q.into(),
                ..Default::default()
            },
            count: true,
            context: 0,
            rg: s(&["-c", count_rg, &f]),
        },
        Query {
            name: "newest 50 events with one line of context each (`-C 1`)",
            http: "/search?limit=50&q=*&context=1".into(),
            rill: s(&["--limit", "50", "-C", "1", "*"]),
            req: SearchRequest {
                query: "*".into(),
                limit: 50,
                ..Default::default()
            },
            count: false,
            context: 1,
            rg: s(&["-C", "1", "-m", "50", "deadlock", &f]),
        },
    ]
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    std::fs::create_dir_all(&a.dir)?;
    eprintln!(
        "generating {} lines per log in {}",
        a.lines,
        a.dir.display()
    );
    let (app, access) = generate(&a.dir, a.lines)?;
    let rg_version = Command::new("rg").arg("--version").output().ok().map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    });
    println!("| format | lines | raw MB | index time s | lines/s | MB/s | CPU s (all threads) | index MB | index/raw |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut tables = Vec::new();
    for (format, file, spec) in [
        ("raw", &app, ParserSpec::Raw),
        ("combined", &access, ParserSpec::Combined),
    ] {
        if !a.formats.iter().any(|f| f == format) {
            continue;
        }
        let state = a.dir.join(format!("state-{format}"));
        eprintln!("indexing {} with {format}", file.display());
        let r = index(file, "bench", &spec, &state, a.threads)?;
        let mb = r.bytes as f64 / 1e6;
        println!(
            "| {format} | {} | {mb:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {:.0} | {:.2} |",
            r.lines,
            r.took.as_secs_f64(),
            r.lines as f64 / r.took.as_secs_f64(),
            mb / r.took.as_secs_f64(),
            r.cpu.as_secs_f64(),
            r.index_bytes as f64 / 1e6,
            r.index_bytes as f64 / r.bytes as f64
        );
        let config = a.dir.join(format!("{format}.yaml"));
        std::fs::write(
            &config,
            format!(
                "state_dir: {}\nhosts: {{bench: {{address: 127.0.0.1, user: u, auth: {{agent: true}}}}}}\nlogs: {{bench: {{path: /x, hosts: all}}}}\n",
                state.display()
            ),
        )?;
        if a.no_queries {
            continue;
        }
        let searcher = IndexSearcher::open(&state.join("index"))?;
        let api = rill_parser::http::SearchApi::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            &state.join("index"),
        )?;
        let mut t = format!(
            "\n`{format}` ({} lines), {} runs each, ms:\n\n| query | hits | in-process p50 / p99 | HTTP API p50 / p99 | `rill search` p50 / p99 | `rg` p50 / p99 | rg / rill p50 (HTTP, CLI) |\n|---|---|---|---|---|---|---|\n",
            r.lines, a.runs
        );
        for q in queries(format, file) {
            eprintln!("  {format}: {}", q.name);
            let hits = if q.count {
                searcher.count(&q.req)?
            } else {
                searcher.search(&q.req)?.len() as u64
            };
            let (p50, p99) = percentiles(a.runs, || {
                if q.count {
                    searcher.count(&q.req)?;
                } else {
                    for hit in searcher.search(&q.req)? {
                        if q.context > 0 {
                            searcher.context(
                                &hit,
                                q.context,
                                q.context,
                                usize::MAX,
                                &Default::default(),
                            )?;
                        }
                    }
                }
                Ok(())
            })?;
            let (h50, h99) = percentiles(a.runs, || http_get(api.local_addr(), &q.http))?;
            let (c50, c99) = percentiles(a.runs, || {
                run_quiet(
                    Command::new(&a.rill)
                        .arg("search")
                        .arg("--config")
                        .arg(&config)
                        .args(&q.rill),
                )
            })?;
            let (r50, r99) = match &rg_version {
                Some(_) => {
                    percentiles(a.runs.min(10), || run_quiet(Command::new("rg").args(&q.rg)))?
                }
                None => (f64::NAN, f64::NAN),
            };
            t.push_str(&format!(
                "| {} | {hits} | {p50:.2} / {p99:.2} | {h50:.2} / {h99:.2} | {c50:.1} / {c99:.1} | {r50:.0} / {r99:.0} | {:.0}x, {:.0}x |\n",
                q.name,
                r50 / h50,
                r50 / c50
            ));
        }
        tables.push(t);
    }
    for t in tables {
        println!("{t}");
    }
    println!(
        "\nrg: {} (`rg PATTERN FILE`, `rg -c` for counts and the time window; page cache warm)",
        rg_version.unwrap_or_else(|| "not installed".into())
    );
    Ok(())
}
