//! The finish script: an old file by inode, a copy, a compressed rotation.

use super::*;

#[test]
fn finish_reads_an_old_file_by_inode_or_a_copy_by_its_first_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let body = "x".repeat(70) + "\nlast\n";
    append(&path, body.as_bytes());
    let ino = std::fs::metadata(&path).unwrap().ino();
    let verify = verify_of(&path, On::Gnu);
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&path, b"new file\n");

    let mut l = finish(&path, OldFile::Inode(ino), verify, 71);
    l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
    assert_eq!(l.data(), b"last\n");
    assert_eq!(following(&l).unwrap().3, 71);
    l.close();

    // A copy (another inode) with the same first bytes.
    std::fs::copy(&rotated, dir.path().join("app.log-20261202")).unwrap();
    std::fs::remove_file(&rotated).unwrap();
    let mut l = finish(&path, OldFile::Copy, verify, 71);
    l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
    assert_eq!(l.data(), b"last\n");
    l.close();

    // Nothing matching (other first bytes, or shorter than the offset).
    for (old, verify, offset) in [
        (OldFile::Copy, Verify { len: 64, fp: 1 }, 71),
        (OldFile::Copy, verify, 1000),
        (OldFile::Inode(ino), verify, 71),
    ] {
        let mut l = finish(&path, old, verify, offset);
        l.until(|l| l.header.is_some());
        assert_eq!(l.header, Some(Header::Gone));
        l.close();
    }
    // Another log of the folder, `app.log.old`, whose copy is newer and
    // starts with the same bytes: not this log's; nor is a file named
    // after neither.
    let theirs = "x".repeat(70) + "\ntheirs, longer than ours\n";
    let ours_older = std::process::Command::new("touch")
        .args(["-d", "2020-01-01"])
        .arg(dir.path().join("app.log-20261202"))
        .status()
        .unwrap();
    assert!(ours_older.success());
    append(&dir.path().join("app.log.old.1"), theirs.as_bytes());
    append(&dir.path().join("copy"), theirs.as_bytes());
    let others = ["app.log.old".to_owned()];
    let mut l = finish_among(&path, (OldFile::Copy, &others), verify, 71, On::Gnu);
    l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
    assert_eq!(l.data(), b"last\n");
    l.close();
}

/// A rotated file compressed away (logrotate's `compress`, or any of the
/// usual tools) is read by what it decompresses to, from the offset asked,
/// over several chunks; by inode and as a copy; another log's compressed
/// rotation with the same first bytes is not taken.
#[test]
fn finish_reads_a_file_compressed_away_by_what_it_decompresses_to() {
    let body: String = (0..180_000)
        .map(|i| format!("line {i:06} of a rotated file\n"))
        .collect();
    assert!(body.len() as u64 > CHUNK_BYTES);
    let tools: [(&str, &[&str], &str); 4] = [
        ("gzip", &[], ".gz"),
        ("zstd", &["-q", "--rm"], ".zst"),
        ("xz", &[], ".xz"),
        ("bzip2", &[], ".bz2"),
    ];
    let compress = |file: &Path, tool: &str, args: &[&str]| {
        let ok = Command::new(tool).args(args).arg(file).status().unwrap();
        assert!(ok.success(), "{tool}");
    };
    for (tool, args, ext) in tools {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, body.as_bytes());
        let ino = std::fs::metadata(&path).unwrap().ino();
        // Debian's BusyBox fingerprints with md5sum (it has no cksum).
        let verify = |on| verify_of(&path, on);
        let verify = [verify(On::Gnu), verify(On::BusyBox)];
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        compress(&rotated, tool, args);
        assert!(!rotated.exists());
        assert!(dir.path().join(format!("app.log.1{ext}")).exists());
        append(&path, b"new file\n");
        // Another log's rotation, the same first bytes, newer: not ours.
        let theirs = dir.path().join("app.log.old.1");
        append(&theirs, format!("{body}theirs\n").as_bytes());
        compress(&theirs, tool, args);
        let others = ["app.log.old".to_owned()];
        for (old, on, verify) in [
            (OldFile::Inode(ino), On::Gnu, verify[0]),
            (OldFile::Copy, On::Gnu, verify[0]),
            (OldFile::Inode(ino), On::BusyBox, verify[1]),
        ] {
            if matches!(on, On::BusyBox) && tool != "gzip" {
                continue;
            }
            let mut l = finish_among(&path, (old, &others), verify, 100, on);
            l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
            assert_eq!(following(&l).unwrap().3, 100, "{tool} {old:?} {on:?}");
            assert!(l.data() == body.as_bytes()[100..], "{tool} {old:?} {on:?}");
            l.close();
        }
    }
}
