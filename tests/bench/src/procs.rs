//! Resident memory and CPU time of a process tree, from /proc.

use std::collections::BTreeMap;

/// One process as /proc shows it now.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub name: String,
    pub rss_kib: u64,
    /// Proportional set size: shared pages divided among their users.
    pub pss_kib: u64,
    /// User + system CPU time, in clock ticks.
    pub ticks: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub const TICKS: f64 = 100.0;

/// `root` and every process below it.
pub fn tree(root: u32) -> Vec<Proc> {
    trees(&[root])
}

/// Every root and every process below one, from one pass over /proc.
pub fn trees(roots: &[u32]) -> Vec<Proc> {
    let mut parent: BTreeMap<u32, u32> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(ppid) = stat(pid).map(|s| s.1) {
            parent.insert(pid, ppid);
        }
    }
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (c, p) in &parent {
        children.entry(*p).or_default().push(*c);
    }
    let mut ours = roots.to_vec();
    let mut i = 0;
    while i < ours.len() {
        if let Some(c) = children.get(&ours[i]) {
            ours.extend(c);
        }
        i += 1;
    }
    ours.into_iter().filter_map(one).collect()
}

/// One process, if it is still there.
pub fn one(pid: u32) -> Option<Proc> {
    let (name, _, ticks) = stat(pid)?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |key: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Some(Proc {
        pid,
        name,
        rss_kib: field("Rss:"),
        pss_kib: field("Pss:"),
        ticks,
    })
}

/// The highest resident set size the process had (`VmHWM`), KiB; 0 when
/// it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (comm, ppid, utime + stime) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(String, u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let name = s[open + 1..close].to_owned();
    let rest: Vec<&str> = s[close + 2..].split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, ppid, utime + stime))
}

/// Sums per program name: (processes, RSS KiB, PSS KiB, ticks).
pub fn by_name(procs: &[Proc]) -> BTreeMap<String, (usize, u64, u64, u64)> {
    let mut m: BTreeMap<String, (usize, u64, u64, u64)> = BTreeMap::new();
    for p in procs {
        let e = m.entry(p.name.clone()).or_default();
        e.0 += 1;
        e.1 += p.rss_kib;
        e.2 += p.pss_kib;
        e.3 += p.ticks;
    }
    m
}

/// CPU use between two samples of the same tree, in % of one core, by name.
pub fn cpu_percent(before: &[Proc], after: &[Proc], seconds: f64) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    for a in after {
        let was = before
            .iter()
            .find(|b| b.pid == a.pid)
            .map_or(0, |b| b.ticks);
        *m.entry(a.name.clone()).or_default() +=
            a.ticks.saturating_sub(was) as f64 / TICKS / seconds * 100.0;
    }
    m
}

/// `12.3 MB` from KiB.
pub fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

/// Busy CPU time of the whole machine so far (every core, all but idle and
/// iowait), in clock ticks: what short-lived processes (a fork per check on
/// the servers' side) cost too, which a process tree sampled twice misses.
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

/// Waits until no thread of this process has a name starting with one of
/// `prefixes` (e.g. a dropped index writer's merge threads), for at most
/// `limit`.
pub fn await_own_threads_gone(prefixes: &[&str], limit: std::time::Duration) -> anyhow::Result<()> {
    let named = || -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|c| c.trim_end().to_owned())
            .filter(|c| prefixes.iter().any(|p| c.starts_with(p)))
            .collect()
    };
    let began = std::time::Instant::now();
    loop {
        let left = named();
        if left.is_empty() {
            return Ok(());
        }
        if began.elapsed() > limit {
            anyhow::bail!("threads still running after {limit:?}: {left:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
