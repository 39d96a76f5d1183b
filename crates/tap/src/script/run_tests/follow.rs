//! The follow script: naming, resuming, rotation, truncation and tail's
//! messages.

use super::*;

#[test]
fn the_script_names_the_file_and_resumes_only_into_the_same_one() {
    for (on, mode) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd name 'q' $x.log");
        let body = "0123456789".repeat(10) + "\nsecond\n";
        std::fs::write(&path, &body).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some());
        let (dev, ino, verify, start, got_mode) = following(&l).unwrap();
        assert_eq!((dev, ino), (meta.dev(), meta.ino()));
        assert_eq!(verify.len, 64);
        assert_eq!(start, body.len() as u64);
        assert_eq!(got_mode, mode, "{on:?}");
        l.close();

        let resume = |verify| StartAt::Resume {
            ino: meta.ino(),
            offset: 101,
            verify,
        };
        let mut l = follow(&path, resume(verify), on);
        l.until(|l| l.data() == b"second\n");
        assert_eq!(following(&l).unwrap().3, 101);
        // The file's size is reported, for the lag in `rill status`.
        l.until(|l| l.all_controls().contains(&Control::Size(body.len() as u64)));
        l.close();
        // Other first bytes (a reused inode) or another inode: from 0.
        for start in [
            resume(Verify { len: 64, fp: 12345 }),
            StartAt::Resume {
                ino: meta.ino() + 1,
                offset: 101,
                verify,
            },
        ] {
            let mut l = follow(&path, start, on);
            l.until(|l| l.data() == body.as_bytes());
            assert_eq!(following(&l).unwrap().3, 0);
            l.close();
        }
    }
}

#[test]
fn a_short_file_is_verified_by_what_it_had_and_upgraded_at_64_bytes() {
    for (on, _) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "short\n").unwrap();
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some());
        let verify = following(&l).unwrap().2;
        assert_eq!(verify.len, 6);
        append(&path, "x".repeat(70).as_bytes());
        append(&path, b"\n");
        l.until(|l| {
            l.controls()
                .iter()
                .any(|c| matches!(c, Control::Fingerprint(v) if v.len == 64))
        });
        l.close();
        // Resuming with the short verification works.
        let mut l = follow(
            &path,
            StartAt::Resume {
                ino: std::fs::metadata(&path).unwrap().ino(),
                offset: 6,
                verify,
            },
            on,
        );
        l.until(|l| l.data().len() == 71);
        l.close();
    }
}

#[test]
fn a_renamed_file_is_drained_and_its_final_size_reported() {
    for (on, _) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, b"");
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some());
        append(&path, b"one\n");
        l.until(|l| l.data() == b"one\n");
        // logrotate's create mode: rename, create anew; the writer still
        // appends to the old inode before it is signalled, even after
        // the old file was deleted (the script holds it open).
        let old = dir.path().join("app.log.1");
        std::fs::rename(&path, &old).unwrap();
        append(&path, b"");
        append(&old, b"two\n");
        let mut w = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        l.until(|l| l.controls().contains(&Control::Rotated));
        std::fs::remove_file(&old).unwrap();
        w.write_all(b"three\n").unwrap();
        let all = b"one\ntwo\nthree\n";
        l.until(|l| l.data() == all && l.controls().contains(&Control::Final(all.len() as u64)));
        assert_eq!(l.controls()[0], Control::Rotated);
        l.close();
    }
}

/// logrotate `compress` without `delaycompress`: the file is renamed and
/// deleted at once. The reader that drained it holds it open until its
/// channel closes, and a finish reads the rest through it.
#[test]
fn a_deleted_file_is_read_through_the_script_that_holds_it() {
    for (on, _) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, b"");
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header.is_some() && l.holder().is_some());
        let body = "h".repeat(70) + "\nsecond\nthird\n";
        append(&path, body.as_bytes());
        l.until(|l| l.data() == body.as_bytes());
        let ino = std::fs::metadata(&path).unwrap().ino();
        let verify = verify_of(&path, on);
        std::fs::remove_file(&path).unwrap();
        l.until(|l| l.controls().contains(&Control::Final(body.len() as u64)));
        // Drained, and still holding it: a finish from "second" on.
        let pid = l.holder().unwrap();
        let old = OldFile::Held { ino, pid };
        let mut f = finish_among(&path, (old, &[]), verify, 71, on);
        f.until(|f| f.controls().contains(&Control::Final(body.len() as u64)));
        assert_eq!(f.data(), b"second\nthird\n", "{on:?}");
        f.close();
        l.close();
        // Once the holder is gone (within a poll of its channel closing):
        // by inode, and gone.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                std::time::Instant::now() < end,
                "the holder outlived its channel"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut f = finish_among(&path, (old, &[]), verify, 71, on);
        f.until(|f| f.header.is_some());
        assert_eq!(f.header, Some(Header::Gone), "{on:?}");
        f.close();
    }
}

