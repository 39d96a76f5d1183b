//! What runs on the server: a portable POSIX sh script per followed file.
//!
//! Every script opens its file once (`exec 4<FILE`) and from then on reads
//! it through `/dev/fd/4`, so a rename or a delete never changes which file
//! it reads (where `/dev/fd` is missing it falls back to the name). It prints
//! one header line,
//!
//! ```text
//! RILL <dev> <ino> <verify len> <verify fp> <start> <stream|chunks>
//! ```
//!
//! then the file's bytes from `start` on, in one of two ways:
//!
//! - **stream** (hosts with GNU `tail`): the bytes exactly as
//!   `tail -c +N -f` prints them, a line within `tap.stream_poll` (GNU
//!   tail cannot use inotify on `/dev/fd/4`, a symlink, so it polls the
//!   open file: one `fstat` and `read` per turn, no fork). GNU
//!   tail notices a truncation itself and reads the file again from 0; with
//!   its messages on the same stream (`2>&1`) its "file truncated" sits
//!   exactly between the old bytes and the new ones. It is given the file's
//!   name behind a random run of `/.` and `//.` segments (the [`Nonce`]), so
//!   its messages are told apart from any log line (`frames::StreamFilter`).
//!   Rotation, the file's size when it changed, a draining file's final
//!   size and a grown fingerprint are reported on stderr.
//! - **chunks** (any other `tail`: BusyBox, BSD, which re-read a truncated
//!   file silently): every poll the script sends what is new as
//!   `RILL-CHUNK <off> <len>`, the bytes, then `RILL-OK` once it checked that
//!   the file was not truncated meanwhile (a chunk without `RILL-OK` is
//!   dropped and the script ends, so the tap resumes before it). Control
//!   lines come on the same stream, in order. A line arrives within the poll
//!   interval, like BusyBox's own `tail -f`.
//!
//! While the file does not exist the script prints `RILL-WAIT`
//! (`RILL-WAIT-DIR` when its directory is missing too) once and polls.
//!
//! No leftovers: sshd gives the script a pipe as stdin that closes when the
//! channel or the connection goes away. A watchdog (`cat` on that stdin) then
//! kills the worker, so no remote process outlives its channel by more than
//! one poll interval.

use std::time::Duration;

use crate::checkpoint::Verify;

/// Quotes `s` for a POSIX shell: the result is always one literal word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `1`, `0.5`: seconds as `sleep` takes them.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

/// The largest chunk the chunk reader sends at once (the tap holds a chunk
/// until its `RILL-OK`).
pub const CHUNK_BYTES: u64 = 256 * 1024;

/// How many leading bytes a full fingerprint covers.
pub const FINGERPRINT_BYTES: u64 = rill_proto::FileId::FINGERPRINT_BYTES;

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the current end of the file (new lines only). A file that does not
    /// exist yet is read from its beginning once it appears.
    End,
    /// At byte 0 (a file that replaced the one we followed).
    Beginning,
    /// At `offset` if the file still has inode `ino`, is at least that long
    /// and its first bytes still match `verify`; otherwise from 0 (it was
    /// replaced or truncated).
    Resume {
        ino: u64,
        offset: u64,
        verify: Verify,
    },
}

/// How the follow script sends the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Streams where GNU tail is found, chunks elsewhere.
    Auto,
    /// Always chunks (tests of the chunk reader on any host).
    Chunks,
}

