//! Scale on one collector: many hosts (each its own OpenSSH sshd on
//! loopback, each its own SSH connection) with two logs each, written at a
//! slow steady rate. Measures the time from `supervisor` start until every
//! log's topic delivered a line to a subscriber, then the whole collector
//! process tree's RSS, PSS and CPU at that load. The sshds and their
//! remote scripts run on the same machine but are the servers' side: they
//! are reported apart.

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rill_e2e::{Rill, TestAuth, TestHost, TestLog};
use rill_test_support::{Sshd, SshdOptions, TestUser};

use crate::procs::{self, mb};

#[derive(clap::Args)]
pub struct Args {
    /// Hosts, each with its own sshd.
    #[arg(long, default_value_t = 200)]
    pub hosts: usize,
    /// Lines per second written to each log.
    #[arg(long, default_value_t = 10)]
    pub rate: u64,
    /// How long the steady state is measured.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The config's `tap.poll_interval`: how often each follow script
    /// checks its file for rotation (each check forks `sleep`, `ls` and
    /// `wc` on the server, and sends the tap a tick and the file's size).
    #[arg(long, default_value = "1s")]
    pub poll_interval: String,
    /// The config's `tap.stream_poll`: how often each server's GNU tail
    /// looks for new lines (the servers' side's main cost at 20 ms).
    #[arg(long, default_value = "20ms")]
    pub stream_poll: String,
    /// The config's `tap.hosts_per_process`: hosts followed by one ssh_tap
    /// process, each on a thread of its own (a number, or `auto`, the
    /// default).
    #[arg(long, default_value = "auto")]
    pub hosts_per_process: String,
    /// The niceness of the simulated servers (each sshd and all it forks).
    /// They stand for other machines: on a saturated box they should wait,
    /// not the collector and the subscriber being measured. 0 to compete.
    #[arg(long, default_value_t = 10)]
    pub servers_nice: i32,
    /// Instead of Rill, the baseline: one OpenSSH `ssh host tail -n 0 -F
    /// FILE` per log, read by this benchmark; the same figures for those
    /// client processes.
    #[arg(long)]
    pub ssh_tail: bool,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    // Hundreds of sshds and connections need more than the default 1024 fds.
    rill_process::raise_file_limit();
    let user = TestUser::get()?;
    let key = user.authorize_new_key()?;
    let remote = user.scratch_dir()?;
    let logs = ["app", "sys"];
    for l in logs {
        remote.append(&format!("{l}.log"), b"")?;
    }
    let t = Instant::now();
    let mut sshds = Vec::with_capacity(a.hosts);
    for _ in 0..a.hosts {
        let sshd = Sshd::start(SshdOptions::default())?;
        let pid = sshd.pid().context("sshd has no pid")?;
        // SAFETY: setpriority(2) on a process we started; its children
        // (every connection's sshd and follow script) inherit it.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, a.servers_nice) } != 0
        {
            bail!(
                "could not renice sshd {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
        sshds.push(sshd);
    }
    eprintln!(
        "{} sshd started in {:.1} s",
        a.hosts,
        t.elapsed().as_secs_f64()
    );
    let names: Vec<String> = (0..a.hosts).map(|i| format!("h{i:03}")).collect();
    let hosts: Vec<TestHost> = names
        .iter()
        .zip(&sshds)
        .map(|(n, s)| TestHost {
            name: n,
            port: s.port(),
            user: &user.name,
            auth: TestAuth::Key(&key.private),
            known_hosts: "strict",
        })
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let paths: Vec<_> = logs
        .iter()
        .map(|l| remote.file(&format!("{l}.log")))
        .collect();
    let entries: Vec<TestLog> = logs
        .iter()
        .zip(&paths)
        .map(|(name, path)| TestLog {
            name,
            path,
            hosts: &name_refs,
        })
        .collect();
    let known: Vec<String> = sshds.iter().map(Sshd::known_hosts_line).collect();
    let mut rill = Rill::new(&hosts, &entries, &known);
    rill.append_config(&format!(
        "tap:\n  poll_interval: {}\n  stream_poll: {}\n  hosts_per_process: {}\n",
        a.poll_interval, a.stream_poll, a.hosts_per_process
    ));

    // Every log of every host is written to (the hosts share one file per
    // log, so each write shows up on every host's topic).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let paths = paths.clone();
        let rate = a.rate;
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut files = paths
                .iter()
                .map(|p| std::fs::OpenOptions::new().append(true).open(p))
                .collect::<std::io::Result<Vec<_>>>()?;
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                for s in n..due {
                    for f in &mut files {
                        f.write_all(crate::workload::line(s).as_bytes())?;
                    }
                }
                n = n.max(due);
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        })
    };

    if a.ssh_tail {
        let result = ssh_tail(a, &sshds, &key, &paths);
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer")?;
        return result;
    }

    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_rcvhwm(0)?;
    sub.set_subscribe(b"line/")?;
    sub.connect(&rill.streams)?;

    let want = a.hosts * logs.len();
    let start = Instant::now();
    rill.start();
    let supervisor = rill.supervisor_pid().context("no supervisor")?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut lines = 0u64;
    let deadline = start + Duration::from_secs(300);
    while seen.len() < want {
        if Instant::now() > deadline {
            bail!(
                "only {} of {want} logs streamed within 300 s; log:\n{}",
                seen.len(),
                tail_of(&rill.log(), 40)
            );
        }
        if sub.poll(zmq::POLLIN, 500)? > 0 {
            while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
                lines += lines_of(&frames);
                seen.insert(frames[0].clone());
            }
        }
    }
    let all_streaming = start.elapsed();
    println!(
        "scale hosts={} logs={want} rate={}/s per log poll_interval={} stream_poll={} hosts_per_process={} servers_nice={}: all {want} logs streaming {:.1} s after supervisor start",
        a.hosts,
        a.rate,
        a.poll_interval,
        a.stream_poll,
        a.hosts_per_process,
        a.servers_nice,
        all_streaming.as_secs_f64()
    );

    // Steady state: settle, then measure.
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle {
        drain(&sub, &mut lines)?;
    }
    let before = procs::tree(supervisor);
    let machine_before = procs::machine_busy_ticks();
    let lines_before = lines;
    let t = Instant::now();
    let mut max_rss = 0u64;
    let mut max_pss = 0u64;
    let mut next_sample = Instant::now();
    while t.elapsed() < Duration::from_secs(a.seconds) {
        drain(&sub, &mut lines)?;
        if Instant::now() >= next_sample {
            let now = procs::tree(supervisor);
            max_rss = max_rss.max(now.iter().map(|p| p.rss_kib).sum());
            max_pss = max_pss.max(now.iter().map(|p| p.pss_kib).sum());
            next_sample += Duration::from_secs(5);
        }
    }
    let after = procs::tree(supervisor);
    let machine_after = procs::machine_busy_ticks();
    let secs = t.elapsed().as_secs_f64();
    let cpu = procs::cpu_percent(&before, &after, secs);
    let by = procs::by_name(&after);
    let total_cpu: f64 = cpu.values().sum();
    println!(
        "  {:.0} lines/s reached one subscriber of line/# (want {})",
        (lines - lines_before) as f64 / secs,
        want as u64 * a.rate
    );
    for (name, (n, rss, pss, _)) in &by {
        println!(
            "    {:<15} x{n:<4} RSS {:>9}  PSS {:>9}  CPU {:>5.1} % of a core",
            name,
            mb(*rss),
            mb(*pss),
            cpu.get(name).copied().unwrap_or(0.0)
        );
    }
    println!(
        "  whole tree: {} processes, RSS {} (max {}), PSS {} (max {}), CPU {:.1} % of a core",
        after.len(),
        mb(after.iter().map(|p| p.rss_kib).sum()),
        mb(max_rss),
        mb(after.iter().map(|p| p.pss_kib).sum()),
        mb(max_pss),
        total_cpu
    );
    let machine_cpu =
        machine_after.saturating_sub(machine_before) as f64 / procs::TICKS / secs * 100.0;
    println!(
        "  whole machine busy: {machine_cpu:.1} % of a core (of 200 %): the collector, the \
         servers' side with every process it forked, this benchmark and the kernel"
    );
    let server_roots: Vec<u32> = sshds.iter().filter_map(Sshd::pid).collect();
    let server_before = procs::trees(&server_roots);
    std::thread::sleep(Duration::from_secs(10));
    let server_after = procs::trees(&server_roots);
    let server_by = procs::cpu_percent(&server_before, &server_after, 10.0);
    let server_cpu: f64 = server_by.values().sum();
    for (name, c) in &server_by {
        println!("    server side {name:<15} CPU {c:>5.1} % of a core");
    }
    println!(
        "  servers' side (sshd and the follow scripts, not Rill's collector): {} processes, CPU {:.1} % of a core",
        server_after.len(),
        server_cpu
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer")?;
    rill.stop(Duration::from_secs(30));
    drop(sshds);
    Ok(())
}

