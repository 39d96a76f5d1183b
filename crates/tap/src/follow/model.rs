//! A simulated server for the follow engine's model tests: a folder of
//! files that tests write, rename, copy-truncate, truncate and delete, and
//! channels that speak the scripts' chunk protocol about it, one turn of a
//! script's loop per [`Server::poll`], without SSH or a shell.
//!
//! A channel reads its file through the inode it opened (as the scripts
//! read `/dev/fd/4`), so a rename or a delete never changes what it reads.
//! Fingerprints are FNV-1a here, not cksum: the tap only compares them.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use super::channel::{Channel, Opener};
use crate::checkpoint::Verify;
use crate::script::{OldFile, Reading, Script, StartAt, CHUNK_BYTES, FINGERPRINT_BYTES};

#[derive(Default)]
struct Fs {
    /// Path -> inode.
    names: BTreeMap<String, u64>,
    /// Inode -> content and when it was last written (inodes are never
    /// freed: an open channel keeps reading a deleted file).
    files: HashMap<u64, (Vec<u8>, u64)>,
    next_ino: u64,
    clock: u64,
}

impl Fs {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn create(&mut self, path: &str, bytes: Vec<u8>) -> u64 {
        self.next_ino += 1;
        let ino = self.next_ino;
        let now = self.tick();
        self.files.insert(ino, (bytes, now));
        self.names.insert(path.to_owned(), ino);
        ino
    }

    fn bytes(&self, ino: u64) -> &[u8] {
        &self.files[&ino].0
    }

    fn fp(&self, ino: u64, n: u64) -> u32 {
        let b = self.bytes(ino);
        fingerprint(&b[..(n as usize).min(b.len())])
    }

    /// The verification of a file's first bytes, as `ident` reports it.
    fn ident(&self, ino: u64) -> Verify {
        let len = (self.bytes(ino).len() as u64).min(FINGERPRINT_BYTES);
        Verify {
            len,
            fp: self.fp(ino, len),
        }
    }

    fn fits(&self, ino: u64, v: Verify, min: u64) -> bool {
        self.bytes(ino).len() as u64 >= min && self.fp(ino, v.len) == v.fp
    }
}

fn fingerprint(b: &[u8]) -> u32 {
    if b.is_empty() {
        return 0;
    }
    b.iter().fold(0x811c_9dc5u32, |h, &c| {
        (h ^ u32::from(c)).wrapping_mul(0x0100_0193)
    })
}

/// The simulated server: its folder, and the channels opened on it.
#[derive(Clone, Default)]
pub struct Server {
    fs: Rc<RefCell<Fs>>,
    /// Every channel opened (the tap closes them; see `open_channels`).
    open: Rc<RefCell<Vec<Rc<RefCell<Proc>>>>>,
    /// New channels are refused (sshd at its MaxSessions on every
    /// connection).
    pub refuse: Rc<RefCell<bool>>,
}

impl Server {
    /// Appends `text` to `path`, creating it if missing; returns the
    /// file's inode and the offset `text` went to.
    pub fn write(&self, path: &str, text: &str) -> (u64, u64) {
        let mut fs = self.fs.borrow_mut();
        let now = fs.tick();
        match fs.names.get(path).copied() {
            Some(ino) => {
                let f = fs.files.get_mut(&ino).expect("named inode");
                let offset = f.0.len() as u64;
                f.0.extend_from_slice(text.as_bytes());
                f.1 = now;
                (ino, offset)
            }
            None => (fs.create(path, text.as_bytes().to_vec()), 0),
        }
    }

    /// The inode `path` names.
    pub fn ino(&self, path: &str) -> u64 {
        self.fs.borrow().names[path]
    }

    /// `mv from to`.
    pub fn rename(&self, from: &str, to: &str) {
        let mut fs = self.fs.borrow_mut();
        let ino = fs.names.remove(from).expect("renaming a file that exists");
        fs.names.insert(to.to_owned(), ino);
    }

    /// logrotate's `copytruncate`: a copy under `to`, then the file emptied
    /// in place.
    pub fn copytruncate(&self, path: &str, to: &str) {
        let mut fs = self.fs.borrow_mut();
        let ino = fs.names[path];
        let bytes = fs.bytes(ino).to_vec();
        fs.create(to, bytes);
        let now = fs.tick();
        let f = fs.files.get_mut(&ino).expect("named inode");
        f.0.clear();
        f.1 = now;
    }

    /// `truncate -s 0`.
    pub fn truncate(&self, path: &str) {
        let mut fs = self.fs.borrow_mut();
        let ino = fs.names[path];
        let now = fs.tick();
        let f = fs.files.get_mut(&ino).expect("named inode");
        f.0.clear();
        f.1 = now;
    }

