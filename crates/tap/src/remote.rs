//! What runs on the server: a portable POSIX sh script per followed log.
//!
//! The script prints one header line, `RILL <dev> <ino> <fingerprint> <start>`,
//! then exactly the file's bytes from offset `start` on (via `tail -c +N -f`,
//! which GNU, BusyBox and BSD all have). While the file does not exist yet it
//! prints `RILL-WAIT` once and polls every second.
//!
//! No leftovers: sshd gives the script a pipe as stdin that closes when the
//! channel or the connection goes away. A watchdog (`cat` on that stdin) then
//! kills the follower, so no remote process outlives its channel by more than
//! the time sshd takes to notice.

use std::time::Duration;

use rill_proto::FileId;

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

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the current end of the file (new lines only). A file that does not
    /// exist yet is read from its beginning once it appears.
    End,
    /// At byte 0 (a file that replaced the one we followed).
    Beginning,
    /// At `offset` if the file still has inode `ino`, is at least that long
    /// and (when both are known) has fingerprint `fingerprint`; otherwise
    /// from 0 (it was replaced or truncated).
    Resume {
        ino: u64,
        offset: u64,
        fingerprint: u32,
    },
}

/// Shell functions shared by the scripts: `ident FILE` sets `dev`, `ino`,
/// `size` and `fp` (POSIX `cksum` of the first FINGERPRINT_BYTES, or the
/// first 32 bits of their `md5sum` where `cksum` is missing, as in Debian's
/// BusyBox; 0 if the file is shorter);
/// `byino DIR INO` prints the name of the entry of DIR with inode INO.
fn prelude() -> String {
    format!(
        r#"ident() {{
  f=$1
  set -- $(ls -di "$f" 2>/dev/null); ino=${{1:-0}}
  dev=$(stat -c %d "$f" 2>/dev/null) || dev=0
  size=$(wc -c < "$f" 2>/dev/null); size=$((size + 0))
  fp=0
  if [ "$size" -ge {fpb} ]; then
    fp=$(head -c {fpb} "$f" | cksum 2>/dev/null); fp=${{fp%% *}}
    if [ -z "$fp" ]; then h=$(head -c {fpb} "$f" | md5sum); h=$(printf %.8s "$h"); fp=$((0x$h)); fi
  fi
}}
byino() {{
  ls -ai "$1" 2>/dev/null | while read -r i n; do
    if [ "$i" = "$2" ] && [ -f "$1/$n" ]; then printf '%s\n' "$n"; break; fi
  done
}}
"#,
        fpb = FileId::FINGERPRINT_BYTES
    )
}

/// The watchdog: when the channel closes (stdin EOF), end the script's worker
/// `$w` (whose TERM trap ends its `tail`).
const WATCHDOG: &str = r#"w=$!
( cat <&3 >/dev/null 2>&1; kill $w 2>/dev/null ) >/dev/null 2>&1 &
exec 3<&-
wait $w
"#;

/// The command to exec on the server to follow `path`, checking every
/// `interval` whether it was rotated or truncated.
pub fn follow_command(path: &str, start: StartAt, interval: Duration) -> String {
    let start = match start {
        StartAt::End => "end".to_owned(),
        StartAt::Beginning => "0".to_owned(),
        StartAt::Resume {
            ino,
            offset,
            fingerprint,
        } => format!("{ino}:{offset}:{fingerprint}"),
    };
    let dir = match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    };
    format!(
        r#"exec 3<&0
{prelude}p={path}
d={dir}
start={start}
(
  t=
  trap 'kill $t 2>/dev/null; exit 0' TERM
  if [ ! -e "$p" ]; then
    echo RILL-WAIT
    while [ ! -e "$p" ]; do sleep {iv}; done
    start=0
  fi
  ident "$p"
  case $start in
    end) start=$size ;;
    *:*:*)
      want=${{start%%:*}}; rest=${{start#*:}}; off=${{rest%%:*}}; wfp=${{rest#*:}}
      if [ "$ino" = "$want" ] && [ "$size" -ge "$off" ] && {{ [ "$wfp" = 0 ] || [ "$fp" = 0 ] || [ "$fp" = "$wfp" ]; }}; then start=$off; else start=0; fi ;;
  esac
  echo "RILL $dev $ino $fp $start"
  tail -c +$((start + 1)) -f "$p" &
  t=$!
  last=$size
  me=$ino
  while kill -0 $t 2>/dev/null; do
    sleep {iv}
    set -- $(ls -di "$p" 2>/dev/null); now=${{1:-gone}}
    if [ "$now" != "$me" ]; then
      echo "RILL-ROTATED $now" >&2
      prev=-1
      while :; do
        n=$(byino "$d" "$me")
        if [ -z "$n" ]; then echo RILL-GONE >&2; break; fi
        sz=$(wc -c < "$d/$n" 2>/dev/null); sz=$((sz + 0))
        if [ "$sz" = "$prev" ]; then echo "RILL-FINAL $sz" >&2; break; fi
        prev=$sz
        sleep {iv}
      done
      wait $t
      exit 0
    fi
    sz=$(wc -c < "$p" 2>/dev/null); sz=$((sz + 0))
    if [ "$sz" -lt "$last" ]; then
      kill $t 2>/dev/null
      echo "RILL-TRUNCATED $sz" >&2
      exit 0
    fi
    last=$sz
  done
  exit 1
) 3<&- &
{watchdog}"#,
        prelude = prelude(),
        path = shell_quote(path),
        dir = shell_quote(dir),
        iv = seconds(interval),
        watchdog = WATCHDOG,
    )
}

