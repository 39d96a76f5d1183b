//! Paths that hold quotes, newlines, shell syntax and placeholders.

use super::*;

/// A folder name with a newline, quotes, shell syntax and every
/// placeholder the scripts ever used.
const HOSTILE_DIR: &str = "d @DIR@ @BASE@;touch RILLPWN;# $(touch RILLPWN) 'q'\nz";

/// A fresh [`HOSTILE_DIR`] in a temp dir (kept while the first lives).
fn hostile_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join(HOSTILE_DIR);
    std::fs::create_dir(&dir).unwrap();
    (top, dir)
}

/// Regression: `@BASE@` in a path closed the script's quotes (a command
/// ran on the server) and `@IV@` was rewritten (another file followed).
#[test]
fn hostile_folder_and_file_names_are_followed_literally() {
    let names = [
        "x@BASE@;touch RILLPWN;#",
        "t@IV@.log",
        "@PATH@@DIR@@FPB@@CHUNK@",
        "$(touch RILLPWN)`touch RILLPWN`",
        "it's \"q\" \\ !",
        " lead\nnew",
    ];
    for (on, _) in EVERY_HOST {
        let (top, dir) = hostile_dir();
        // What a substitution would have turned the names into.
        for decoy in ["t0.2.log", "t.log", "x", "d", "64"] {
            std::fs::write(dir.join(decoy), "decoy\n").unwrap();
        }
        for name in names {
            let path = dir.join(name);
            let body = format!("the line of {name:?}\n");
            std::fs::write(&path, &body).unwrap();
            let mut l = follow(&path, StartAt::Beginning, on);
            l.until(|l| l.data() == body.as_bytes());
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(following(&l).unwrap().1, meta.ino(), "{on:?} {name:?}");
            l.close();
        }
        let made: Vec<_> = walk(top.path())
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "RILLPWN"))
            .collect();
        assert!(made.is_empty(), "{on:?}: a name ran as a command: {made:?}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
        out.push(e.path());
    }
    out
}

/// Regression: a rotated file was found by parsing `ls -ai` with
/// `read -r i n`, which lost a name with a newline or a leading blank.
#[test]
fn finish_finds_a_renamed_file_by_inode_whatever_its_new_name() {
    for (on, _) in EVERY_HOST {
        for rotated in ["app.log.1\nx", " app.log.1", "app.log.1 ", "-n", "a\\b"] {
            let (_top, dir) = hostile_dir();
            let path = dir.join("app.log");
            let head = "h".repeat(70) + "\n";
            append(&path, head.as_bytes());
            let ino = std::fs::metadata(&path).unwrap().ino();
            let verify = verify_of(&path, on);
            // The tap is down: the file is written, renamed, replaced.
            append(&path, b"written while down\n");
            std::fs::rename(&path, dir.join(rotated)).unwrap();
            append(&path, b"the new file\n");
            let mut l = finish_on(&path, OldFile::Inode(ino), verify, 71, on);
            l.until(|l| l.controls().contains(&Control::Final(90)));
            assert_eq!(l.data(), b"written while down\n", "{on:?} {rotated:?}");
            assert_eq!(following(&l).unwrap().1, ino);
            l.close();
        }
    }
}

#[test]
fn a_copytruncate_copy_is_found_whatever_else_its_name_holds() {
    for (on, _) in EVERY_HOST {
        let (_top, dir) = hostile_dir();
        let path = dir.join("app.log");
        let body = "c".repeat(70) + "\nlast\n";
        append(&path, body.as_bytes());
        let verify = verify_of(&path, on);
        let copy = dir.join("app.log.1 \n$(touch RILLPWN)");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::write(&path, "").unwrap();
        let mut l = finish_on(&path, OldFile::Copy, verify, 71, on);
        l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
        assert_eq!(l.data(), b"last\n", "{on:?}");
        assert_eq!(
            following(&l).unwrap().1,
            std::fs::metadata(&copy).unwrap().ino()
        );
        l.close();
    }
}