/// The run of `/.` and `//.` segments put before the file's name for tail,
/// different for every channel, so that a message of tail's names a path no
/// log line can guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    const BITS: u32 = 48;

    pub fn random() -> Nonce {
        Nonce::from_bits(uuid::Uuid::new_v4().as_u128() as u64)
    }

    fn from_bits(bits: u64) -> Nonce {
        let mut s = String::from("/.");
        for i in 0..Self::BITS {
            s.push_str(if bits >> i & 1 == 1 { "//." } else { "/." });
        }
        Nonce(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shell functions the scripts share (see the module docs).
///
/// - `ident FILE`: `ino`, `dev`, `size`, and `vn`/`fp`, the fingerprint of
///   the first `min(size, 64)` bytes.
/// - `fpof FILE N`: the fingerprint of the first N bytes: POSIX `cksum`, or
///   the first 32 bits of `md5sum` where `cksum` is missing (Debian's
///   BusyBox); 0 for N = 0.
/// - `byino DIR INO`: the name of DIR's regular file with inode INO.
/// - `fits FILE VLEN VFP MINSIZE`: FILE is at least MINSIZE long and its
///   first VLEN bytes have fingerprint VFP.
/// - `findcopy DIR VLEN VFP MINSIZE NAME`: the newest regular file of DIR
///   other than NAME that `fits`.
/// - `nap`: says `RILL-TICK` on stderr (the tap hears from every channel at
///   least once per interval, however quiet the file) and sleeps.
/// - `osize`: `sz`, the size of the file being read (`cur`); fails once it
///   is gone (only possible when read by name).
/// - `chunks`: sends the file from `off` in checked chunks until it is
///   truncated or gone, or, once `rot` is set (the path names another file
///   now, or this is a finish), until it stopped growing for one interval.
const PRELUDE: &str = r#"LC_ALL=C; export LC_ALL
nap() { echo RILL-TICK >&2; sleep @IV@; }
fpof() {
  [ "$2" -gt 0 ] || { echo 0; return; }
  r=$(head -c "$2" "$1" 2>/dev/null | cksum 2>/dev/null); r=${r%% *}
  if [ -z "$r" ]; then
    r=$(head -c "$2" "$1" 2>/dev/null | md5sum 2>/dev/null); r=$(printf %.8s "$r"); r=$((0x${r:-0}))
  fi
  echo "$r"
}
ident() {
  f=$1
  set -- $(ls -diL "$f" 2>/dev/null); ino=${1:-0}
  dev=$(stat -L -c %d "$f" 2>/dev/null || stat -L -f %d "$f" 2>/dev/null); dev=${dev:-0}
  size=$(wc -c 2>/dev/null < "$f"); size=$((size + 0))
  vn=$size; [ "$vn" -le @FPB@ ] || vn=@FPB@
  fp=$(fpof "$f" "$vn")
}
byino() {
  ls -ai "$1" 2>/dev/null | while read -r i n; do
    if [ "$i" = "$2" ] && [ -f "$1/$n" ]; then printf '%s\n' "$n"; break; fi
  done
}
fits() {
  s=$(wc -c 2>/dev/null < "$1"); s=$((s + 0))
  [ "$s" -ge "$4" ] && [ "$(fpof "$1" "$2")" = "$3" ]
}
findcopy() {
  ls -at "$1" 2>/dev/null | while read -r n; do
    if [ -f "$1/$n" ] && [ "$n" != "$5" ] && fits "$1/$n" "$2" "$3" "$4"; then printf '%s\n' "$n"; break; fi
  done
}
osize() {
  if [ -n "$rot" ] && [ "$src" != /dev/fd/4 ]; then
    n=$(byino "$d" "$me"); [ -n "$n" ] || return 1; cur=$d/$n
  else
    cur=$src
  fi
  sz=$(wc -c 2>/dev/null < "$cur"); sz=$((sz + 0))
}
same() {
  [ "$cur" = /dev/fd/4 ] && return 0
  set -- $(ls -di "$cur" 2>/dev/null); [ "${1:-0}" = "$me" ]
}
chunks() {
  prev=-1
  while :; do
    if [ -z "$rot" ]; then
      set -- $(ls -diL "$p" 2>/dev/null)
      if [ "${1:-gone}" != "$me" ]; then rot=1; echo "RILL-ROTATED ${1:-gone}"; fi
    fi
    osize || { echo RILL-GONE; return; }
    if [ -z "$rot" ] && [ "$sz" != "$lastsz" ]; then echo "RILL-SIZE $sz" >&2; lastsz=$sz; fi
    if [ "$sz" -lt "$off" ]; then echo "RILL-TRUNCATED $sz"; return; fi
    if [ "$sz" -gt "$off" ]; then
      [ "$(fpof "$cur" "$vn")" = "$fp" ] || { echo "RILL-TRUNCATED $sz"; return; }
      if [ "$vn" -lt @FPB@ ] && [ "$sz" -ge @FPB@ ]; then vn=@FPB@; fp=$(fpof "$cur" "$vn"); echo "RILL-FP $vn $fp"; fi
      len=$((sz - off)); [ "$len" -le @CHUNK@ ] || len=@CHUNK@
      echo "RILL-CHUNK $off $len"
      tail -c +$((off + 1)) "$cur" 2>/dev/null | head -c "$len"
      osize && same && [ "$sz" -ge $((off + len)) ] && [ "$(fpof "$cur" "$vn")" = "$fp" ] || return
      echo RILL-OK
      off=$((off + len)); prev=-1
      continue
    fi
    if [ -n "$rot" ]; then
      if [ "$sz" = "$prev" ]; then echo "RILL-FINAL $sz"; return; fi
      prev=$sz
    fi
    nap
  done
}
"#;

/// The worker runs in a subshell with the channel's stdin moved to fd 3; the
/// watchdog ends it when that stdin closes (the channel is gone). The
/// worker's TERM trap ends its `tail`.
const WRAPPER: &str = r#"exec 3<&0
@PRELUDE@p=@PATH@
d=@DIR@
b=@BASE@
(
  t=
  trap 'kill $t 2>/dev/null; exit 0' TERM
@BODY@) 3<&- &
w=$!
( cat <&3 >/dev/null 2>&1; kill $w 2>/dev/null ) >/dev/null 2>&1 &
exec 3<&-
wait $w
"#;

const FOLLOW: &str = r#"  if [ ! -e "$p" ]; then
    if [ -d "$d" ]; then echo RILL-WAIT; else echo RILL-WAIT-DIR; fi
    while [ ! -e "$p" ]; do nap; done
    start=0
  else
    start=@START@
  fi
  exec 4<"$p" || exit 1
  src=/dev/fd/4; [ -r "$src" ] || src=$p
  ident "$src"; me=$ino
  case $start in
    end) start=$size ;;
    *:*:*:*)
      want=${start%%:*}; r=${start#*:}; off=${r%%:*}; r=${r#*:}; wvn=${r%%:*}; wfp=${r#*:}
      if [ "$ino" = "$want" ] && [ "$size" -ge "$off" ] && [ "$(fpof "$src" "$wvn")" = "$wfp" ]; then start=$off; else start=0; fi ;;
  esac
  mode=@MODE@
  if [ "$mode" = auto ]; then
    case $(tail --version 2>/dev/null) in *GNU*) mode=stream ;; *) mode=chunks ;; esac
  fi
  echo "RILL $dev $ino $vn $fp $start $mode"
  rot=
  if [ "$mode" = chunks ]; then off=$start; chunks; exit 0; fi
  tail -s @STREAM_POLL@ -c +$((start + 1)) -f @NONCE@"$src" 2>&1 &
  t=$!
  while kill -0 $t 2>/dev/null; do
    nap
    set -- $(ls -diL "$p" 2>/dev/null)
    if [ "${1:-gone}" != "$me" ]; then
      echo "RILL-ROTATED ${1:-gone}" >&2
      rot=1; prev=-1
      while :; do
        osize || { echo RILL-GONE >&2; break; }
        if [ "$sz" = "$prev" ]; then echo "RILL-FINAL $sz" >&2; break; fi
        prev=$sz; nap
      done
      wait $t; exit 0
    fi
    osize
    if [ "$sz" != "$lastsz" ]; then echo "RILL-SIZE $sz" >&2; lastsz=$sz; fi
    if [ "$vn" -lt @FPB@ ] && [ "$sz" -ge @FPB@ ]; then vn=@FPB@; fp=$(fpof "$cur" "$vn"); echo "RILL-FP $vn $fp" >&2; fi
  done
  exit 1
