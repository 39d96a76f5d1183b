use super::*;
use crate::{IndexSearcher, SearchRequest};
use chrono::{TimeZone, Utc};

fn line(offset: u64, len: u64, body: &str) -> IndexedLine {
    IndexedLine {
        ts: Utc.timestamp_opt(1_700_000_000 + offset as i64, 0).unwrap(),
        host: "h".into(),
        log: "l".into(),
        path: String::new(),
        file_id: FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        },
        offset,
        end_offset: offset + len,
        body: body.into(),
        fields: Default::default(),
        parse_error: false,
        collector: String::new(),
    }
}

#[test]
fn a_line_read_whole_replaces_its_partial_piece_and_its_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    // "first" then "second line" sent as "sec" (partial) and its rest.
    w.add(&line(0, 6, "first")).unwrap();
    w.add(&line(6, 3, "sec")).unwrap();
    w.add(&line(9, 9, "ond line")).unwrap();
    w.commit().unwrap();
    // Read again from 6 (a restart from a checkpoint there): whole.
    w.add(&line(6, 12, "second line")).unwrap();
    w.commit().unwrap();
    assert_eq!(bodies(dir.path()), ["first", "second line"]);
}

#[test]
fn the_payload_of_the_last_commit_is_there_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    assert_eq!(w.payload(), None, "a new index");
    w.set_payload("first".into());
    w.add(&line(0, 2, "a")).unwrap();
    w.commit().unwrap();
    w.set_payload("second".into());
    w.add(&line(2, 2, "b")).unwrap();
    w.commit().unwrap();
    // A commit of retention's keeps the payload last set.
    w.delete_older_than(Utc.timestamp_opt(0, 0).unwrap())
        .unwrap();
    drop(w);
    let w = IndexWriter::open(dir.path()).unwrap();
    assert_eq!(w.payload(), Some("second"));
}

fn bodies(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = IndexSearcher::open(dir)
        .unwrap()
        .search(&SearchRequest {
            query: "*".into(),
            limit: 1000,
            oldest_first: true,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|l| l.body)
        .collect();
    v.sort();
    v
}

#[test]
fn runs_replace_overlapping_redeliveries_and_keep_their_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    // Lines at 0, 10, 20, ..., 90 (each 10 bytes), committed.
    for i in 0..10 {
        w.add(&line(i * 10, 10, &format!("v1 {i}"))).unwrap();
    }
    w.commit().unwrap();
    // A restarted tap re-delivers 30..60, then lines 60..70 again in the
    // same commit, and a lone line at 90.
    for i in 3..6 {
        w.add(&line(i * 10, 10, &format!("v2 {i}"))).unwrap();
    }
    for i in 5..7 {
        w.add(&line(i * 10, 10, &format!("v3 {i}"))).unwrap();
    }
    w.add(&line(90, 10, "v2 9")).unwrap();
    w.commit().unwrap();
    assert_eq!(
        bodies(dir.path()),
        ["v1 0", "v1 1", "v1 2", "v1 7", "v1 8", "v2 3", "v2 4", "v2 9", "v3 5", "v3 6"]
    );
}

#[test]
fn runs_across_offset_blocks_replace_exactly_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    let base = (1 << 16) - 20;
    for i in 0..4 {
        w.add(&line(base + i * 10, 10, &format!("v1 {i}"))).unwrap();
    }
    w.commit().unwrap();
    // Lines 1 and 2 again (they straddle the 64 KiB block boundary).
    for i in 1..3 {
        w.add(&line(base + i * 10, 10, &format!("v2 {i}"))).unwrap();
    }
    w.commit().unwrap();
    assert_eq!(bodies(dir.path()), ["v1 0", "v1 3", "v2 1", "v2 2"]);
}

#[test]
fn a_new_writer_replaces_what_an_earlier_one_committed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut w = IndexWriter::open(dir.path()).unwrap();
        for i in 0..5 {
            w.add(&line(i * 10, 10, &format!("v1 {i}"))).unwrap();
        }
        // The last line had no newline yet: 5 bytes of it.
        w.add(&line(50, 5, "v1 par")).unwrap();
        w.commit().unwrap();
    }
    // A restarted parser (a new writer) gets 30..50 again, the partial
    // line whole, and new lines after it; then a file it never saw.
    let mut w = IndexWriter::open(dir.path()).unwrap();
    for i in 3..8 {
        w.add(&line(i * 10, 10, &format!("v2 {i}"))).unwrap();
    }
    let mut other = line(0, 10, "other 0");
    other.file_id.ino = 3;
    w.add(&other).unwrap();
    w.commit().unwrap();
    // And the new lines once more, now known to this writer.
    w.add(&line(60, 10, "v3 6")).unwrap();
    w.commit().unwrap();
    assert_eq!(
        bodies(dir.path()),
        ["other 0", "v1 0", "v1 1", "v1 2", "v2 3", "v2 4", "v2 5", "v2 7", "v3 6"]
    );
}

