//! rill-bench: measures the whole pipeline against a real OpenSSH sshd on
//! loopback, with the release binaries beside it. Not part of the test
//! suite; see `docs/BENCHMARKS.md` for how to run it and the results.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/rill-bench latency --rate 1000 --seconds 20
//! target/release/rill-bench latency --rate 1000 --busybox
//! target/release/rill-bench throughput --lines 2000000
//! target/release/rill-bench wire --lines 2000000
//! target/release/rill-bench searchable --rate 1000 --seconds 60
//! target/release/rill-bench memory --rate 20000 --seconds 60 --stall-seconds 300
//! target/release/rill-bench scale --hosts 200 --rate 10
//! target/release/rill-bench backlog --lines 1000000 --parser raw
//! ```

use clap::{Parser, Subcommand};
use rill_e2e::{BusyBoxHost, OneHost, SshdOptions};

mod backlog;
mod cluster;
mod latency;
mod memory;
mod page;
mod procs;
mod rules;
mod scale;
mod searchable;
mod stats;
mod throughput;
mod wire;
mod workload;

/// Benchmarks of Rill's pipeline on this machine.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Live latency: from write() on the server to a `rill tail` subscriber
    /// printing the line.
    Latency(latency::Args),
    /// Tap throughput: a file read through ssh_tap to a subscriber, next to
    /// `ssh host cat` and `ssh host tail -c +1 -F` of the same file.
    Throughput(throughput::Args),
    /// The live path's ceiling without SSH or the index: line metas made and
    /// published through the stream proxy to a subscriber.
    Wire(wire::Args),
    /// Time to searchable: from write() on the server until `rill search`
    /// returns the line.
    Searchable(searchable::Args),
    /// RSS and CPU of every component at a steady rate, then with a
    /// subscriber that stopped reading.
    Memory(memory::Args),
    /// Many hosts (one sshd each) with two logs each on one collector.
    Scale(scale::Args),
    /// A backlog appended at once, from the append until it is all
    /// searchable; next to `ssh cat` and the standalone indexer.
    Backlog(backlog::Args),
    /// Write-to-firing latency of an `any` rule with a command action.
    Rules(rules::Args),
    /// The search page's first hits over a large index, in Chromium.
    Page(page::Args),
    /// What a cluster member costs etcd per 1,000 logs.
    Cluster(cluster::Args),
}

/// A running pipeline following `app.log` on one loopback sshd, whose shell
/// and tools are BusyBox only with `busybox` (keep the second value alive
/// as long as the first).
pub(crate) fn app_host(busybox: bool) -> (OneHost, Option<BusyBoxHost>) {
    let bb = busybox.then(BusyBoxHost::new);
    let opts = bb
        .as_ref()
        .map(|b| b.opts.clone())
        .unwrap_or_else(SshdOptions::default);
    let h = OneHost::start(OneHost::with_sshd(opts, &["app"]), &["app"]);
    (h, bb)
}

/// `rill tail --json line/web01/app` on `h`, its stdout piped to us.
pub(crate) fn rill_tail(h: &OneHost) -> anyhow::Result<std::process::Child> {
    use anyhow::Context;
    use std::process::{Command, Stdio};
    Command::new(rill_e2e::bin("rill"))
        .args(["tail", "--json", "--config"])
        .arg(&h.rill.config)
        .arg("line/web01/app")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start rill tail")
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Latency(a) => latency::run(&a),
        Command::Throughput(a) => throughput::run(&a),
        Command::Wire(a) => wire::run(&a),
        Command::Searchable(a) => searchable::run(&a),
        Command::Memory(a) => memory::run(&a),
        Command::Scale(a) => scale::run(&a),
        Command::Backlog(a) => backlog::run(&a),
        Command::Rules(a) => rules::run(&a),
        Command::Page(a) => page::run(&a),
        Command::Cluster(a) => cluster::run(&a),
    };
    if let Err(e) = result {
        eprintln!("rill-bench: {e:#}");
        std::process::exit(2);
    }
}
