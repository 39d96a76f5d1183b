//! A backlog at the indexer's pace: N lines appended at once to a followed
//! file on the (loopback) server, timed from the append until
//! `count('*')` through the search API says N; next to `ssh host cat` of
//! the same lines and the standalone indexer (the parser's EventBuilder and
//! the index writer, in this process, committing every 500 ms like the
//! parser) over the same lines, in the same run; and the parser's own index
//! thread (`rill_parser::indexer`) fed the same lines from a write-ahead
//! log in this process, as the tap's messages would fill it (no SSH, no
//! sockets). The peak RSS of `ssh_tap` and `parser` is read at the end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rill_config::ParserSpec;
use rill_e2e::{http_get, OneHost};
use rill_index::IndexWriter;
use rill_parser::events::{EventBuilder, LogRules};
use rill_parser::formats::LineFormat;
use rill_proto::{FileId, LineMeta};

use crate::procs;

#[derive(clap::Args)]
pub struct Args {
    /// Lines in the backlog (about 120 bytes each).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
    /// The log's parser: raw or combined.
    #[arg(long, default_value = "raw")]
    pub parser: String,
    /// Extra top-level YAML for the collector's config (e.g. a `tap:`
    /// block), to compare settings.
    #[arg(long)]
    pub config: Option<String>,
    /// Give up on the pipeline after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Runs, each on a fresh server and collector, with a summary of all
    /// at the end (the machine's speed drifts by several percent from
    /// one run to the next).
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let spec = match a.parser.as_str() {
        "raw" => ParserSpec::Raw,
        "combined" => ParserSpec::Combined,
        other => bail!("--parser {other:?}: expected raw or combined"),
    };
    if a.runs == 0 {
        bail!("--runs 0: expected at least one run");
    }
    let mut ratios = Vec::new();
    let mut rates = Vec::new();
    for run in 1..=a.runs {
        if a.runs > 1 {
            println!("run {run} of {}", a.runs);
        }
        let (ratio, rate) = once(a, &spec)?;
        ratios.push(ratio);
        rates.push(rate);
    }
    if a.runs > 1 {
        let list = |v: &[f64], unit: &str| {
            let each: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
            format!("{}{unit} (median {:.0})", each.join(" / "), median(v))
        };
        println!("over {} runs:", a.runs);
        println!("  rill / standalone indexer: {}", list(&ratios, " %"));
        println!("  rill lines/s: {}", list(&rates, ""));
    }
    Ok(())
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// One run on a fresh server and collector: returns rill's share of the
/// standalone indexer's rate (%) and rill's rate (lines/s).
fn once(a: &Args, spec: &ParserSpec) -> anyhow::Result<(f64, f64)> {
    let h = OneHost::new(&["app"]);
    if a.parser != "raw" {
        h.rill
            .set_log_options("app", &format!("parser: {}", a.parser));
    }
    if let Some(yaml) = &a.config {
        h.rill
            .append_config(&format!("{}\n", yaml.replace("\\n", "\n")));
    }
    let h = OneHost::start(h, &["app"]);
    let src = h.remote.path.join("backlog.src");
    let bytes = crate::throughput::write_file(&src, a.lines)?;
    println!(
        "backlog lines={} bytes={} parser={}",
        a.lines, bytes, a.parser
    );

    let cat = ssh_cat(&h, &src, a.lines)?;
    println!(
        "  ssh host cat FILE            {:>7.2} s {:>10.0} lines/s",
        cat,
        a.lines as f64 / cat
    );

    let alone = standalone(&src, spec, &h.rill.dir.path().join("alone"))?;
    alone.print("standalone indexer       ", a.lines);
    let thread = index_thread(&src, spec, &h.rill.dir.path().join("thread"))?;
    thread.print("the parser's index thread", a.lines);
    // The index thread's writer merges on after it is dropped: those
    // merges must not run beside the pipeline's.
    procs::await_own_threads_gone(&["merge_thread", "thrd-tantivy"], Duration::from_secs(60))?;

    let rill = through_rill(&h, &src, a.lines, Duration::from_secs(a.timeout))?;
    let rate = a.lines as f64 / rill.seconds;
    println!(
        "  rill: append -> searchable   {:>7.2} s {:>10.0} lines/s  {:.1} CPU-s (machine)",
        rill.seconds, rate, rill.cpu
    );
    let by: Vec<String> = rill
        .cpu_by
        .iter()
        .map(|(n, s)| format!("{n} {s:.1}"))
        .collect();
    println!("  collector CPU-s: {}", by.join(", "));
    let ratio = 100.0 * rate / (a.lines as f64 / alone.seconds);
    println!(
        "  rill / standalone indexer = {:.0} %, rill / ssh cat = {:.0} %",
        ratio,
        100.0 * rate / (a.lines as f64 / cat)
    );
    println!(
        "  max RSS: ssh_tap {:.1} MB, parser {:.1} MB",
        rill.tap_rss_kib as f64 / 1024.0,
        rill.parser_rss_kib as f64 / 1024.0
    );
    Ok((ratio, rate))
}

/// Seconds `ssh host cat FILE` takes, from its start to its last line.
fn ssh_cat(h: &OneHost, src: &Path, lines: u64) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut child = h
        .sshd
        .client(&h.key, &format!("cat {}", src.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("could not run ssh")?;
    let out = child.stdout.take().context("no stdout")?;
    let got = BufReader::with_capacity(1 << 16, out).split(b'\n').count() as u64;
    child.wait()?;
    if got != lines {
        bail!("ssh cat: {got} lines, not {lines}");
    }
    Ok(t.elapsed().as_secs_f64())
}

struct Alone {
    seconds: f64,
    cpu: f64,
}

impl Alone {
    fn print(&self, what: &str, lines: u64) {
        println!(
            "  {what}    {:>7.2} s {:>10.0} lines/s  {:.1} CPU-s",
            self.seconds,
            lines as f64 / self.seconds,
            self.cpu
        );
    }
}

/// The parser's events builder with `spec` for the log `app`.
fn events_for(spec: &ParserSpec) -> anyhow::Result<EventBuilder> {
    let mut rules = HashMap::new();
    rules.insert(
        "app".to_owned(),
        LogRules {
            format: LineFormat::new(spec).map_err(|e| anyhow::anyhow!("{e}"))?,
            joiner: None,
        },
    );
    Ok(EventBuilder::with_rules(rules))
}

/// The meta of `lines` lines of `path` from `offset` (host `web01`, log
/// `app`, one file), read now.
fn meta(path: &str, offset: u64, seq: u64, lines: u64) -> LineMeta {
    LineMeta {
        host: "web01".into(),
        log: "app".into(),
        path: path.to_owned(),
        file_id: FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        },
        offset,
        seq,
        lines,
        epoch: "bench".into(),
        read_at: chrono::Utc::now(),
        partial: false,
        collector: String::new(),
        ndjson: false,
        via: Vec::new(),
    }
}

/// The file through EventBuilder and IndexWriter in this process,
/// committing every 500 ms: the indexer's own pace.
fn standalone(file: &Path, spec: &ParserSpec, dir: &Path) -> anyhow::Result<Alone> {
    let mut events = events_for(spec)?;
    let mut writer = IndexWriter::open(dir)?;
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let mut buf = Vec::with_capacity(512);
    let mut out = Vec::new();
    let path = file.display().to_string();
    let (mut offset, mut n) = (0u64, 0u64);
    let began = Instant::now();
    let busy = procs::machine_busy_ticks();
    let mut first_pending: Option<Instant> = None;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        events.push(
            meta(&path, offset, n, 1),
            buf.strip_suffix(b"\n").unwrap_or(&buf),
            &mut out,
        );
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
    let seconds = began.elapsed().as_secs_f64();
    let cpu = procs::machine_busy_ticks().saturating_sub(busy) as f64 / procs::TICKS;
    writer.finish()?;
    Ok(Alone { seconds, cpu })
}

/// The file's lines as the tap sends them (messages of consecutive lines
/// up to 128 KiB) in a write-ahead log, then through the parser's index
/// thread, timed from its start until it committed the last of them.
fn index_thread(file: &Path, spec: &ParserSpec, dir: &Path) -> anyhow::Result<Alone> {
    use rill_parser::indexer::{Indexer, Parts};
    const MESSAGE: usize = 128 << 10;
    let mut wal = rill_parser::wal::Wal::open(&dir.join("wal"), 0)?;
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
    let path = file.display().to_string();
    let (mut lines, mut n, mut first, mut offset, mut seq) = (Vec::new(), 0, 0, 0, 0);
    loop {
        let start = lines.len();
        let read = reader.read_until(b'\n', &mut lines)?;
        if n == 0 {
            first = offset;
        }
        if read > 0 {
            offset += read as u64;
            n += 1;
        }
        // A message once it reaches MESSAGE (with the line that crossed
        // it), and the rest at the end.
        if n > 0 && (read == 0 || (lines.len() >= MESSAGE && start > 0)) {
            lines.pop(); // lines are joined by `\n`: the last has none
            let json = serde_json::to_vec(&meta(&path, first, seq, n))?;
            wal.append(seq, &json, &lines)?;
            seq += n;
            n = 0;
            lines.clear();
        }
        if read == 0 {
            break;
        }
    }
    wal.sync()?;
    let events = events_for(spec)?;
    let ctx = zmq::Context::new();
    let began = Instant::now();
    let busy = procs::machine_busy_ticks();
    let mut indexer = Indexer::start(Parts {
        index: IndexWriter::open(&dir.join("index"))?,
        events,
        retention: rill_parser::retention::Retention::new(None),
        live: rill_bus::Publisher::connect(&ctx, "inproc://bench")?,
        applied: 0,
        collector: "bench".into(),
        tenures: None,
        purges: None,
    })?;
    while let Some(rec) = wal.read_next()? {
        indexer.give(rec);
    }
    indexer.finish()?;
    let seconds = began.elapsed().as_secs_f64();
    let cpu = procs::machine_busy_ticks().saturating_sub(busy) as f64 / procs::TICKS;
    Ok(Alone { seconds, cpu })
}

struct Piped {
    seconds: f64,
    cpu: f64,
    /// CPU-seconds of the collector's processes, by name.
    cpu_by: Vec<(String, f64)>,
    tap_rss_kib: u64,
    parser_rss_kib: u64,
}

/// Appends the whole file to the followed log with one `cat >>` and polls
/// the search API's count until it says `lines`.
fn through_rill(h: &OneHost, src: &Path, lines: u64, timeout: Duration) -> anyhow::Result<Piped> {
    let port = h.rill.search_port;
    let count = || -> Option<u64> {
        let (status, body) = http_get(port, "/count?q=*")?;
        (status == 200).then(|| body["count"].as_u64())?
    };
    // The index answers (a first commit happened) and holds nothing.
    let t = Instant::now();
    while count() != Some(0) {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the search API did not answer with an empty index within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let root = h.rill.supervisor_pid().context("no supervisor")?;
    let by_name = || {
        let mut m: std::collections::BTreeMap<String, u64> = Default::default();
        for p in procs::tree(root) {
            *m.entry(p.name).or_default() += p.ticks;
        }
        m
    };
    let ticks0 = by_name();
    let busy = procs::machine_busy_ticks();
    let began = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("cat \"$1\" >> \"$2\"")
        .arg("sh")
        .arg(src)
        .arg(h.file("app"))
        .status()?;
    if !status.success() {
        bail!("could not append the backlog");
    }
    let mut last = None;
    let reached = loop {
        let now = count();
        if now == Some(lines) {
            break Some(began.elapsed());
        }
        if now != last {
            if std::env::var_os("RILL_BENCH_TRACE").is_some() {
                eprintln!("{:>6.2} s {now:?}", began.elapsed().as_secs_f64());
            }
            last = now;
        }
        if began.elapsed() > timeout {
            break None;
        }
        // Every search costs the parser: often only near the end.
        let near = now.is_some_and(|n| n >= lines / 10 * 9);
        std::thread::sleep(Duration::from_millis(if near { 10 } else { 100 }));
    };
    let cpu = procs::machine_busy_ticks().saturating_sub(busy) as f64 / procs::TICKS;
    let cpu_by: Vec<(String, f64)> = by_name()
        .into_iter()
        .map(|(n, t)| {
            let s = t.saturating_sub(ticks0.get(&n).copied().unwrap_or(0)) as f64 / procs::TICKS;
            (n, s)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    // The peak RSS of each (the kernel's high-water mark; sampling
    // smaps_rollup every 50 ms cost the machine 3 % of its CPU).
    let peak = |name: &str| {
        procs::tree(root)
            .into_iter()
            .filter(|p| p.name == name)
            .map(|p| procs::peak_rss_kib(p.pid))
            .max()
            .unwrap_or(0)
    };
    let (tap_rss_kib, parser_rss_kib) = (peak("ssh_tap"), peak("parser"));
    let Some(took) = reached else {
        bail!(
            "the index held {last:?} of {lines} lines after {} s",
            timeout.as_secs()
        );
    };
    Ok(Piped {
        seconds: took.as_secs_f64(),
        cpu,
        cpu_by,
        tap_rss_kib,
        parser_rss_kib,
    })
}
