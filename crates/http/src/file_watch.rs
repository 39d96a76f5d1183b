//! The files a listener read when it started (TLS certificate and key,
//! tokens): whether they changed since, so a renewed certificate or a
//! removed token is taken without a restart of the process.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Modification time and length of each file (None: unreadable).
type Stamps = Vec<Option<(SystemTime, u64)>>;

/// A listener's files and how they were when last read.
#[derive(Debug)]
pub struct FileWatch {
    paths: Vec<PathBuf>,
    stamps: Stamps,
    checked: Instant,
}

impl FileWatch {
    /// How often the files are looked at.
    pub const EVERY: Duration = Duration::from_secs(5);

    /// Watches `paths`, as they are now.
    pub fn new(paths: Vec<PathBuf>) -> FileWatch {
        let stamps = stamps(&paths);
        FileWatch {
            paths,
            stamps,
            checked: Instant::now(),
        }
    }

    /// The files are being read now: later changes are measured from here.
    pub fn mark(&mut self) {
        self.stamps = stamps(&self.paths);
    }

    /// Whether a file changed since it was last read (looked at most every
    /// [`FileWatch::EVERY`]); a change is told once.
    pub fn changed(&mut self) -> bool {
        if self.checked.elapsed() < Self::EVERY {
            return false;
        }
        self.checked = Instant::now();
        let now = stamps(&self.paths);
        if now == self.stamps {
            return false;
        }
        self.stamps = now;
        true
    }
}

fn stamps(paths: &[PathBuf]) -> Stamps {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}
