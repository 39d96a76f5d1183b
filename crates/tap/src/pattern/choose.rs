//! What one listing pass means for a pattern: which listed files are new
//! (followed from now on), which are files the log already knows under
//! another name (a rotated generation, a copytruncate copy: never followed
//! again), and what each member's path names now. Pure: no I/O.

use std::collections::HashSet;

use rill_config::Log;

use super::listing::{Listed, Pass};
use crate::checkpoint::Verify;
use crate::script::FINGERPRINT_BYTES;

/// A member as the choice sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub path: String,
}

/// What a pass decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Choice {
    /// New files to follow, in path order.
    pub add: Vec<String>,
    /// Per member (in the order given): what its path names now (inode,
    /// and whether another file of the log is that file), or nothing.
    pub at_paths: Vec<Option<(u64, bool)>>,
    /// Files the pattern matches (and no `exclude` names).
    pub matched: usize,
    /// New files not followed: `max_files` reached.
    pub over: usize,
}

/// Whether the listed file is one the log knows: one with the same full
/// fingerprint (first 64 bytes; the same inode: a rename, another: a
/// copy), or the same inode holding exactly the short, non-empty start the
/// log knew (a short file renamed). Never an empty file, nor a short one
/// that grew: an inode freed and taken by a new file would pass for the old
/// one (and a file read twice costs little: the index keeps a line once).
/// A file listed before without its first bytes is not told here: the
/// pairs found known stay in `ignored`.
pub fn is_known(known: &[(u64, Verify)], ino: u64, new: Option<(u64, Verify)>) -> bool {
    let full = FINGERPRINT_BYTES;
    let Some((_, v)) = new else {
        return false;
    };
    known.iter().any(|&(k, kv)| {
        kv.fp == v.fp && kv.len == v.len && (v.len == full || (v.len > 0 && k == ino))
    })
}

