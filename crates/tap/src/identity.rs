//! Which file a reader reads: the identity its lines carry (`file_id` in
//! every line's metadata and index document).
//!
//! A file keeps the identity its checkpoint gave it whenever the server
//! honours a resume. A new file is named by device, inode and the
//! fingerprint of its first 64 bytes, or, while it is shorter than that, by
//! a random tag (verified by the bytes it had); never by the identity of the
//! file it replaced.

use rill_proto::FileId;

use crate::checkpoint::{LogCheckpoint, Unfinished, Verify};
use crate::script::FINGERPRINT_BYTES;

/// What the script's header said about the file it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub dev: u64,
    pub ino: u64,
    pub verify: Verify,
    pub start: u64,
}

/// What a reader expected to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The file being finished, or the resume point of the current file.
    pub at: Option<LogCheckpoint>,
    /// An identity a new file must not get: the one it replaced.
    pub avoid: Option<FileId>,
    /// Reading the file the path names now; else an old file (finishing or
    /// catching up), which keeps its name.
    pub current: bool,
}

/// What the reader of `opened` calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    pub file_id: FileId,
    pub verify: Verify,
    /// The resume point the server did not honour: that file is unfinished
    /// (renamed away: found again by inode; truncated: its copy found by its
    /// first bytes).
    pub replaced: Option<Unfinished>,
}

/// Names the file a header announced.
pub fn identify(opened: Opened, expected: Expected) -> Named {
    let Opened {
        dev,
        ino,
        verify,
        start,
    } = opened;
    let mut replaced = None;
    match expected.at {
        // A finish: the file being finished keeps its name.
        Some(prev) if !expected.current => {
            return Named {
                file_id: prev.file_id,
                verify: prev.verify(),
                replaced: None,
            }
        }
        // The server honoured the resume point: the same file, now perhaps
        // verified by more of its bytes.
        Some(prev) if prev.file_id.ino == ino && prev.offset == start => {
            let verify = if verify.len >= prev.verify().len {
                verify
            } else {
                prev.verify()
            };
            return Named {
                file_id: prev.file_id,
                verify,
                replaced: None,
            };
        }
        // It did not. Even at offset 0 the old file may hold lines the index
        // never confirmed.
        Some(prev) if expected.current => {
            replaced = Some(Unfinished {
                at: prev,
                copy: prev.file_id.ino == ino,
            });
        }
        _ => {}
    }
    let avoid = expected.avoid.or(expected.at.map(|p| p.file_id));
    Named {
        file_id: new_identity(dev, ino, verify, avoid),
        verify,
        replaced,
    }
}

/// A new file's identity: device, inode and the fingerprint of its first 64
/// bytes; a random tag while it is shorter, or when that would repeat the
/// identity of the file it replaced.
pub fn new_identity(dev: u64, ino: u64, verify: Verify, avoid: Option<FileId>) -> FileId {
    let tag = || uuid::Uuid::new_v4().as_u128() as u32;
    let mut id = FileId {
        dev,
        ino,
        fingerprint: if verify.len == FINGERPRINT_BYTES {
            verify.fp
        } else {
            tag()
        },
    };
    while Some(id) == avoid {
        id.fingerprint = tag();
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Verify = Verify { len: 64, fp: 42 };

    fn at(ino: u64, offset: u64) -> LogCheckpoint {
        let file_id = FileId {
            dev: 1,
            ino,
            fingerprint: 42,
        };
        LogCheckpoint::new(file_id, offset, FULL)
    }

    fn opened(ino: u64, start: u64) -> Opened {
        Opened {
            dev: 1,
            ino,
            verify: FULL,
            start,
        }
    }

    fn expected(at: Option<LogCheckpoint>, current: bool) -> Expected {
        Expected {
            at,
            avoid: None,
            current,
        }
    }

    #[test]
    fn short_files_and_replacements_never_share_a_name() {
        let short = Verify { len: 10, fp: 42 };
        // A full fingerprint names the file by its content...
        assert_eq!(new_identity(1, 2, FULL, None).fingerprint, 42);
        // ... unless the file it replaced had that very name.
        let old = FileId {
            dev: 1,
            ino: 2,
            fingerprint: 42,
        };
        assert_ne!(new_identity(1, 2, FULL, Some(old)), old);
        // Short files get a tag each time: two short files of one inode
        // (copytruncate, inode reuse) never collide.
        let a = new_identity(1, 2, short, None);
        let b = new_identity(1, 2, short, None);
        assert_ne!(a, b);
        assert_eq!((a.dev, a.ino), (1, 2));
    }

    #[test]
    fn an_honoured_resume_keeps_the_name_and_a_refused_one_leaves_the_old_file_unfinished() {
        let prev = at(7, 100);
        let kept = identify(opened(7, 100), expected(Some(prev), true));
        assert_eq!((kept.file_id, kept.replaced), (prev.file_id, None));
        // Renamed away: the path names inode 8 now; 7 is finished by inode.
        let moved = identify(opened(8, 0), expected(Some(prev), true));
        assert_ne!(moved.file_id, prev.file_id);
        assert_eq!(
            moved.replaced,
            Some(Unfinished {
                at: prev,
                copy: false
            })
        );
        // Same inode from 0: truncated; the rest is in its copy.
        let truncated = identify(opened(7, 0), expected(Some(prev), true));
        assert_ne!(truncated.file_id, prev.file_id, "never the old name");
        assert_eq!(truncated.replaced.map(|u| u.copy), Some(true));
    }

    #[test]
    fn an_old_file_keeps_its_name_whatever_the_header_says() {
        let prev = at(7, 100);
        let n = identify(opened(9, 100), expected(Some(prev), false));
        assert_eq!(
            (n.file_id, n.verify, n.replaced),
            (prev.file_id, FULL, None)
        );
    }
}