#[test]
fn a_line_without_end_offset_is_a_run_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    let mut a = line(0, 0, "a");
    a.end_offset = 0;
    w.add(&a).unwrap();
    w.add(&line(5, 5, "b")).unwrap();
    w.add(&a).unwrap();
    w.commit().unwrap();
    assert_eq!(bodies(dir.path()), ["a", "b"]);
}

#[test]
fn retention_deletes_only_older_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    for i in 0..5 {
        w.add(&line(i * 10, 10, &format!("l{i}"))).unwrap();
    }
    w.delete_older_than(Utc.timestamp_opt(1_700_000_020, 0).unwrap())
        .unwrap();
    assert_eq!(bodies(dir.path()), ["l2", "l3", "l4"]);
}

/// Regression: an event whose time was outside 1677..2262 (a log line
/// saying year 9999) overflowed tantivy's nanoseconds.
#[test]
fn events_from_the_far_past_and_future_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::open(dir.path()).unwrap();
    for (i, ts) in [
        chrono::DateTime::<Utc>::MAX_UTC,
        chrono::DateTime::<Utc>::MIN_UTC,
    ]
    .into_iter()
    .enumerate()
    {
        let mut l = line(i as u64 * 100, 100, "far away");
        l.ts = ts;
        w.add(&l).unwrap();
    }
    w.commit().unwrap();
    let s = IndexSearcher::open(dir.path()).unwrap();
    let hits = s
        .search(&SearchRequest {
            query: "far".into(),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].ts.format("%Y").to_string(), "2262");
    assert_eq!(hits[1].ts.format("%Y").to_string(), "1677");
}

#[test]
fn a_tenures_copies_that_a_later_tenure_holds_are_found_and_deleted_exactly() {
    use crate::tenure::{StoredFile, Tenure};
    // Member a indexed lines 0..10 under tenure 5 (each 10 bytes); member
    // b took the host at tenure 9 and read on from line 6.
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = IndexWriter::open(a_dir.path()).unwrap();
    a.set_tenures([("h".to_owned(), 5)].into()).unwrap();
    for i in 0..10 {
        a.add(&line(i * 10, 10, &format!("line {i}"))).unwrap();
    }
    a.commit().unwrap();
    let mut b = IndexWriter::open(b_dir.path()).unwrap();
    b.set_tenures([("h".to_owned(), 9)].into()).unwrap();
    for i in 6..12 {
        b.add(&line(i * 10, 10, &format!("line {i}"))).unwrap();
    }
    b.commit().unwrap();
    let (sa, sb) = (
        IndexSearcher::open(a_dir.path()).unwrap(),
        IndexSearcher::open(b_dir.path()).unwrap(),
    );
    // a's last 3 (one commit: any 3 of it) name the file.
    let tail = sa.tenure_tail("h", 5, 3).unwrap();
    let file = StoredFile {
        log: "l".into(),
        file_id: line(0, 0, "").file_id.to_string(),
    };
    assert_eq!(tail.len(), 3);
    assert!(
        tail.iter()
            .all(|(f, o)| *f == file && o % 10 == 0 && *o < 100),
        "{tail:?}"
    );
    assert!(sa.tenure_tail("h", 9, 3).unwrap().is_empty());
    // What b holds after tenure 5 from 0 to 95, at most 4; nothing after 9.
    let held = sb
        .tenure_offsets("h", &file, Tenure::After(5), (0, 95), 4)
        .unwrap();
    assert_eq!(held, [60, 70, 80, 90]);
    assert!(sb
        .tenure_offsets("h", &file, Tenure::After(9), (0, 200), 100)
        .unwrap()
        .is_empty());
    assert_eq!(sa.tenure_last("h", &file, 5).unwrap(), Some(90));
    assert_eq!(sb.tenure_last("h", &file, 9).unwrap(), Some(110));
    assert_eq!(sb.tenure_last("h", &file, 5).unwrap(), None);
    assert_eq!(
        sa.tenure_offsets("h", &file, Tenure::Is(5), (55, 1000), 100)
            .unwrap(),
        [60, 70, 80, 90]
    );
    // a deletes its copies of 60..=90 under tenure 5; a copy under another
    // tenure in that range stays.
    a.set_tenures([("h".to_owned(), 7)].into()).unwrap();
    a.add(&line(200, 10, "later")).unwrap();
    a.delete_tenure_range("h", "l", &file.file_id, 5, (60, 90))
        .unwrap();
    a.delete_tenure_range("h", "l", &file.file_id, 5, (200, 200))
        .unwrap();
    a.commit().unwrap();
    let left: Vec<String> = bodies(a_dir.path());
    assert_eq!(
        left,
        ["later", "line 0", "line 1", "line 2", "line 3", "line 4", "line 5"]
    );
}
