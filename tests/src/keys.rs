//! CURVE keys for a test, made by the real `rill keygen`.

use std::path::Path;
use std::process::Command;

use crate::bin;

/// `rill keygen --out PATH` (the secret key to PATH, the public one to
/// PATH.pub): the public key (Z85) it printed.
pub fn keygen(path: &Path) -> String {
    let out = Command::new(bin("rill"))
        .arg("keygen")
        .arg("--out")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