/// Decides what `pass` means for `log`, whose members are `members` and
/// whose known files are `known`; `room` more files may be followed.
/// `ignored` remembers the (inode, path) pairs found known, so a file seen
/// before (listed without its first bytes) stays ignored.
pub fn choose(
    log: &Log,
    pass: &Pass,
    members: &[MemberView],
    known: &[(u64, Verify)],
    ignored: &mut HashSet<(u64, String)>,
    room: usize,
) -> Choice {
    let matching: Vec<&Listed> = pass.files.iter().filter(|f| log.covers(&f.path)).collect();
    let at_paths = members
        .iter()
        .map(|m| {
            let f = matching.iter().find(|f| f.path == m.path)?;
            let pair = (f.ino, f.path.clone());
            let known = ignored.contains(&pair) || is_known(known, f.ino, f.new);
            if known {
                // Once its member retires, the path's file stays ignored.
                ignored.insert(pair);
            }
            Some((f.ino, known))
        })
        .collect();
    let mut fresh: Vec<&Listed> = Vec::new();
    for f in &matching {
        if members.iter().any(|m| m.path == f.path) {
            continue;
        }
        let pair = (f.ino, f.path.clone());
        if ignored.contains(&pair) {
            continue;
        }
        if is_known(known, f.ino, f.new) {
            ignored.insert(pair);
            continue;
        }
        fresh.push(f);
    }
    let listed: HashSet<(u64, &str)> = pass
        .files
        .iter()
        .map(|f| (f.ino, f.path.as_str()))
        .collect();
    ignored.retain(|(ino, p)| listed.contains(&(*ino, p.as_str())));
    fresh.sort_by(|a, b| a.path.cmp(&b.path));
    let over = fresh.len().saturating_sub(room);
    Choice {
        add: fresh
            .into_iter()
            .take(room)
            .map(|f| f.path.clone())
            .collect(),
        at_paths,
        matched: matching.len(),
        over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_config::Config;

    fn log(path: &str, exclude: &str) -> Log {
        let yaml = format!(
            "hosts: {{h: {{address: a, user: u, auth: {{agent: true}}}}}}\nlogs: {{x: {{path: '{path}', exclude: [{exclude}], hosts: all}}}}\n"
        );
        let cfg = Config::from_yaml_unchecked(std::path::Path::new("/r.yaml"), &yaml).unwrap();
        cfg.logs["x"].clone()
    }

    fn new(ino: u64, path: &str, fp: u32) -> Listed {
        Listed {
            ino,
            path: path.into(),
            new: Some((1000, Verify { len: 64, fp })),
        }
    }

    fn seen(ino: u64, path: &str) -> Listed {
        Listed {
            ino,
            path: path.into(),
            new: None,
        }
    }

    fn pass(files: Vec<Listed>) -> Pass {
        Pass {
            files,
            ..Pass::default()
        }
    }

    fn member(path: &str) -> MemberView {
        MemberView { path: path.into() }
    }

    #[test]
    fn matching_files_are_new_in_path_order_and_excludes_are_left_out() {
        let l = log("/l/*.log*", "'*.gz', 'debug-*'");
        let p = pass(vec![
            new(3, "/l/b.log", 3),
            new(1, "/l/a.log", 1),
            new(4, "/l/a.log.2.gz", 4),
            new(5, "/l/debug-1.log", 5),
            new(6, "/l/sub/c.log", 6),
            new(7, "/l/c.txt", 7),
        ]);
        let c = choose(&l, &p, &[], &[], &mut HashSet::new(), 10);
        assert_eq!(c.add, vec!["/l/a.log", "/l/b.log"]);
        assert_eq!(c.matched, 2);
        assert_eq!(c.over, 0);
    }

    #[test]
    fn a_renamed_generation_is_the_same_file_not_a_new_one() {
        let l = log("/l/*.log*", "");
        let mut ignored = HashSet::new();
        // api.log (inode 1) was renamed to api.log.1; api.log is new.
        let known = [(1, Verify { len: 64, fp: 11 })];
        let p = pass(vec![new(2, "/l/api.log", 22), new(1, "/l/api.log.1", 11)]);
        let c = choose(&l, &p, &[member("/l/api.log")], &known, &mut ignored, 10);
        assert_eq!(c.add, Vec::<String>::new());
        assert_eq!(c.at_paths, vec![Some((2, false))]);
        assert!(ignored.contains(&(1, "/l/api.log.1".to_owned())));
        // Listed again without its first bytes, it stays ignored even
        // once the log has forgotten it.
        let p = pass(vec![seen(2, "/l/api.log"), seen(1, "/l/api.log.1")]);
        let c = choose(&l, &p, &[member("/l/api.log")], &[], &mut ignored, 10);
        assert!(c.add.is_empty());
        // Gone from the listing, the pair is forgotten.
        let p = pass(vec![seen(2, "/l/api.log")]);
        choose(&l, &p, &[member("/l/api.log")], &[], &mut ignored, 10);
        assert!(ignored.is_empty());
    }

    #[test]
    fn a_copy_is_known_by_its_first_bytes_and_a_reused_inode_is_not() {
        let known = [(1, Verify { len: 64, fp: 11 })];
        // copytruncate's copy: another inode, the same 64 first bytes.
        assert!(is_known(&known, 9, Some((500, Verify { len: 64, fp: 11 }))));
        // The inode of a deleted file, reused by a new file.
        assert!(!is_known(
            &known,
            1,
            Some((500, Verify { len: 64, fp: 12 }))
        ));
        // A new file shorter than what was known of the old.
        assert!(!is_known(&known, 1, Some((10, Verify { len: 10, fp: 11 }))));
        // A short file renamed as it was: known; grown since: read again.
        let short = [(1, Verify { len: 10, fp: 5 })];
        assert!(is_known(&short, 1, Some((10, Verify { len: 10, fp: 5 }))));
        assert!(!is_known(&short, 1, Some((80, Verify { len: 64, fp: 77 }))));
        // Short copies are not told by their first bytes.
        assert!(!is_known(&short, 2, Some((10, Verify { len: 10, fp: 5 }))));
        // An empty file is never known (logrotate's `create` on a freed inode).
        let empty = [(1, Verify::NOTHING)];
        assert!(!is_known(&empty, 1, Some((0, Verify::NOTHING))));
        // Listed before, without its bytes: not told here.
        assert!(!is_known(&known, 1, None));
    }

    #[test]
    fn past_max_files_the_rest_wait_and_are_counted() {
        let l = log("/l/*.log", "");
        let p = pass(
            (0..5)
                .map(|i| new(i, &format!("/l/{i}.log"), i as u32))
                .collect(),
        );
        let c = choose(&l, &p, &[], &[], &mut HashSet::new(), 3);
        assert_eq!(c.add, vec!["/l/0.log", "/l/1.log", "/l/2.log"]);
        assert_eq!((c.matched, c.over), (5, 2));
    }

    #[test]
    fn a_members_path_says_what_it_names_now() {
        let l = log("/l/*.log", "");
        let known = [(7, Verify { len: 64, fp: 70 })];
        let p = pass(vec![new(7, "/l/a.log", 70), new(8, "/l/b.log", 80)]);
        let members = [member("/l/a.log"), member("/l/b.log"), member("/l/c.log")];
        let c = choose(&l, &p, &members, &known, &mut HashSet::new(), 10);
        assert_eq!(c.at_paths, vec![Some((7, true)), Some((8, false)), None]);
        assert!(c.add.is_empty());
    }
}
