//! Tap throughput: a file of generated lines on the (loopback) server, read
//! three ways: OpenSSH `ssh host cat FILE`, `ssh host tail -c +1 -F
//! FILE` until every line arrived, and through Rill (the file moved onto a
//! followed path, so the tap reads it from its start) to a ZeroMQ
//! subscriber on the streams endpoint.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rill_e2e::OneHost;

use crate::{procs, workload};

#[derive(clap::Args)]
pub struct Args {
    /// Lines in the file (about 120 bytes each).
    #[arg(long, default_value_t = 2_000_000)]
    pub lines: u64,
    /// Follow the file on a host whose shell and tools are BusyBox only.
    #[arg(long)]
    pub busybox: bool,
    /// Rounds, each on a fresh host (sshd, collector, state) reading every
    /// way once; the verdict is the median round. One read of a 200 MB
    /// file takes under a second and varies by a quarter between runs.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
}

/// One way of reading the file: how long it took, how much arrived.
pub struct Reading {
    pub name: &'static str,
    pub seconds: f64,
    pub lines: u64,
    pub bytes: u64,
    /// Busy CPU time of the whole machine while it ran (every process, the
    /// server's side included), in seconds.
    pub cpu: f64,
    /// Messages the lines came in, for a reader that gets messages.
    pub messages: Option<u64>,
}

impl Reading {
    pub fn lines_per_s(&self) -> f64 {
        self.lines as f64 / self.seconds
    }
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
    /// Machine CPU time per million lines, in seconds.
    pub fn cpu_per_m(&self) -> f64 {
        self.cpu / self.lines as f64 * 1e6
    }
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let host = if a.busybox { "busybox" } else { "gnu" };
    let mut rounds = Vec::new();
    for r in 1..=a.rounds.max(1) {
        let round = one_round(a)?;
        println!(
            "round {r} of {}, host={host} lines={}",
            a.rounds.max(1),
            a.lines
        );
        print_round(&round);
        rounds.push(round);
    }
    if rounds.len() > 1 {
        summary(&rounds);
    }
    Ok(())
}

/// One line per reading, then Rill's ratios.
fn print_round(round: &[Reading]) {
    for r in round {
        println!(
            "  {:<32} {:>7.2} s {:>10.0} lines/s {:>7.1} MB/s  {:>5.2} CPU-s/M lines  ({} lines)",
            r.name,
            r.seconds,
            r.lines_per_s(),
            r.mb_per_s(),
            r.cpu_per_m(),
            r.lines
        );
    }
    let [cat, tail, libssh2, rill] = round else {
        return;
    };
    if let Some(m) = rill.messages {
        println!(
            "  rill: {m} messages, {:.0} lines and {:.1} KiB each",
            rill.lines as f64 / m.max(1) as f64,
            rill.bytes as f64 / m.max(1) as f64 / 1024.0
        );
    }
    println!(
        "  rill / ssh cat = {:.0} %, rill / ssh tail -F = {:.0} %",
        100.0 * rill.lines_per_s() / cat.lines_per_s(),
        100.0 * rill.lines_per_s() / tail.lines_per_s()
    );
    println!(
        "  libssh2 / ssh cat = {:.0} %, rill / libssh2 = {:.0} %",
        100.0 * libssh2.lines_per_s() / cat.lines_per_s(),
        100.0 * rill.lines_per_s() / libssh2.lines_per_s()
    );
}

