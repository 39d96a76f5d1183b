//! Numbered lines, written at a steady pace: `line(n)` is the n-th line a
//! `Writer` appends, `number` reads its number back from an indexed body,
//! so a test can tell exactly which lines the index holds.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The line numbered `n`, newline included.
pub fn line(n: usize) -> String {
    format!("n={n:07} the quick brown fox jumps over the lazy dog\n")
}

/// The number of a line as written (`line(k)` without its newline).
pub fn number(body: &str) -> Option<usize> {
    let k = body.get(2..9)?.parse().ok()?;
    (format!("{body}\n") == line(k)).then_some(k)
}

/// Appends numbered lines to one file at about 60 per second, reopening it
/// by name when told (a daemon's "postrotate"), and a burst when asked.
pub struct Writer {
    written: Arc<AtomicUsize>,
    /// Set to reopen the file by name before the next line.
    pub reopen: Arc<AtomicBool>,
    /// Set to `k` to write the next `k` lines in one go.
    pub burst: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(path: PathBuf) -> Writer {
        let w = Writer {
            written: Arc::default(),
            reopen: Arc::default(),
            burst: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        let (written, reopen, burst, stop) = (
            Arc::clone(&w.written),
            Arc::clone(&w.reopen),
            Arc::clone(&w.burst),
            Arc::clone(&w.stop),
        );
        let thread = std::thread::spawn(move || {
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap()
            };
            let mut f = open();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                if reopen.swap(false, Ordering::SeqCst) {
                    f = open();
                }
                let k = burst.swap(0, Ordering::SeqCst);
                if k > 0 {
                    for chunk in (n..n + k).collect::<Vec<_>>().chunks(500) {
                        let text: String = chunk.iter().map(|&i| line(i)).collect();
                        f.write_all(text.as_bytes()).unwrap();
                    }
                    n += k;
                } else {
                    f.write_all(line(n).as_bytes()).unwrap();
                    n += 1;
                }
                written.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(16));
            }
        });
        Writer {
            thread: Some(thread),
            ..w
        }
    }

    /// How many lines are written so far (numbered `0..written`).
    pub fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }

    /// Stops writing; how many lines were written in all.
    pub fn finish(&mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.written()
    }
}