"#;

const FINISH: &str = r#"  ino_=@INO@
  if [ "$ino_" = - ]; then
    n=$(findcopy "$d" @VLEN@ @VFP@ @OFFSET@ "$b")
  else
    set -- $(ls -diL "$p" 2>/dev/null)
    if [ "${1:-}" = "$ino_" ]; then n=$b; else n=$(byino "$d" "$ino_"); fi
    [ -n "$n" ] && fits "$d/$n" @VLEN@ @VFP@ @OFFSET@ || n=
  fi
  if [ -z "$n" ]; then echo RILL-GONE; exit 0; fi
  exec 4<"$d/$n" || { echo RILL-GONE; exit 0; }
  src=/dev/fd/4; [ -r "$src" ] || src=$d/$n
  ident "$src"; me=$ino
  echo "RILL $dev $ino $vn $fp @OFFSET@ chunks"
  off=@OFFSET@; rot=1
  chunks
"#;

/// `path`'s folder and file name.
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (".", path),
    }
}

fn script(path: &str, body: &str, interval: Duration) -> String {
    let (dir, base) = split(path);
    WRAPPER
        .replace("@PRELUDE@", PRELUDE)
        .replace("@BODY@", body)
        .replace("@PATH@", &shell_quote(path))
        .replace("@DIR@", &shell_quote(dir))
        .replace("@BASE@", &shell_quote(base))
        .replace("@IV@", &seconds(interval))
        .replace("@FPB@", &FINGERPRINT_BYTES.to_string())
        .replace("@CHUNK@", &CHUNK_BYTES.to_string())
}