/// Medians over the rounds: of each reading's lines/s and CPU, and of
/// Rill's share of `ssh cat` in the same round.
fn summary(rounds: &[Vec<Reading>]) {
    println!("median of {} rounds:", rounds.len());
    for k in 0..rounds[0].len() {
        let speed = median(rounds.iter().map(|r| r[k].lines_per_s()));
        let cpu = median(rounds.iter().map(|r| r[k].cpu_per_m()));
        println!(
            "  {:<32} {:>10.0} lines/s {:>5.2} CPU-s/M lines",
            rounds[0][k].name, speed, cpu
        );
    }
    let share = |k: usize| {
        let v: Vec<f64> = rounds
            .iter()
            .map(|r| 100.0 * r[3].lines_per_s() / r[k].lines_per_s())
            .collect();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        (median(v.into_iter()), lo, hi)
    };
    let (m, lo, hi) = share(0);
    println!("  rill / ssh cat, per round: median {m:.0} % (range {lo:.0}-{hi:.0} %)");
    let (m, lo, hi) = share(1);
    println!("  rill / ssh tail -F, per round: median {m:.0} % (range {lo:.0}-{hi:.0} %)");
}

/// The median (the mean of the middle two for an even count).
fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A fresh host and collector, the file written on it, and the four
/// readings of it: `ssh cat`, `ssh tail -F`, libssh2 alone, Rill.
fn one_round(a: &Args) -> anyhow::Result<Vec<Reading>> {
    let (h, busybox) = crate::app_host(a.busybox);
    let big = h.remote.path.join("big.log");
    let bytes = write_file(&big, a.lines)?;
    let cat = timed_ssh(
        "ssh host cat FILE",
        h.sshd.client(&h.key, &format!("cat {}", big.display())),
        a.lines,
        bytes,
    )?;
    let tail = timed_ssh(
        "ssh host tail -c +1 -F FILE",
        h.sshd
            .client(&h.key, &format!("tail -c +1 -F {}", big.display())),
        a.lines,
        bytes,
    )?;
    let libssh2 = timed_libssh2(&h, &big, a.lines, bytes)?;
    let rill = through_rill(&h, &big, a.lines, bytes)?;
    drop(h);
    drop(busybox);
    Ok(vec![cat, tail, libssh2, rill])
}

/// Writes `lines` workload lines to `path`, readable by the server's
/// user; their bytes.
pub(crate) fn write_file(path: &std::path::Path, lines: u64) -> anyhow::Result<u64> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut bytes = 0;
    for n in 0..lines {
        let l = workload::line(n);
        bytes += l.len() as u64;
        f.write_all(l.as_bytes())?;
    }
    f.flush()?;
    // The server's user must be able to read it.
    Command::new("chmod").arg("644").arg(path).status()?;
    Ok(bytes)
}

/// Runs an OpenSSH client and counts the lines on its stdout, from the
/// first byte to the last expected line (so connection set-up is not
/// counted, as it is not for Rill either); then stops it (`tail -F` would
/// go on forever).
fn timed_ssh(
    name: &'static str,
    mut cmd: Command,
    lines: u64,
    bytes: u64,
) -> anyhow::Result<Reading> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run {name}"))?;
    let mut out = child.stdout.take().context("no stdout")?;
    let counted = count_lines(&mut out, lines)?;
    let _ = child.kill();
    let status = child.wait_with_output()?;
    counted.reading(name, lines, bytes, &String::from_utf8_lossy(&status.stderr))
}

/// The same `cat FILE` through libssh2 (the `ssh2` crate ssh_tap uses),
/// read in blocking mode into a buffer and counted, nothing else: the
/// ceiling of any reader built on that library. Timed like [`timed_ssh`].
fn timed_libssh2(
    h: &OneHost,
    big: &std::path::Path,
    lines: u64,
    bytes: u64,
) -> anyhow::Result<Reading> {
    let tcp = std::net::TcpStream::connect(("127.0.0.1", h.sshd.port()))?;
    let mut session = ssh2::Session::new()?;
    session.set_tcp_stream(tcp);
    session.handshake()?;
    session.userauth_pubkey_file(&h.user.name, None, &h.key.private, None)?;
    let mut channel = session.channel_session()?;
    channel.exec(&format!("cat {}", big.display()))?;
    count_lines(&mut channel, lines)?.reading("libssh2 channel (ssh2 crate)", lines, bytes, "")
}

/// What a reader got: lines, when the first byte came and when the last
/// read did.
struct Counted {
    got: u64,
    /// When the first byte came, and the machine's busy ticks then.
    first: Option<(Instant, u64)>,
    last: Instant,
    /// The machine's busy ticks at `last`.
    last_busy: u64,
}

