//! `rill demo`: the whole pipeline on one machine, no root, no system sshd.
//!
//! Starts the embedded SSH host (mock-servers) on 127.0.0.1:2222 with a
//! generated password, two log generators writing and rotating nginx-style
//! lines under /tmp/rill-demo/logs/, and `supervisor` with `config/demo.yaml`
//! (compiled in), each run from an empty state dir. Shows live lines for a
//! few seconds, runs a sample search,
//! prints how to try `rill tail` and `rill search`, and runs until Ctrl-C (or
//! for `--duration` seconds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::distributions::{Alphanumeric, DistString};
use rill_config::Config;
use rill_mock_servers::{EmbeddedSshHost, LogGenerator, LogGeneratorConfig};
use rill_process::{die_with_parent, sibling, Shutdown};

/// The demo's config, as shipped in `config/demo.yaml`.
pub const DEMO_CONFIG: &str = include_str!("../../../config/demo.yaml");
/// Where the demo keeps its config copy, logs and state.
pub const DEMO_DIR: &str = "/tmp/rill-demo";

/// Run the demo: an embedded SSH host, generated logs and a supervisor following them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
}

/// `rill demo`: runs the demo until Ctrl-C or `--duration`, then stops
/// everything it started.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let duration = args.duration.map(Duration::from_secs);
    let shutdown = Shutdown::on_signals()?;
    let dir = PathBuf::from(DEMO_DIR);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("could not create {}", logs.display()))?;
    let config_path = dir.join("rill.yaml");
    std::fs::write(&config_path, DEMO_CONFIG)?;

    let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
    // SAFETY: single-threaded at this point; children inherit the variable.
    std::env::set_var("RILL_DEMO_PASSWORD", &password);
    let cfg = Config::load(&config_path)?;
    let host = cfg
        .hosts
        .values()
        .next()
        .context("demo config has a host")?;

    let ssh = EmbeddedSshHost::start(
        &format!("{}:{}", host.address, host.port),
        &host.user,
        &password,
    )
    .with_context(|| {
        format!(
            "could not start the embedded SSH host on port {} (is another demo running?)",
            host.port
        )
    })?;
    // The port is ours, so no other demo runs: start from a clean slate (the
    // logs are generated anew, so their old index and checkpoints are moot).
    for stale in [cfg.state_dir.clone(), logs.clone()] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale)
                .with_context(|| format!("could not clear {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("could not create {}", logs.display()))?;
    writeln!(
        out,
        "embedded SSH host on 127.0.0.1:{} ({})",
        ssh.port(),
        ssh.fingerprint()
    )?;
    let generators: Vec<LogGenerator> = cfg
        .logs
        .values()
        .zip([20u32, 5])
        .map(|(log, rate)| {
            LogGenerator::start(LogGeneratorConfig {
                path: PathBuf::from(&log.path),
                lines_per_sec: rate,
                rotate_bytes: 512 * 1024,
                keep: 3,
            })
        })
        .collect();
    writeln!(out, "log generators writing to {}", logs.display())?;

    let mut supervisor = start_supervisor(&config_path, &dir.join("supervisor.log"))?;
    writeln!(
        out,
        "supervisor started (log: {}/supervisor.log)\n",
        dir.display()
    )?;

    let result = show(&cfg, &config_path, duration, &shutdown, out);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(supervisor.id() as i32, libc::SIGTERM) };
    let _ = supervisor.wait();
    for g in generators {
        g.stop();
    }
    ssh.stop();
    writeln!(out, "demo stopped")?;
    result
}

fn start_supervisor(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    let mut cmd = Command::new(sibling("supervisor"));
    cmd.arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    die_with_parent(&mut cmd);
    cmd.spawn()
        .with_context(|| format!("could not start {}", sibling("supervisor").display()))
}

fn show(
    cfg: &Config,
    config_path: &Path,
    duration: Option<Duration>,
    shutdown: &Shutdown,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    writeln!(out, "--- live lines (rill tail 'line/#') for 8 seconds ---")?;
    let until = Instant::now() + Duration::from_secs(8);
    crate::tail::follow(cfg, &["line/#".to_owned()], false, out, &|| {
        shutdown.requested() || Instant::now() >= until
    })?;

    writeln!(out, "\n--- rill search --limit 5 'GET AND 404' ---")?;
    let args = crate::search::SearchArgs {
        query: Some("GET AND 404".into()),
        limit: 5,
        ..Default::default()
    };
    if let Err(e) = crate::search::print(cfg, &args, out) {
        writeln!(out, "(search not ready yet: {e:#})")?;
    }
    let all = crate::search::SearchArgs {
        query: Some("*".into()),
        count: true,
        ..args
    };
    write!(out, "lines indexed so far: ")?;
    crate::search::print(cfg, &all, out).ok();

    let rill = std::env::current_exe().unwrap_or_else(|_| "rill".into());
    let c = config_path.display();
    let r = rill.display();
    writeln!(
        out,
        "\nThe demo keeps running. In another terminal try:\n  \
         {r} tail --config {c} 'line/+/access'\n  \
         {r} tail --config {c} --json 'parsed/#'\n  \
         {r} search --config {c} 'POST AND 500'\n  \
         {r} search --config {c} --count '*'\n  \
         {r} status --config {c}\n\
         Press Ctrl-C to stop."
    )?;
    out.flush()?;
    loop {
        if shutdown.sleep(Duration::from_millis(200)) {
            break;
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    Ok(())
}