/// The baseline: `ssh host tail -n 0 -F FILE` per log, each client's
/// output read here (one `poll` over every pipe, lines counted).
fn ssh_tail(
    a: &Args,
    sshds: &[Sshd],
    key: &rill_test_support::TestKey,
    paths: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::process::Stdio;

    let start = Instant::now();
    let mut clients = Vec::new();
    for sshd in sshds {
        for path in paths {
            let child = sshd
                .client(key, &format!("tail -n 0 -F {}", path.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("could not start ssh")?;
            clients.push(child);
        }
    }
    let want = clients.len();
    let mut outs: Vec<std::process::ChildStdout> = clients
        .iter_mut()
        .map(|c| c.stdout.take().expect("piped"))
        .collect();
    let mut lines = vec![0u64; want];
    let mut buf = vec![0u8; 64 * 1024];
    let mut read_for = |lines: &mut [u64], timeout_ms: i32| -> anyhow::Result<()> {
        let mut fds: Vec<libc::pollfd> = outs
            .iter()
            .map(|o| libc::pollfd {
                fd: o.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll(2) on an array we own, of the length we pass.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                let n = outs[i].read(&mut buf)?;
                if n == 0 {
                    bail!("ssh client {i} ended");
                }
                lines[i] += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
        Ok(())
    };
    let deadline = start + Duration::from_secs(300);
    while lines.contains(&0) {
        if Instant::now() > deadline {
            bail!(
                "only {} of {want} ssh clients delivered a line within 300 s",
                lines.iter().filter(|&&n| n > 0).count()
            );
        }
        read_for(&mut lines, 500)?;
    }
    println!(
        "baseline ssh_tail hosts={} logs={want} rate={}/s per log servers_nice={}: all {want} `ssh host tail -n 0 -F` streaming {:.1} s after the first was started",
        a.hosts,
        a.rate,
        a.servers_nice,
        start.elapsed().as_secs_f64()
    );
    let pids: Vec<u32> = clients.iter().map(|c| c.id()).collect();
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle {
        read_for(&mut lines, 200)?;
    }
    let before = procs::trees(&pids);
    let lines_before: u64 = lines.iter().sum();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(a.seconds) {
        read_for(&mut lines, 200)?;
    }
    let after = procs::trees(&pids);
    let secs = t.elapsed().as_secs_f64();
    let cpu: f64 = procs::cpu_percent(&before, &after, secs).values().sum();
    println!(
        "  {:.0} lines/s read from the clients (want {})",
        (lines.iter().sum::<u64>() - lines_before) as f64 / secs,
        want as u64 * a.rate
    );
    println!(
        "  ssh clients: {} processes, RSS {}, PSS {}, CPU {cpu:.1} % of a core",
        after.len(),
        mb(after.iter().map(|p| p.rss_kib).sum()),
        mb(after.iter().map(|p| p.pss_kib).sum()),
    );
    for mut c in clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(())
}

fn drain(sub: &zmq::Socket, lines: &mut u64) -> anyhow::Result<()> {
    if sub.poll(zmq::POLLIN, 200)? > 0 {
        while let Ok(frames) = sub.recv_multipart(zmq::DONTWAIT) {
            *lines += lines_of(&frames);
        }
    }
    Ok(())
}

/// How many lines a `line/` message holds.
fn lines_of(frames: &[Vec<u8>]) -> u64 {
    frames
        .get(1)
        .and_then(|m| crate::workload::number_in(m, "lines"))
        .unwrap_or(1)
}

fn tail_of(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