/// Which old file a finish reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldFile {
    /// The entry of the log's directory with this inode (a renamed file).
    Inode(u64),
    /// A file of the directory other than the log itself whose fingerprint
    /// is this and that is at least as long as the offset (a copytruncate copy).
    Copy { fingerprint: u32 },
}

/// The command that reads an old file of `path`'s directory from `offset`,
/// with the same header as a follow, following it until it stops growing
/// (then `RILL-FINAL <size>` on stderr, as a draining follow does) or leaves
/// the directory (`RILL-GONE` on stderr); a header `RILL-GONE` when no such
/// file exists.
pub fn finish_command(path: &str, old: OldFile, offset: u64, interval: Duration) -> String {
    let dir = match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    };
    let find = match old {
        OldFile::Inode(ino) => format!(r#"n=$(byino "$d" {ino})"#),
        OldFile::Copy { fingerprint } => format!(
            r#"n=$(ls -a "$d" 2>/dev/null | while read -r n; do
  c="$d/$n"
  [ -f "$c" ] && [ "$c" != "$p" ] || continue
  ident "$c"
  if [ "$fp" = {fingerprint} ] && [ "$size" -ge {offset} ]; then printf '%s\n' "$n"; break; fi
done)"#
        ),
    };
    format!(
        r#"exec 3<&0
{prelude}p={path}
d={dir}
(
  t=
  trap 'kill $t 2>/dev/null; exit 0' TERM
  {find}
  if [ -z "$n" ]; then echo RILL-GONE; exit 0; fi
  ident "$d/$n"
  me=$ino
  echo "RILL $dev $ino $fp {offset}"
  tail -c +{skip} -f "$d/$n" &
  t=$!
  prev=-1
  while :; do
    n=$(byino "$d" "$me")
    if [ -z "$n" ]; then echo RILL-GONE >&2; break; fi
    sz=$(wc -c < "$d/$n" 2>/dev/null); sz=$((sz + 0))
    if [ "$sz" = "$prev" ]; then echo "RILL-FINAL $sz" >&2; break; fi
    prev=$sz
    sleep {iv}
  done
  wait $t
) 3<&- &
{watchdog}"#,
        prelude = prelude(),
        path = shell_quote(path),
        dir = shell_quote(dir),
        skip = offset + 1,
        iv = seconds(interval),
        watchdog = WATCHDOG,
    )
}

/// A control message on a follow script's stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The path now names another inode, or nothing.
    Rotated,
    /// The old inode stopped growing at this size.
    Final(u64),
    /// The old inode is no longer in the directory.
    Gone,
    /// The file shrank: it was truncated (copytruncate).
    Truncated,
}

/// Parses one stderr line; `None` for anything else (a real error message).
pub fn parse_control(line: &str) -> Option<Control> {
    let mut w = line.split_ascii_whitespace();
    match w.next()? {
        "RILL-ROTATED" => Some(Control::Rotated),
        "RILL-FINAL" => w.next()?.parse().ok().map(Control::Final),
        "RILL-GONE" => Some(Control::Gone),
        "RILL-TRUNCATED" => Some(Control::Truncated),
        _ => None,
    }
}

/// The script's first line(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The file does not exist yet; the script waits for it.
    Waiting,
    /// Following `file_id` from byte `start`.
    Following { file_id: FileId, start: u64 },
    /// (finish) The old file is not there any more.
    Gone,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unexpected output from the follow script: {0:?}")]
