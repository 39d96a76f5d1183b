//! The listing script: what a pattern's files are, pass by pass, under sh
//! and BusyBox, with names a shell would misread.

use std::collections::HashMap;

use super::*;
use crate::pattern::listing::{Listed, Listing, Pass};

/// The listing script running locally; its passes as the tap decodes them.
struct Lister {
    child: std::process::Child,
    out: mpsc::Receiver<Vec<u8>>,
    listing: Listing,
    passes: Vec<Pass>,
    _shell: Shell,
}

impl Lister {
    fn start(root: &Path, depth: Option<usize>, name: Option<&str>, shell: Shell) -> Lister {
        let mut child = shell
            .sh()
            .arg("-c")
            .arg(list_command(&root.display().to_string(), depth, name, IV))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = read_on_a_thread(child.stdout.take().unwrap());
        Lister {
            child,
            out,
            listing: Listing::default(),
            passes: Vec::new(),
            _shell: shell,
        }
    }

    /// The next whole pass that satisfies `ok`, within 10 s.
    fn pass_where(&mut self, ok: impl Fn(&Pass) -> bool) -> Pass {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            while let Ok(b) = self.out.try_recv() {
                self.passes.extend(self.listing.feed(&b).unwrap());
            }
            if let Some(p) = self.passes.drain(..).find(|p| ok(p)) {
                return p;
            }
            assert!(Instant::now() < end, "no such pass within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Lister {
    fn drop(&mut self) {
        // Closing its stdin ends it (the watchdog), as sshd's pipe would.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The first 32 bits of the MD5 of `bytes`, as `fpof` reads md5sum.
fn md5_head(bytes: &[u8]) -> u32 {
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = c.wait_with_output().unwrap();
    u32::from_str_radix(&String::from_utf8_lossy(&out.stdout)[..8], 16).unwrap()
}

fn by_path(p: &Pass) -> HashMap<String, Listed> {
    p.files
        .iter()
        .map(|f| (f.path.clone(), f.clone()))
        .collect()
}

#[test]
fn the_listing_names_every_file_once_new_then_seen_whatever_its_name() {
    for (shell, md5) in [(Shell::Posix, false), (busybox(), true)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        let odd = "it's $(touch RILLPWN) `x` \\ *.log";
        let body = "x".repeat(100);
        for name in ["a.log", odd, " lead.log", "sub/b.log", "sub/deeper/c.log"] {
            std::fs::write(root.join(name), &body).unwrap();
        }
        std::fs::write(root.join("short.log"), "abc").unwrap();
        std::fs::write(root.join("new\nline.log"), "x").unwrap();
        let ino = |name: &str| std::fs::metadata(root.join(name)).unwrap().ino();
        let path = |name: &str| format!("{}/{name}", root.display());

        let mut l = Lister::start(root, Some(2), None, shell);
        let first = l.pass_where(|p| !p.files.is_empty());
        let files = by_path(&first);
        let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut want = vec![
            path("a.log"),
            path(odd),
            path(" lead.log"),
            path("sub/b.log"),
            path("short.log"),
        ];
        want.sort_unstable();
        assert_eq!(names, want, "depth 2: not sub/deeper; never the newline");
        assert!(first.odd_names, "a name with a newline is reported");
        let a = &files[&path("a.log")];
        assert_eq!(a.ino, ino("a.log"));
        let (size, verify) = a.new.unwrap();
        assert_eq!(size, 100);
        assert_eq!(verify.len, 64);
        // The fingerprint the follow script gives: cksum, or md5sum's
        // first 32 bits where BusyBox has no cksum.
        let want = if md5 {
            md5_head(&body.as_bytes()[..64])
        } else {
            cksum(&body.as_bytes()[..64])
        };
        assert_eq!(verify.fp, want);
        assert_eq!(files[&path("short.log")].new.unwrap().1.len, 3);
        // The next pass knows them all; a file renamed is new under its
        // new name, with its inode.
        l.pass_where(|p| p.files.iter().all(|f| f.new.is_none()));
        std::fs::rename(root.join("a.log"), root.join("a.log.1")).unwrap();
        let p = l.pass_where(|p| by_path(p).contains_key(&path("a.log.1")));
        let moved = &by_path(&p)[&path("a.log.1")];
        assert_eq!(moved.ino, ino("a.log.1"));
        assert!(moved.new.is_some());
        assert!(!root.parent().unwrap().join("RILLPWN").exists());
        assert!(!root.join("RILLPWN").exists());
        drop(l);

        // No depth limit with `**`; a missing root lists nothing.
        let mut l = Lister::start(root, None, None, busybox());
        let p = l.pass_where(|p| !p.files.is_empty());
        assert!(by_path(&p).contains_key(&path("sub/deeper/c.log")));
        drop(l);
        // A name pattern lists only what find -name matches.
        let mut l = Lister::start(root, None, Some("[ab]*"), Shell::Posix);
        let p = l.pass_where(|p| !p.files.is_empty());
        let mut names: Vec<String> = by_path(&p).into_keys().collect();
        names.sort_unstable();
        assert_eq!(names, vec![path("a.log.1"), path("sub/b.log")]);
        drop(l);
        let mut l = Lister::start(&root.join("missing"), Some(1), None, Shell::Posix);
        let p = l.pass_where(|_| true);
        assert!(p.files.is_empty());
    }
}
