//! What the script tests share: hostile strings, the login shells and
//! hosts they run on.

use std::process::Command;
use std::time::Duration;

pub const IV: Duration = Duration::from_millis(200);

/// Strings a careless or hostile config could hold: every placeholder
/// the scripts ever used, shell syntax, quotes, escapes, newlines.
pub const HOSTILE: [&str; 14] = [
    "@PATH@ @DIR@ @BASE@ @IV@ @FPB@ @CHUNK@ @START@ @MODE@ @NONCE@",
    "@STREAM_POLL@ @PRELUDE@ @BODY@ @INO@ @VLEN@ @VFP@ @OFFSET@",
    "x'; touch RILLPWN; echo '",
    "$(touch RILLPWN) `touch RILLPWN` ${HOME} $HOME",
    "\"double\" \\back\\slash \\c \\0101 %s %b %%",
    "bang! !! !$ history",
    "new\nline\n",
    "\ttab and trailing space ",
    "-n",
    "",
    "caf\u{e9} \u{1f600}",
    "a;b&&c||d|e>f<g",
    "{a,b} [x] * ? ~root #hash",
    "\u{7f}\u{1}\u{1b}[31m",
];

/// The login shells a server account may have, each with the PATH its
/// `sh` comes from. Tests run them all; a missing one fails (the test
/// command installs them).
pub fn login_shells() -> Vec<(String, Shell)> {
    vec![
        ("sh".to_owned(), Shell::Posix),
        ("bash".to_owned(), Shell::Posix),
        ("sh".to_owned(), busybox()),
        (which("tcsh"), Shell::Posix),
        (which("fish"), Shell::Posix),
    ]
}

pub fn which(name: &str) -> String {
    rill_test_support::which(name).display().to_string()
}

/// Where the script runs: this machine's `sh` and tools, or BusyBox's
/// `sh` with nothing but BusyBox applets on its PATH (a BusyBox host).
pub enum Shell {
    Posix,
    BusyBox(tempfile::TempDir),
}

impl Shell {
    /// `sh` of this shell, with BusyBox's applets alone on its PATH.
    pub fn sh(&self) -> Command {
        match self {
            Shell::Posix => Command::new("sh"),
            Shell::BusyBox(applets) => {
                let mut c = Command::new(applets.path().join("sh"));
                c.env("PATH", applets.path());
                c
            }
        }
    }
}

pub fn busybox() -> Shell {
    let busybox = which("busybox");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        std::os::unix::fs::symlink(&busybox, dir.path().join(applet)).unwrap();
    }
    Shell::BusyBox(dir)
}