pub struct HeaderError(pub String);

pub fn parse_header(line: &[u8]) -> Result<Header, HeaderError> {
    let text = String::from_utf8_lossy(line);
    let err = || HeaderError(text.clone().into_owned());
    if text == "RILL-WAIT" {
        return Ok(Header::Waiting);
    }
    if text == "RILL-GONE" {
        return Ok(Header::Gone);
    }
    let mut words = text.split_ascii_whitespace();
    if words.next() != Some("RILL") {
        return Err(err());
    }
    let mut num = || {
        words
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .ok_or_else(err)
    };
    let (dev, ino, fp, start) = (num()?, num()?, num()?, num()?);
    let fingerprint = u32::try_from(fp).map_err(|_| err())?;
    Ok(Header::Following {
        file_id: FileId {
            dev,
            ino,
            fingerprint,
        },
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
    fn headers_parse() {
        assert_eq!(parse_header(b"RILL-WAIT"), Ok(Header::Waiting));
        assert_eq!(
            parse_header(b"RILL 2049 131 3735928559 42"),
            Ok(Header::Following {
                file_id: FileId {
                    dev: 2049,
                    ino: 131,
                    fingerprint: 0xdeadbeef
                },
                start: 42
            })
        );
        assert!(parse_header(b"sh: ls: not found").is_err());
        assert!(parse_header(b"RILL 1 2 3").is_err());
    }

    /// Runs the script locally with `sh` (the same script sshd would run) and
    /// checks the header and the bytes after it.
    fn run_local(path: &std::path::Path, start: StartAt) -> (Header, Vec<u8>) {
        use std::io::Read;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(follow_command(
                path.to_str().unwrap(),
                start,
                Duration::from_secs(1),
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        // Read the header line and whatever follows until a quiet moment.
        while !got.contains(&b'\n') {
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "script ended early");
            got.extend_from_slice(&buf[..n]);
        }
        let nl = got.iter().position(|&b| b == b'\n').unwrap();
        let header = parse_header(&got[..nl]).unwrap();
        let mut rest = got[nl + 1..].to_vec();
        let want = std::fs::metadata(path).unwrap().len() as usize;
        let Header::Following { start, .. } = header else {
            panic!()
        };
        while rest.len() < want - start as usize {
            let n = stdout.read(&mut buf).unwrap();
            rest.extend_from_slice(&buf[..n]);
        }
        // Closing stdin is what sshd does when the channel closes.
        drop(child.stdin.take());
        let status = child.wait().unwrap();
        assert!(status.code().is_some() || status.signal_is_some());
        (header, rest)
    }

    trait SignalIsSome {
        fn signal_is_some(&self) -> bool;
    }
    impl SignalIsSome for std::process::ExitStatus {
        fn signal_is_some(&self) -> bool {
            use std::os::unix::process::ExitStatusExt;
            self.signal().is_some()
        }
    }

    #[test]
    fn script_reports_identity_and_resumes_at_the_offset() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd name 'q' $x.log");
        let body = "0123456789".repeat(10) + "\nsecond\n";
        std::fs::write(&path, &body).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let (header, rest) = run_local(
            &path,
            StartAt::Resume {
                ino: meta.ino(),
                offset: 101,
                fingerprint: 0,
            },
        );
        match header {
            Header::Following { file_id, start } => {
                assert_eq!(file_id.ino, meta.ino());
                assert_eq!(file_id.dev, meta.dev());
                assert_ne!(file_id.fingerprint, 0);
                assert_eq!(start, 101);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rest, b"second\n");
        // A different inode means the file was replaced: start from 0.
        let (header, rest) = run_local(
            &path,
            StartAt::Resume {
                ino: meta.ino() + 1,
                offset: 101,
                fingerprint: 0,
            },
        );
        assert!(matches!(header, Header::Following { start: 0, .. }));
        assert_eq!(rest, body.as_bytes());
        // Same inode, other first bytes (the inode was reused): from 0 too.
        let (header, _) = run_local(
            &path,
            StartAt::Resume {
                ino: meta.ino(),
                offset: 101,
                fingerprint: 12345,
            },
        );
        assert!(matches!(header, Header::Following { start: 0, .. }));
        // At the end: nothing old is sent.
        let (header, rest) = run_local(&path, StartAt::End);
        assert!(matches!(header, Header::Following { start, .. } if start == body.len() as u64));
        assert!(rest.is_empty());
    }

    /// The script running locally, its stdout and stderr collected by threads.
    struct Local {
        child: std::process::Child,
        out: std::sync::mpsc::Receiver<Vec<u8>>,
        err: std::sync::mpsc::Receiver<String>,
        got: Vec<u8>,
        errs: Vec<String>,
    }

    impl Local {
        fn start(script: String) -> Local {
            use std::io::{BufRead, Read};
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let (otx, out) = std::sync::mpsc::channel();
            let mut stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 || otx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
            let (etx, err) = std::sync::mpsc::channel();
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
            Local {
                child,
                out,
                err,
                got: Vec::new(),
                errs: Vec::new(),
            }
        }

        /// Collects output until `done` or 10 s.
        fn until(&mut self, mut done: impl FnMut(&[u8], &[String]) -> bool) -> bool {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < end {
                while let Ok(b) = self.out.try_recv() {
                    self.got.extend(b);
                }
                while let Ok(l) = self.err.try_recv() {
                    self.errs.push(l);
                }
                if done(&self.got, &self.errs) {
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            false
        }

        fn close(mut self) {
            drop(self.child.stdin.take());
            let _ = self.child.wait();
        }
    }

    fn append(path: &std::path::Path, data: &[u8]) {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(data)
            .unwrap();
    }

    #[test]
    fn a_renamed_file_is_drained_and_its_final_size_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, b"");
        let mut l = Local::start(follow_command(
            path.to_str().unwrap(),
            StartAt::End,
            Duration::from_secs(1),
        ));
        assert!(
            l.until(|o, _| o.ends_with(b" 0\n")),
            "header: {:?}",
            String::from_utf8_lossy(&l.got)
        );
        append(&path, b"one\n");
        assert!(l.until(|o, _| o.ends_with(b"one\n")));
        // logrotate's create mode: rename, create anew; the writer still
        // appends to the old inode before it is signalled.
        let old = dir.path().join("app.log.1");
        std::fs::rename(&path, &old).unwrap();
        append(&path, b"");
        append(&old, b"two\n");
        let final_size = "one\ntwo\n".len() as u64;
        let ok = l.until(|o, e| {
            o.ends_with(b"two\n")
                && e.iter()
                    .any(|x| parse_control(x) == Some(Control::Final(final_size)))
        });
        assert!(
            ok,
            "out {:?} err {:?}",
            String::from_utf8_lossy(&l.got),
            l.errs
        );
        assert_eq!(parse_control(&l.errs[0]), Some(Control::Rotated));
        l.close();
    }

    #[test]
    fn finish_reads_an_old_file_by_inode_or_by_fingerprint() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let body = "x".repeat(70) + "\nlast\n";
        append(&path, body.as_bytes());
        let ino = std::fs::metadata(&path).unwrap().ino();
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        append(&path, b"new file\n");
        let mut l = Local::start(finish_command(
            path.to_str().unwrap(),
            OldFile::Inode(ino),
            71,
            Duration::from_secs(1),
        ));
        assert!(
            l.until(|o, _| o.ends_with(b"last\n")),
            "{:?}",
            String::from_utf8_lossy(&l.got)
        );
        let text = String::from_utf8_lossy(&l.got).into_owned();
        assert!(
            text.starts_with("RILL ") && text.ends_with(" 71\nlast\n"),
            "{text}"
        );
        // It keeps following until the file stops growing, then says so.
        let final_size = body.len() as u64;
        let fin = |e: &[String]| {
            e.iter()
                .any(|x| parse_control(x) == Some(Control::Final(final_size)))
        };
        assert!(l.until(|_, e| fin(e)), "{:?}", l.errs);
        let fp = match parse_header(text.lines().next().unwrap().as_bytes()).unwrap() {
            Header::Following { file_id, .. } => file_id.fingerprint,
            other => panic!("{other:?}"),
        };
        l.close();
        // A copy with the same first bytes is found by fingerprint.
        std::fs::rename(&rotated, dir.path().join("copy")).unwrap();
        let mut l = Local::start(finish_command(
            path.to_str().unwrap(),
            OldFile::Copy { fingerprint: fp },
            71,
            Duration::from_secs(1),
        ));
        assert!(
            l.until(|o, _| o.ends_with(b"last\n")),
            "{:?}",
            String::from_utf8_lossy(&l.got)
        );
        l.close();
        // Nothing matching: RILL-GONE.
        let mut l = Local::start(finish_command(
            path.to_str().unwrap(),
            OldFile::Inode(1),
            0,
            Duration::from_secs(1),
        ));
        assert!(l.until(|o, _| o == b"RILL-GONE\n"));
        l.close();
    }
}