impl Counted {
    /// The reading, if all `lines` arrived (else an error naming `name`
    /// and `detail`, e.g. the client's stderr).
    fn reading(
        self,
        name: &'static str,
        lines: u64,
        bytes: u64,
        detail: &str,
    ) -> anyhow::Result<Reading> {
        if self.got != lines {
            bail!("{name}: {} lines, not {lines}: {detail}", self.got);
        }
        let (first, first_busy) = self.first.context("nothing arrived")?;
        Ok(Reading {
            name,
            seconds: self.last.duration_since(first).as_secs_f64().max(1e-3),
            lines,
            bytes,
            cpu: self.last_busy.saturating_sub(first_busy) as f64 / procs::TICKS,
            messages: None,
        })
    }
}

/// Reads until `lines` lines arrived or the stream ended.
fn count_lines(r: &mut impl Read, lines: u64) -> std::io::Result<Counted> {
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    while got < lines {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(|| (Instant::now(), procs::machine_busy_ticks()));
        got += bytecount(&buf[..n]);
        last = Instant::now();
    }
    Ok(Counted {
        got,
        first,
        last,
        last_busy: procs::machine_busy_ticks(),
    })
}

fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Moves the file onto the followed path: the tap sees a new file there and
/// reads it from the start. Timed from the first line to the last at a
/// plain SUB socket on the streams endpoint.
fn through_rill(
    h: &OneHost,
    big: &std::path::Path,
    lines: u64,
    bytes: u64,
) -> anyhow::Result<Reading> {
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_rcvhwm(0)?;
    sub.set_subscribe(b"line/web01/app")?;
    sub.connect(&h.rill.streams)?;
    // Until the subscription is live: a line written now must arrive.
    let probe_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        h.append("app", b"probe\n");
        if sub.poll(zmq::POLLIN, 300)? > 0 {
            break;
        }
        if Instant::now() > probe_deadline {
            bail!("the subscriber got nothing within 20 s");
        }
    }
    while sub.poll(zmq::POLLIN, 500)? > 0 {
        sub.recv_multipart(0)?;
    }
    std::fs::rename(big, h.file("app"))?;
    let mut got = 0u64;
    let mut first: Option<(Instant, u64)> = None;
    let mut last = Instant::now();
    let mut dropped = 0u64;
    let mut messages = 0u64;
    let mut next_seq: Option<u64> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while got < lines && Instant::now() < deadline {
        if sub.poll(zmq::POLLIN, 2_000)? == 0 {
            if first.is_some() && last.elapsed() > Duration::from_secs(10) {
                break;
            }
            continue;
        }
        while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
            let now = Instant::now();
            first.get_or_insert_with(|| (now, procs::machine_busy_ticks()));
            last = now;
            // As cheap as `wc -l`: the seq and the number of lines are
            // found in the meta without parsing all of it.
            let meta = frames.get(1).map_or(&[][..], |m| &m[..]);
            let n = crate::workload::number_in(meta, "lines").unwrap_or(1);
            got += n;
            messages += 1;
            if let Some(seq) = crate::workload::number_in(meta, "seq") {
                if let Some(want) = next_seq {
                    dropped += seq.saturating_sub(want);
                }
                next_seq = Some(seq + n);
            }
        }
    }
    let last_busy = procs::machine_busy_ticks();
    let (first, first_busy) = first.context("no line arrived")?;
    if got < lines {
        eprintln!("rill: {got} of {lines} lines arrived ({dropped} dropped by the live stream)");
    }
    Ok(Reading {
        name: "rill (ssh_tap -> subscriber)",
        seconds: last.duration_since(first).as_secs_f64().max(1e-3),
        lines: got,
        bytes: bytes * got / lines,
        cpu: last_busy.saturating_sub(first_busy) as f64 / procs::TICKS,
        messages: Some(messages),
    })
}
