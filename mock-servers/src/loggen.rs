//! A log writer for the demo: nginx combined-format lines at a set rate,
//! rotated like logrotate's `create` mode (rename `x` to `x.1`, shifting older
//! ones, then create a new empty `x`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;

#[derive(Debug, Clone)]
pub struct LogGeneratorConfig {
    pub path: PathBuf,
    pub lines_per_sec: u32,
    /// Rotate once the file is at least this big.
    pub rotate_bytes: u64,
    /// Rotated files kept (`x.1` .. `x.keep`).
    pub keep: u32,
}

/// A background thread writing lines until stopped.
pub struct LogGenerator {
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const METHODS: [&str; 5] = ["GET", "GET", "GET", "POST", "PUT"];
const PATHS: [&str; 8] = [
    "/",
    "/index.html",
    "/api/v1/orders",
    "/api/v1/users/42",
    "/static/app.js",
    "/login",
    "/search?q=rill",
    "/healthz",
];
const STATUSES: [u16; 8] = [200, 200, 200, 200, 301, 404, 500, 503];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "curl/8.4.0",
    "Prometheus/2.48.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
];

/// One nginx combined-format line, without its newline.
pub fn nginx_line(rng: &mut impl Rng, now: DateTime<Utc>) -> String {
    let ip = format!(
        "{}.{}.{}.{}",
        rng.gen_range(1..224),
        rng.gen::<u8>(),
        rng.gen::<u8>(),
        rng.gen_range(1..255)
    );
    let status = STATUSES[rng.gen_range(0..STATUSES.len())];
    format!(
        "{ip} - - [{}] \"{} {} HTTP/1.1\" {status} {} \"-\" \"{}\"",
        now.format("%d/%b/%Y:%H:%M:%S %z"),
        METHODS[rng.gen_range(0..METHODS.len())],
        PATHS[rng.gen_range(0..PATHS.len())],
        rng.gen_range(0..50_000),
        AGENTS[rng.gen_range(0..AGENTS.len())],
    )
}

impl LogGenerator {
    pub fn start(cfg: LogGeneratorConfig) -> Self {
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (Arc::clone(&written), Arc::clone(&stop));
        let thread = std::thread::spawn(move || write_loop(&cfg, &w, &s));
        LogGenerator {
            written,
            stop,
            thread: Some(thread),
        }
    }

    pub fn lines_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogGenerator {
    fn drop(&mut self) {
        self.halt();
    }
}

fn write_loop(cfg: &LogGeneratorConfig, written: &AtomicU64, stop: &AtomicBool) {
    if let Some(dir) = cfg.path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut rng = rand::thread_rng();
    let interval = Duration::from_secs_f64(1.0 / f64::from(cfg.lines_per_sec.max(1)));
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let line = nginx_line(&mut rng, Utc::now()) + "\n";
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&cfg.path) {
            if f.write_all(line.as_bytes()).is_ok() {
                written.fetch_add(1, Ordering::Relaxed);
            }
            if f.metadata().is_ok_and(|m| m.len() >= cfg.rotate_bytes) {
                rotate(&cfg.path, cfg.keep);
            }
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn rotate(path: &Path, keep: u32) {
    for n in (1..keep.max(1)).rev() {
        let _ = std::fs::rename(rotated(path, n), rotated(path, n + 1));
    }
    let _ = std::fs::rename(path, rotated(path, 1));
    let _ = std::fs::File::create(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_combined_format() {
        let mut rng = rand::thread_rng();
        let line = nginx_line(&mut rng, "2026-11-22T10:00:00Z".parse().unwrap());
        assert!(
            line.contains(" - - [22/Nov/2026:10:00:00 +0000] \""),
            "{line}"
        );
        assert!(line.contains(" HTTP/1.1\" "), "{line}");
        assert_eq!(line.matches('"').count(), 6, "{line}");
    }

    #[test]
    fn the_generator_writes_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let g = LogGenerator::start(LogGeneratorConfig {
            path: path.clone(),
            lines_per_sec: 5000,
            rotate_bytes: 2000,
            keep: 2,
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !rotated(&path, 2).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        g.stop();
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists(), "keeps only 2");
        let text = std::fs::read_to_string(rotated(&path, 1)).unwrap();
        assert!(text.lines().all(|l| l.contains(" HTTP/1.1\" ")));
    }
}