    /// `rm`.
    pub fn remove(&self, path: &str) {
        self.fs.borrow_mut().names.remove(path);
    }

    /// One poll interval passes: every script still running prints what
    /// it would in one turn of its loop.
    pub fn poll(&self) {
        for p in self.open.borrow().iter() {
            let mut p = p.borrow_mut();
            if !p.closed {
                p.step();
            }
        }
    }

    /// The connection dies: every channel open now fails its next read.
    pub fn sever(&self) {
        for p in self.open.borrow().iter() {
            p.borrow_mut().severed = true;
        }
    }

    /// Channels still open (not closed by the tap, whether or not their
    /// script ended).
    pub fn open_channels(&self) -> usize {
        self.open
            .borrow()
            .iter()
            .filter(|p| !p.borrow().closed)
            .count()
    }
}

impl Opener for Server {
    fn open(&mut self, script: &Script) -> Result<(Box<dyn Channel>, usize), rill_ssh::Error> {
        if *self.refuse.borrow() {
            return Err(rill_ssh::Error::Full(1));
        }
        // The model has no users: what runs as root runs as anyone.
        let script = script.inner();
        let state = match script {
            Script::Follow { start, reading, .. } => {
                assert_eq!(*reading, Reading::Chunks, "the model speaks chunks only");
                State::Follow(*start)
            }
            Script::Finish {
                old,
                verify,
                offset,
                ..
            } => State::Finish(*old, *verify, *offset),
            Script::List { .. }
            | Script::Generations { .. }
            | Script::Journal { .. }
            | Script::AsRoot { .. } => {
                unimplemented!("the model follows files; it lists none")
            }
        };
        let path = match script {
            Script::Follow { path, .. } | Script::Finish { path, .. } => path.clone(),
            Script::List { root, .. } => root.clone(),
            Script::Generations { path, .. } => path.clone(),
            Script::Journal { .. } => "/".to_owned(),
            Script::AsRoot { .. } => unreachable!("unwrapped above"),
        };
        let proc = Rc::new(RefCell::new(Proc {
            fs: self.fs.clone(),
            path,
            state,
            out: VecDeque::new(),
            err: VecDeque::new(),
            closed: false,
            severed: false,
        }));
        // The script starts at once: it opens its file and says which.
        proc.borrow_mut().step();
        self.open.borrow_mut().push(proc.clone());
        Ok((Box::new(FakeChannel(proc)), 0))
    }
}

/// Where a script is.
#[derive(Debug, Clone, Copy)]
enum State {
    Follow(StartAt),
    Finish(OldFile, Verify, u64),
    /// RILL-WAIT said; polling for the file to appear.
    Waiting,
    Chunks(Chunks),
    Done,
}

/// The `chunks` loop's variables (common.sh).
#[derive(Debug, Clone, Copy)]
struct Chunks {
    me: u64,
    off: u64,
    verify: Verify,
    rot: bool,
    prev: Option<u64>,
    lastsz: Option<u64>,
}

struct Proc {
    fs: Rc<RefCell<Fs>>,
    path: String,
    state: State,
    out: VecDeque<u8>,
    err: VecDeque<u8>,
    closed: bool,
    severed: bool,
}

impl Proc {
    fn say(&mut self, s: &str) {
        self.out.extend(s.as_bytes());
    }

    fn complain(&mut self, s: &str) {
        self.err.extend(s.as_bytes());
    }

    /// One poll of the script: what it prints until it naps or ends.
    fn step(&mut self) {
        let fs = self.fs.clone();
        let fs = fs.borrow();
        match self.state {
            State::Done => {}
            State::Follow(start) => {
                let Some(&ino) = fs.names.get(&self.path) else {
                    self.say("RILL-WAIT\n");
                    self.state = State::Waiting;
                    return;
                };
                let size = fs.bytes(ino).len() as u64;
                let from = match start {
                    StartAt::End => size,
                    StartAt::Beginning => 0,
                    StartAt::Resume {
                        ino: want,
                        offset,
                        verify,
                    } => {
                        if want == ino && fs.fits(ino, verify, offset) {
                            offset
                        } else {
                            0
                        }
                    }
                };
                self.begin(&fs, ino, from, false);
            }
            State::Waiting => {
                self.complain("RILL-TICK\n");
                if let Some(&ino) = fs.names.get(&self.path) {
                    self.begin(&fs, ino, 0, false);
                }
            }
            State::Finish(old, verify, offset) => {
                let (dir, name) = self.path.rsplit_once('/').expect("an absolute path");
                let found = match old {
                    OldFile::Inode(ino) | OldFile::Held { ino, .. } => fs
                        .names
                        .values()
                        .any(|&i| i == ino)
                        .then_some(ino)
                        .filter(|&i| fs.fits(i, verify, offset)),
                    OldFile::Copy => fs
                        .names
                        .iter()
                        .filter(|(p, _)| {
                            p.rsplit_once('/')
                                .is_some_and(|(d, n)| d == dir && n != name)
                        })
                        .map(|(_, &i)| i)
                        .filter(|&i| fs.fits(i, verify, offset))
                        .max_by_key(|i| fs.files[i].1),
                };
                match found {
                    Some(ino) => self.begin(&fs, ino, offset, true),
                    None => {
                        self.say("RILL-GONE\n");
                        self.state = State::Done;
                    }
                }
            }
            State::Chunks(c) => self.chunks(&fs, c),
        }
    }