/// The command to exec on the server to follow `path` from `start`, checking
/// every `interval` whether it was rotated, GNU tail looking for new lines
/// every `stream_poll`.
pub fn follow_command(
    path: &str,
    start: StartAt,
    (interval, stream_poll): (Duration, Duration),
    reading: Reading,
    nonce: &Nonce,
) -> String {
    let start = match start {
        StartAt::End => "end".to_owned(),
        StartAt::Beginning => "0".to_owned(),
        StartAt::Resume {
            ino,
            offset,
            verify,
        } => format!("{ino}:{offset}:{}:{}", verify.len, verify.fp),
    };
    let body = FOLLOW
        .replace("@START@", &start)
        .replace(
            "@MODE@",
            match reading {
                Reading::Auto => "auto",
                Reading::Chunks => "chunks",
            },
        )
        .replace("@NONCE@", nonce.as_str())
        .replace("@STREAM_POLL@", &seconds(stream_poll));
    script(path, &body, interval)
}

/// Which old file a finish reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldFile {
    /// The entry of the log's directory with this inode (a renamed file).
    Inode(u64),
    /// The newest file of the directory, other than the log itself, whose
    /// first bytes match (a copytruncate copy).
    Copy,
}

/// The command that reads an old file of `path`'s directory from `offset`
/// in chunks until it stops growing (`RILL-FINAL <size>`), with the same
/// header as a follow; `RILL-GONE` instead of a header when no file there is
/// at least `offset` long with first bytes matching `verify`.
pub fn finish_command(
    path: &str,
    old: OldFile,
    verify: Verify,
    offset: u64,
    interval: Duration,
) -> String {
    let ino = match old {
        OldFile::Inode(ino) => ino.to_string(),
        OldFile::Copy => "-".to_owned(),
    };
    let body = FINISH
        .replace("@INO@", &ino)
        .replace("@VLEN@", &verify.len.to_string())
        .replace("@VFP@", &verify.fp.to_string())
        .replace("@OFFSET@", &offset.to_string());
    script(path, &body, interval)
}

/// A control line: on stderr (stream mode) or in the stream (chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The path now names another inode, or nothing.
    Rotated,
    /// The file being drained stopped growing at this size.
    Final(u64),
    /// The file being read by name is no longer in the directory.
    Gone,
    /// The file shrank or its first bytes changed: it was truncated.
    Truncated,
    /// The file grew to a full fingerprint: verify it by this from now on.
    Fingerprint(Verify),
    /// The file at the path is now this long (reported when it changes).
    Size(u64),
    /// The script is alive (once per interval, however quiet the file).
    Tick,
}

/// Parses one control line; `None` for anything else (a real error message).
pub fn parse_control(line: &str) -> Option<Control> {
    let mut words = line.split_ascii_whitespace();
    let tag = words.next()?;
    let mut num = || words.next()?.parse::<u64>().ok();
    match tag {
        "RILL-ROTATED" => Some(Control::Rotated),
        "RILL-FINAL" => num().map(Control::Final),
        "RILL-GONE" => Some(Control::Gone),
        "RILL-TRUNCATED" => Some(Control::Truncated),
        "RILL-SIZE" => num().map(Control::Size),
        "RILL-TICK" => Some(Control::Tick),
        "RILL-FP" => {
            let len = num()?;
            let fp = u32::try_from(num()?).ok()?;
            Some(Control::Fingerprint(Verify { len, fp }))
        }
        _ => None,
    }
}

