//! `ssh_tap` for one host: connect, start the session server when the host
//! has one, follow every log until shutdown or a lost connection
//! ([`crate::turn`]), then save the checkpoints and close what it opened.

use std::time::Duration;

use anyhow::anyhow;
use rill_config::{Config, Log};
use rill_process::Shutdown;
use rill_ssh::Pool;
use tracing::{error, info};

use crate::checkpoint;
use crate::follow::Follow;
use crate::journal::JournalLog;
use crate::logs::Logs;
use crate::pattern::Pattern;
use crate::publish::Outputs;
use crate::saver::CheckpointSaver;
use crate::script::{RunAs, SudoPassword};
use crate::status::StatusBoard;
use crate::turn;

/// Who runs `log`'s programs on the server, with the reason the sudo
/// password could not be had (then sudo runs with `-n`, and says so if it
/// needs one).
fn run_as(log: &Log, host: &rill_config::Host) -> (RunAs, Option<String>) {
    if !log.sudo {
        return (RunAs::User, None);
    }
    let Some(secret) = &host.sudo_password else {
        return (RunAs::Root(None), None);
    };
    match secret
        .read()
        .map_err(|e| e.to_string())
        .and_then(SudoPassword::new)
    {
        Ok(p) => (RunAs::Root(Some(p)), None),
        Err(e) => {
            error!(log = %log.name, error = %e, "no sudo password");
            (RunAs::Root(None), Some(format!("sudo password: {e}")))
        }
    }
}

/// Runs the tap for `host` until shutdown or until the connection fails
/// (then it returns the error and `robust_ssh_tap` restarts it).
pub fn run(cfg: &Config, host: &str, shutdown: &Shutdown) -> anyhow::Result<()> {
    let host_cfg = cfg
        .hosts
        .get(host)
        .ok_or_else(|| anyhow!("host {host:?} is not in {}", cfg.file.display()))?;
    let logs: Vec<Log> = cfg.logs_for(host).cloned().collect();
    let ctx = zmq::Context::new();
    let mut out = Outputs::connect(&ctx, cfg, host)?;
    let mut board = StatusBoard::new(cfg, host, &[]);

    let mut conns = match Pool::connect(cfg, host_cfg) {
        Ok(c) => c,
        Err(e) => {
            error!(host, error = %e, "could not connect");
            board.set_connected(false, Some(e.to_string()));
            board.flush(&out.live, true);
            return Err(e.into());
        }
    };
    info!(host, address = %host_cfg.address, port = host_cfg.port, logs = logs.len(), "connected");
    board.set_connected(true, None);
    // The session-control protocol, if configured: its own thread and SSH connection.
    let sessions = rill_sessions::spawn(cfg, host_cfg, shutdown);
    if let Some(s) = &sessions {
        board.watch_sessions(s.report.clone());
    }

    let saved = checkpoint::load(cfg, host);
    let mut follows: Vec<Follow> = Vec::new();
    let mut patterns: Vec<Pattern> = Vec::new();
    let mut journals: Vec<JournalLog> = Vec::new();
    for l in logs {
        let (run_as, refused) = run_as(&l, host_cfg);
        if l.journal.is_some() {
            let row = board.add_other(&l);
            board.pattern(row).error = refused;
            let saved = saved.journals.get(&l.name).cloned();
            // Durable numbers from the top down, apart from the files'.
            let key = usize::MAX - journals.len();
            journals.push(JournalLog::new(l, (cfg.tap, run_as), saved, (row, key)));
            continue;
        }
        if l.glob.is_some() {
            let p = Pattern::restore(l, (cfg.tap, run_as), &saved, &mut follows, &mut board);
            if let Some(e) = refused {
                board.pattern(p.row()).error = Some(e);
            }
            patterns.push(p);
            continue;
        }
        let resume = saved.logs.get(&l.name).copied();
        let draining = saved.draining.get(&l.name).cloned().unwrap_or_default();
        let history = saved.history.get(&l.name).cloned().unwrap_or_default();
        let row = board.add_log(&l);
        board.log(row).error = refused;
        let mut f = Follow::new(l, cfg.tap, resume, draining, history);
        f.run_as = run_as;
        follows.push(f);
    }
    Follow::know_each_other(&mut follows);
    let mut saver = CheckpointSaver::new(cfg, host, saved);
    let mut logs = Logs {
        follows,
        patterns,
        journals,
    };
    let result = turn::follow(
        &mut conns, &mut logs, &mut out, &mut board, &mut saver, shutdown,
    );
    if let Err(e) = &result {
        // Say so now: closing below may take a while on a dead connection.
        let error = format!("{e:#}");
        error!(host, error = %error, "connection lost");
        board.set_connected(false, Some(error));
        board.flush(&out.live, true);
    }
    // Receipts that arrived meanwhile count for the last checkpoint.
    let _ = out.durable.pump();
    let Logs {
        follows,
        patterns,
        journals,
    } = &mut logs;
    saver.save(follows, patterns, journals, &out.durable);

    // Closing waits for the server's replies for at most this long per
    // request: a while when it answers, hardly at all when it does not.
    let within = if result.is_ok() {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(300)
    };
    conns.blocking(within);
    if result.is_ok() {
        // Close what we opened so the remote follow scripts end now, not
        // when sshd notices the connection is gone.
        for f in follows.iter_mut() {
            f.close();
        }
        for p in patterns.iter_mut() {
            p.close();
        }
        for j in journals.iter_mut() {
            j.close();
        }
    }
    conns.disconnect(within, "rill ssh_tap stopping");
    let result = rill_sessions::finish(sessions, result);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    board.set_connected(false, error.or_else(|| Some("stopped".into())));
    board.flush(&out.live, true);
    result
}