    /// The header, then the chunk loop from `off`.
    fn begin(&mut self, fs: &Fs, ino: u64, off: u64, rot: bool) {
        let verify = fs.ident(ino);
        self.say(&format!(
            "RILL 1 {ino} {} {} {off} chunks\n",
            verify.len, verify.fp
        ));
        self.state = State::Chunks(Chunks {
            me: ino,
            off,
            verify,
            rot,
            prev: None,
            lastsz: None,
        });
    }

    fn chunks(&mut self, fs: &Fs, mut c: Chunks) {
        loop {
            if !c.rot {
                let now = fs.names.get(&self.path).copied();
                if now != Some(c.me) {
                    c.rot = true;
                    let what = now.map_or("gone".to_owned(), |i| i.to_string());
                    self.say(&format!("RILL-ROTATED {what}\n"));
                }
            }
            let bytes = fs.bytes(c.me);
            let sz = bytes.len() as u64;
            if !c.rot && c.lastsz != Some(sz) {
                self.complain(&format!("RILL-SIZE {sz}\n"));
                c.lastsz = Some(sz);
            }
            if sz < c.off || (sz > c.off && fs.fp(c.me, c.verify.len) != c.verify.fp) {
                self.say(&format!("RILL-TRUNCATED {sz}\n"));
                self.state = State::Done;
                return;
            }
            if sz > c.off {
                if c.verify.len < FINGERPRINT_BYTES && sz >= FINGERPRINT_BYTES {
                    c.verify = fs.ident(c.me);
                    self.say(&format!("RILL-FP {} {}\n", c.verify.len, c.verify.fp));
                }
                let len = (sz - c.off).min(CHUNK_BYTES);
                self.say(&format!("RILL-CHUNK {} {len}\n", c.off));
                let (from, to) = (c.off as usize, (c.off + len) as usize);
                self.out.extend(&bytes[from..to]);
                self.say("RILL-OK\n");
                c.off += len;
                c.prev = None;
                continue;
            }
            if c.rot {
                if c.prev == Some(sz) {
                    self.say(&format!("RILL-FINAL {sz}\n"));
                    self.state = State::Done;
                    return;
                }
                c.prev = Some(sz);
            }
            self.complain("RILL-TICK\n");
            self.state = State::Chunks(c);
            return;
        }
    }
}

/// A channel of the simulated server: what its script printed at the
/// polls so far ([`Server::poll`]), as if every packet had arrived.
struct FakeChannel(Rc<RefCell<Proc>>);

fn drain(q: &mut VecDeque<u8>, buf: &mut [u8]) -> usize {
    let n = q.len().min(buf.len());
    for (b, v) in buf.iter_mut().zip(q.drain(..n)) {
        *b = v;
    }
    n
}

impl Channel for FakeChannel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut p = self.0.borrow_mut();
        if p.severed {
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        if p.out.is_empty() {
            return if matches!(p.state, State::Done) {
                Ok(0)
            } else {
                Err(std::io::ErrorKind::WouldBlock.into())
            };
        }
        Ok(drain(&mut p.out, buf))
    }

    fn read_stderr(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut p = self.0.borrow_mut();
        if p.err.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(drain(&mut p.err, buf))
    }

    fn queued(&self) -> bool {
        let p = self.0.borrow();
        p.severed || !p.out.is_empty() || !p.err.is_empty()
    }

    fn eof(&self) -> bool {
        let p = self.0.borrow();
        matches!(p.state, State::Done) && p.out.is_empty()
    }

    fn close(&mut self) {
        self.0.borrow_mut().closed = true;
    }
}