/// copytruncate: the copy is made, the file truncated and written again.
/// Both readers must say where the old bytes end.
#[test]
fn a_truncation_is_reported_exactly_where_the_old_bytes_end() {
    for (on, mode) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let old = "a".repeat(80) + "\nold line\n";
        std::fs::write(&path, &old).unwrap();
        let mut l = follow(&path, StartAt::Beginning, on);
        l.until(|l| l.data() == old.as_bytes());
        std::fs::copy(&path, dir.path().join("app.log.1")).unwrap();
        empty(&path);
        append(&path, b"new line\n");
        l.until(Local::truncation);
        assert_eq!(l.data_before_control(), old.as_bytes(), "{on:?} {mode:?}");
        if mode == Mode::Stream {
            assert_eq!(l.claims()[0].at, old.len() as u64);
        }
        l.close();
    }
}

/// A file empty at its start that grows and is rotated within one poll
/// is still known by its full fingerprint before its final size: what a
/// search for its compressed rotation matches it by.
#[test]
fn a_file_rotated_as_it_grows_is_fingerprinted_before_its_end() {
    for (on, mode) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, b"");
        let mut l = follow(&path, StartAt::Beginning, on);
        l.until(|l| l.header.is_some());
        append(&path, "x".repeat(100).as_bytes());
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        l.until(|l| l.controls().contains(&Control::Final(100)));
        let controls = l.controls();
        let fp = controls
            .iter()
            .position(|c| matches!(c, Control::Fingerprint(v) if v.len == 64));
        let end = controls.iter().position(|c| *c == Control::Final(100));
        assert!(fp < end && fp.is_some(), "{on:?} {mode:?}: {controls:?}");
        l.close();
    }
}

/// A log line that reads like tail's message stops the stream reader
/// where it stands; the next reader, resumed at the last line's end with
/// the claim, finds it in the file and reads it as a line.
#[test]
fn a_log_line_like_tails_message_is_read_as_a_line_by_the_next_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let forged = "tail: /dev/fd/4: file truncated\n";
    let body = format!("{}\nfirst\n{forged}after\n", "a".repeat(80));
    std::fs::write(&path, &body).unwrap();
    let mut l = follow(&path, StartAt::Beginning, On::Gnu);
    l.until(|l| !l.claims().is_empty());
    let claim = l.claims()[0].clone();
    let at = body.find(forged).unwrap() as u64;
    assert_eq!((claim.at, claim.truncated), (at, true));
    let (_, ino, verify, _, _) = following(&l).unwrap();
    l.close();
    let resume = StartAt::Resume {
        ino,
        offset: 81,
        verify,
    };
    let mut l = follow_settling(&path, resume, On::Gnu, Some(claim.clone()));
    l.until(|l| l.data().ends_with(b"after\n"));
    assert_eq!(following(&l).unwrap().3, 81, "resumed, not read from 0");
    assert_eq!(l.data(), &body.as_bytes()[81..]);
    assert!(l.claims().is_empty());
    // The same text again further on is a claim again.
    append(&path, forged.as_bytes());
    l.until(|l| !l.claims().is_empty());
    assert_eq!(l.claims()[0].at, body.len() as u64);
    l.close();
}

/// A real truncation whose file grew back past the old offset with the
/// same first bytes: the resume point alone would pass; the claim test
/// sends the file from 0.
#[test]
fn a_truncated_file_grown_back_is_read_again_from_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let head = "a".repeat(80) + "\n";
    std::fs::write(&path, format!("{head}an old line, longer than the new\n")).unwrap();
    let mut l = follow(&path, StartAt::Beginning, On::Gnu);
    l.until(|l| l.data().ends_with(b"new\n"));
    empty(&path);
    append(&path, format!("{head}new\n").as_bytes());
    l.until(Local::truncation);
    let claim = l.claims()[0].clone();
    let (_, ino, verify, _, _) = following(&l).unwrap();
    l.close();
    append(&path, b"more new lines, past the old end\n");
    let resume = StartAt::Resume {
        ino,
        offset: claim.at,
        verify,
    };
    let mut l = follow_settling(&path, resume, On::Gnu, Some(claim));
    l.until(|l| l.data().ends_with(b"end\n"));
    assert_eq!(following(&l).unwrap().3, 0, "read again from 0");
    assert_eq!(l.data(), std::fs::read(&path).unwrap());
    l.close();
}

#[test]
fn a_file_that_is_not_there_yet_nor_its_folder_is_waited_for() {
    for (on, _) in EVERY_HOST {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later/app.log");
        let mut l = follow(&path, StartAt::End, on);
        l.until(|l| l.header == Some(Header::Waiting { dir_missing: true }));
        std::fs::create_dir(dir.path().join("later")).unwrap();
        append(&path, b"first\n");
        l.until(|l| l.data() == b"first\n");
        assert_eq!(following(&l).unwrap().3, 0, "a new file is read from 0");
        l.close();
    }
}
