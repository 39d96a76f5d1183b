//! What a reader is for, and how the script's control records move it on.
//! Pure: no I/O.
//!
//! ```text
//! Current ── RILL-ROTATED (the path names another inode) ──> Finishing
//! Finishing / CatchUp: RILL-FINAL <size> and RILL-GONE noted until drained
//! any ── RILL-TRUNCATED, end of the channel, a bad record ──> ended
//! ```

use crate::script::{Claim, Control};

/// What one reader reads, and where its lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The file the log's path names now: lines go live, and to the index
    /// while the durable window has room.
    Current,
    /// A file the path no longer names (rotated away, or left unfinished by
    /// an earlier run), read to its end: lines go live and to the index.
    Finishing(Old),
    /// A gap the durable path left in a file, read again for the index
    /// alone, and only while the window has room.
    CatchUp(Old),
}

/// What a reader of an old file knows about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Old {
    /// Read through its copytruncate copy rather than its own inode.
    pub copy: bool,
    /// The script saw it stop growing at this size.
    pub final_size: Option<u64>,
    /// Its inode left the folder (read by name only, where `/dev/fd` is
    /// missing).
    pub gone: bool,
}

/// Why a reader reads no more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The channel ended (the script exited, or sent something it should
    /// not have).
    Eof,
    /// The file was truncated: nothing after that point belongs to it.
    Truncated,
    /// Stream mode: at what reads like a message of tail's (the next
    /// reader settles the claim).
    Claimed(Claim),
}

impl Role {
    pub fn finishing(copy: bool) -> Role {
        Role::Finishing(Old {
            copy,
            ..Old::default()
        })
    }

    pub fn catch_up(copy: bool) -> Role {
        Role::CatchUp(Old {
            copy,
            ..Old::default()
        })
    }

    pub fn is_current(&self) -> bool {
        matches!(self, Role::Current)
    }

    pub fn is_catch_up(&self) -> bool {
        matches!(self, Role::CatchUp(_))
    }

    /// What it knows of the old file it reads; `None` for the current one.
    pub fn old(&self) -> Option<&Old> {
        match self {
            Role::Current => None,
            Role::Finishing(o) | Role::CatchUp(o) => Some(o),
        }
    }

    /// Whether it reads a copytruncate copy.
    pub fn copy(&self) -> bool {
        self.old().is_some_and(|o| o.copy)
    }

    /// Takes a control record: a rotation turns the current reader into a
    /// finishing one; an old file's final size and disappearance are noted.
    /// The scripts say `RILL-FINAL` and `RILL-GONE` only after
    /// `RILL-ROTATED` on the same stream (or for a finish, which starts as
    /// an old file), so the current reader never has them to note.
    pub fn on_control(&mut self, c: Control) {
        match (self, c) {
            (r @ Role::Current, Control::Rotated) => *r = Role::finishing(false),
            (Role::Finishing(o) | Role::CatchUp(o), Control::Final(n)) => o.final_size = Some(n),
            (Role::Finishing(o) | Role::CatchUp(o), Control::Gone) => o.gone = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_turns_the_current_reader_into_a_finishing_one() {
        let mut r = Role::Current;
        r.on_control(Control::Size(10));
        assert_eq!(r, Role::Current);
        r.on_control(Control::Rotated);
        assert_eq!(r, Role::finishing(false));
        r.on_control(Control::Final(42));
        assert_eq!(r.old().and_then(|o| o.final_size), Some(42));
        // Only the current reader rotates.
        r.on_control(Control::Rotated);
        assert!(matches!(r, Role::Finishing(_)));
    }

    #[test]
    fn an_old_file_notes_its_final_size_and_disappearance() {
        let mut r = Role::catch_up(true);
        r.on_control(Control::Gone);
        r.on_control(Control::Final(7));
        assert_eq!(
            r,
            Role::CatchUp(Old {
                copy: true,
                final_size: Some(7),
                gone: true
            })
        );
        assert!(r.copy() && r.is_catch_up() && !r.is_current());
        // The current reader has no old file to note anything about.
        let mut c = Role::Current;
        c.on_control(Control::Final(7));
        assert_eq!(c, Role::Current);
    }
}