/// How the script sends the bytes after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stream,
    Chunks,
}

/// The script's first line(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The file does not exist yet (nor, with `dir_missing`, its folder);
    /// the script waits for it.
    Waiting { dir_missing: bool },
    /// Reading the file `dev`/`ino` from byte `start`.
    Following {
        dev: u64,
        ino: u64,
        verify: Verify,
        start: u64,
        mode: Mode,
    },
    /// (finish) The old file is not there any more.
    Gone,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unexpected output from the follow script: {0:?}")]
pub struct HeaderError(pub String);

pub fn parse_header(line: &[u8]) -> Result<Header, HeaderError> {
    let text = String::from_utf8_lossy(line);
    let err = || HeaderError(text.clone().into_owned());
    match text.as_ref() {
        "RILL-WAIT" => return Ok(Header::Waiting { dir_missing: false }),
        "RILL-WAIT-DIR" => return Ok(Header::Waiting { dir_missing: true }),
        "RILL-GONE" => return Ok(Header::Gone),
        _ => {}
    }
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let [tag, dev, ino, vn, fp, start, mode] = words[..] else {
        return Err(err());
    };
    if tag != "RILL" {
        return Err(err());
    }
    let num = |w: &str| w.parse::<u64>().map_err(|_| err());
    let mode = match mode {
        "stream" => Mode::Stream,
        "chunks" => Mode::Chunks,
        _ => return Err(err()),
    };
    Ok(Header::Following {
        dev: num(dev)?,
        ino: num(ino)?,
        verify: Verify {
            len: num(vn)?,
            fp: u32::try_from(num(fp)?).map_err(|_| err())?,
        },
        start: num(start)?,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{ChunkDecoder, Piece, StreamFilter};
    use std::io::{BufRead, Read, Write};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Instant;

    const IV: Duration = Duration::from_millis(200);

    #[test]
    fn quoting_keeps_any_path_one_literal_word() {
        for path in [
            "/var/log/a b.log",
            "/tmp/it's",
            "/tmp/$(touch x)",
            "/tmp/`id`;rm -rf /",
            "/tmp/\"q\"",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(path)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), path);
        }
    }

    #[test]
    fn intervals_render_as_sleep_takes_them() {
        assert_eq!(seconds(Duration::from_secs(1)), "1");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.25");
    }

    #[test]
    fn nonces_name_the_same_file_differently_each_time() {
        let (a, b) = (Nonce::random(), Nonce::random());
        assert_ne!(a, b);
        for n in [&a, &b, &Nonce::from_bits(u64::MAX)] {
            // Never a leading "//" (implementation-defined in POSIX).
            assert!(n.as_str().starts_with("/./") || n.as_str() == "/.");
            let p = format!("{}/etc/hostname", n.as_str());
            assert_eq!(
                std::fs::canonicalize(&p).unwrap(),
                Path::new("/etc/hostname")
            );
        }
    }

    #[test]
    fn headers_and_controls_parse() {
        assert_eq!(
            parse_header(b"RILL-WAIT"),
            Ok(Header::Waiting { dir_missing: false })
        );
        assert_eq!(
            parse_header(b"RILL-WAIT-DIR"),
            Ok(Header::Waiting { dir_missing: true })
        );
        assert_eq!(
            parse_header(b"RILL 2049 131 64 3735928559 42 stream"),
            Ok(Header::Following {
                dev: 2049,
                ino: 131,
                verify: Verify {
                    len: 64,
                    fp: 0xdeadbeef
                },
                start: 42,
                mode: Mode::Stream,
            })
        );
        assert!(parse_header(b"sh: ls: not found").is_err());
        assert!(parse_header(b"RILL 1 2 3 4 5").is_err());
        assert!(parse_header(b"RILL 1 2 3 4 5 sideways").is_err());
        assert_eq!(parse_control("RILL-FINAL 12"), Some(Control::Final(12)));
        assert_eq!(
            parse_control("RILL-FP 64 9"),
            Some(Control::Fingerprint(Verify { len: 64, fp: 9 }))
        );
        assert_eq!(parse_control("RILL-SIZE 7"), Some(Control::Size(7)));
        assert_eq!(parse_control("RILL-TICK"), Some(Control::Tick));
        assert_eq!(parse_control("RILL-FINAL x"), None);
        assert_eq!(parse_control("cat: oops"), None);
    }

    /// A script running locally under `sh`, as sshd would run it: its output
    /// decoded the way the tap decodes it.
    struct Local {
        child: std::process::Child,
        out: mpsc::Receiver<Vec<u8>>,
        err: mpsc::Receiver<String>,
        head: Vec<u8>,
        header: Option<Header>,
        decoder: Option<Decoder>,
        pieces: Vec<Piece>,
        stderr: Vec<String>,
        /// Keeps BusyBox's applet folder while the script runs.
        _shell: Shell,
    }

    enum Decoder {
        Stream(Box<StreamFilter>),
        Chunks(ChunkDecoder),
    }

    /// Where the script runs: this machine's `sh` and tools, or BusyBox's
    /// `sh` with nothing but BusyBox applets on its PATH (a BusyBox host).
    enum Shell {
        Posix,
        BusyBox(tempfile::TempDir),
    }

    fn busybox() -> Shell {
        let busybox = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .map(|d| Path::new(d).join("busybox"))
            .find(|p| p.exists())
            .expect("busybox is not installed; run tests/install-deps.sh");
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(&busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            std::os::unix::fs::symlink(&busybox, dir.path().join(applet)).unwrap();
        }
        Shell::BusyBox(dir)
    }

    impl Local {
        fn start(script: String, nonce: &Nonce) -> Local {
            Local::start_on(Shell::Posix, script, nonce)
        }

        fn start_on(shell: Shell, script: String, nonce: &Nonce) -> Local {
            let mut cmd = match &shell {
                Shell::Posix => Command::new("sh"),
                Shell::BusyBox(applets) => {
                    let mut c = Command::new(applets.path().join("sh"));
                    c.env("PATH", applets.path());
                    c
                }
            };
            let mut child = cmd
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (otx, out) = mpsc::channel();
            let mut stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 || otx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
            let (etx, err) = mpsc::channel();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if etx.send(line).is_err() {
                        break;
                    }
                }
            });
            let _ = nonce;
            Local {
                child,
                out,
                err,
                head: Vec::new(),
                header: None,
                decoder: None,
                pieces: Vec::new(),
                stderr: Vec::new(),
                _shell: shell,
            }
        }

        fn take(&mut self, mut bytes: &[u8], nonce: &Nonce) {
            while self.decoder.is_none() {
                let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                    self.head.extend_from_slice(bytes);
                    return;
                };
                self.head.extend_from_slice(&bytes[..nl]);
                bytes = &bytes[nl + 1..];
                let h = parse_header(&std::mem::take(&mut self.head)).unwrap();
                self.header = Some(h);
                match h {
                    Header::Following { mode, start, .. } => {
                        self.decoder = Some(match mode {
                            Mode::Stream => Decoder::Stream(Box::new(StreamFilter::new(nonce))),
                            Mode::Chunks => Decoder::Chunks(ChunkDecoder::new(start)),
                        })
                    }
                    Header::Waiting { .. } => {}
                    Header::Gone => return,
                }
            }
            match self.decoder.as_mut().unwrap() {
                Decoder::Stream(f) => f.feed(bytes, &mut self.pieces),
                Decoder::Chunks(d) => d.feed(bytes, &mut self.pieces).unwrap(),
            }
        }

        /// Collects output until `done` holds, or fails after 10 s.
        fn until(&mut self, nonce: &Nonce, mut done: impl FnMut(&Local) -> bool) {
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                while let Ok(b) = self.out.try_recv() {
                    self.take(&b, nonce);
                }
                while let Ok(l) = self.err.try_recv() {
                    self.stderr.push(l);
                }
                if done(self) {
                    return;
                }
                assert!(
                    Instant::now() < end,
                    "gave up: header {:?}, data {:?}, controls {:?}, stderr {:?}",
                    self.header,
                    String::from_utf8_lossy(&self.data()),
                    self.controls(),
                    self.stderr
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        fn data(&self) -> Vec<u8> {
            self.pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Data(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect()
        }

        /// Control records from the stream and from stderr, in arrival order
        /// per source, size reports and ticks left out.
        fn controls(&self) -> Vec<Control> {
            self.all_controls()
                .into_iter()
                .filter(|c| !matches!(c, Control::Size(_) | Control::Tick))
                .collect()
        }

        fn all_controls(&self) -> Vec<Control> {
            let mut c: Vec<Control> = self
                .pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Control(c) => Some(*c),
                    _ => None,
                })
                .collect();
            c.extend(self.stderr.iter().filter_map(|l| parse_control(l)));
            c
        }

        /// The data that came before the first control record in the stream
        /// (size reports aside).
        fn data_before_control(&self) -> Vec<u8> {
            self.pieces
                .iter()
                .take_while(|p| matches!(p, Piece::Data(_) | Piece::Control(Control::Size(_))))
                .filter_map(|p| match p {
                    Piece::Data(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect()
        }

        /// Closes stdin, as sshd does when the channel closes; the script
        /// must end by itself.
        fn close(mut self) {
            drop(self.child.stdin.take());
            let end = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < end, "script outlived its stdin");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn append(path: &Path, data: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(data)
            .unwrap();
    }

    /// How a host runs the follow script: GNU tools (stream mode), GNU
    /// tools forced to chunks, BusyBox only (chunks, found by itself).
    #[derive(Clone, Copy, Debug)]
    enum On {
        Gnu,
        GnuChunks,
        BusyBox,
    }

    const EVERY_HOST: [(On, Mode); 3] = [
        (On::Gnu, Mode::Stream),
        (On::GnuChunks, Mode::Chunks),
        (On::BusyBox, Mode::Chunks),
    ];

    fn follow(path: &Path, start: StartAt, on: On) -> (Local, Nonce) {
        let nonce = Nonce::random();
        let reading = match on {
            On::GnuChunks => Reading::Chunks,
            _ => Reading::Auto,
        };
        let script = follow_command(
            path.to_str().unwrap(),
            start,
            (IV, Duration::from_millis(20)),
            reading,
            &nonce,
        );
        let shell = match on {
            On::BusyBox => busybox(),
            _ => Shell::Posix,
        };
        (Local::start_on(shell, script, &nonce), nonce)
    }

    fn following(l: &Local) -> Option<(u64, u64, Verify, u64, Mode)> {
        match l.header {
            Some(Header::Following {
                dev,
                ino,
                verify,
                start,
                mode,
            }) => Some((dev, ino, verify, start, mode)),
            _ => None,
        }
    }

    #[test]
    fn the_script_names_the_file_and_resumes_only_into_the_same_one() {
        for (on, mode) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("odd name 'q' $x.log");
            let body = "0123456789".repeat(10) + "\nsecond\n";
            std::fs::write(&path, &body).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| l.header.is_some());
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
            let (mut l, n) = follow(&path, resume(verify), on);
            l.until(&n, |l| l.data() == b"second\n");
            assert_eq!(following(&l).unwrap().3, 101);
            // The file's size is reported, for the lag in `rill status`.
            l.until(&n, |l| {
                l.all_controls().contains(&Control::Size(body.len() as u64))
            });
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
                let (mut l, n) = follow(&path, start, on);
                l.until(&n, |l| l.data() == body.as_bytes());
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
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| l.header.is_some());
            let verify = following(&l).unwrap().2;
            assert_eq!(verify.len, 6);
            append(&path, "x".repeat(70).as_bytes());
            append(&path, b"\n");
            l.until(&n, |l| {
                l.controls()
                    .iter()
                    .any(|c| matches!(c, Control::Fingerprint(v) if v.len == 64))
            });
            l.close();
            // Resuming with the short verification works.
            let (mut l, n) = follow(
                &path,
                StartAt::Resume {
                    ino: std::fs::metadata(&path).unwrap().ino(),
                    offset: 6,
                    verify,
                },
                on,
            );
            l.until(&n, |l| l.data().len() == 71);
            l.close();
        }
    }

    #[test]
    fn a_renamed_file_is_drained_and_its_final_size_reported() {
        for (on, _) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("app.log");
            append(&path, b"");
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| l.header.is_some());
            append(&path, b"one\n");
            l.until(&n, |l| l.data() == b"one\n");
            // logrotate's create mode: rename, create anew; the writer still
            // appends to the old inode before it is signalled, even after
            // the old file was deleted (the script holds it open).
            let old = dir.path().join("app.log.1");
            std::fs::rename(&path, &old).unwrap();
            append(&path, b"");
            append(&old, b"two\n");
            let mut w = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
            l.until(&n, |l| l.controls().contains(&Control::Rotated));
            std::fs::remove_file(&old).unwrap();
            w.write_all(b"three\n").unwrap();
            let all = b"one\ntwo\nthree\n";
            l.until(&n, |l| {
                l.data() == all && l.controls().contains(&Control::Final(all.len() as u64))
            });
            assert_eq!(l.controls()[0], Control::Rotated);
            l.close();
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
            let (mut l, n) = follow(&path, StartAt::Beginning, on);
            l.until(&n, |l| l.data() == old.as_bytes());
            std::fs::copy(&path, dir.path().join("app.log.1")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            append(&path, b"new line\n");
            l.until(&n, |l| l.controls().contains(&Control::Truncated));
            assert_eq!(l.data_before_control(), old.as_bytes(), "{on:?} {mode:?}");
            l.close();
        }
    }

    #[test]
    fn a_file_that_is_not_there_yet_nor_its_folder_is_waited_for() {
        for (on, _) in EVERY_HOST {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("later/app.log");
            let (mut l, n) = follow(&path, StartAt::End, on);
            l.until(&n, |l| {
                l.header == Some(Header::Waiting { dir_missing: true })
            });
            std::fs::create_dir(dir.path().join("later")).unwrap();
            append(&path, b"first\n");
            l.until(&n, |l| l.data() == b"first\n");
            assert_eq!(following(&l).unwrap().3, 0, "a new file is read from 0");
            l.close();
        }
    }

    fn finish(path: &Path, old: OldFile, verify: Verify, offset: u64) -> (Local, Nonce) {
        let nonce = Nonce::random();
        let l = Local::start(
            finish_command(path.to_str().unwrap(), old, verify, offset, IV),
            &nonce,
        );
        (l, nonce)
    }

    #[test]
    fn finish_reads_an_old_file_by_inode_or_a_copy_by_its_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let body = "x".repeat(70) + "\nlast\n";
        append(&path, body.as_bytes());
        let ino = std::fs::metadata(&path).unwrap().ino();
        let (mut l, n) = follow(&path, StartAt::End, On::Gnu);
        l.until(&n, |l| l.header.is_some());
        let verify = following(&l).unwrap().2;
        l.close();
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        append(&path, b"new file\n");

        let (mut l, n) = finish(&path, OldFile::Inode(ino), verify, 71);
        l.until(&n, |l| {
            l.controls().contains(&Control::Final(body.len() as u64))
        });
        assert_eq!(l.data(), b"last\n");
        assert_eq!(following(&l).unwrap().3, 71);
        l.close();

        // A copy (another inode) with the same first bytes.
        std::fs::copy(&rotated, dir.path().join("copy")).unwrap();
        std::fs::remove_file(&rotated).unwrap();
        let (mut l, n) = finish(&path, OldFile::Copy, verify, 71);
        l.until(&n, |l| {
            l.controls().contains(&Control::Final(body.len() as u64))
        });
        assert_eq!(l.data(), b"last\n");
        l.close();

        // Nothing matching (other first bytes, or shorter than the offset).
        for (old, verify, offset) in [
            (OldFile::Copy, Verify { len: 64, fp: 1 }, 71),
            (OldFile::Copy, verify, 1000),
            (OldFile::Inode(ino), verify, 71),
        ] {
            let (mut l, n) = finish(&path, old, verify, offset);
            l.until(&n, |l| l.header.is_some());
            assert_eq!(l.header, Some(Header::Gone));
            l.close();
        }
    }
}
