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

use rill_proto::FileId;

/// Quotes `s` for a POSIX shell: the result is always one literal word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At the current end of the file (new lines only). A file that does not
    /// exist yet is read from its beginning once it appears.
    End,
    /// At `offset` if the file still has inode `ino` and is at least that long;
    /// otherwise from 0 (it was replaced or truncated).
    Resume { ino: u64, offset: u64 },
}

/// The command to exec on the server to follow `path`.
pub fn follow_command(path: &str, start: StartAt) -> String {
    let start = match start {
        StartAt::End => "end".to_owned(),
        StartAt::Resume { ino, offset } => format!("{ino}:{offset}"),
    };
    format!(
        r#"exec 3<&0
p={path}
start={start}
(
  if [ ! -e "$p" ]; then
    echo RILL-WAIT
    while [ ! -e "$p" ]; do sleep 1; done
    start=0
  fi
  set -- $(ls -di "$p")
  ino=$1
  dev=$(stat -c %d "$p" 2>/dev/null) || dev=0
  size=$(wc -c < "$p")
  size=$((size + 0))
  fp=0
  if [ "$size" -ge {fpb} ]; then fp=$(head -c {fpb} "$p" | cksum); fp=${{fp%% *}}; fi
  case $start in
    end) start=$size ;;
    *:*) if [ "$ino" = "${{start%%:*}}" ] && [ "$size" -ge "${{start#*:}}" ]; then start=${{start#*:}}; else start=0; fi ;;
  esac
  echo "RILL $dev $ino $fp $start"
  exec tail -c +$((start + 1)) -f "$p"
) 3<&- &
w=$!
( cat <&3 >/dev/null 2>&1; kill $w 2>/dev/null ) >/dev/null 2>&1 &
exec 3<&-
wait $w
"#,
        path = shell_quote(path),
        fpb = FileId::FINGERPRINT_BYTES,
    )
}

/// The script's first line(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The file does not exist yet; the script waits for it.
    Waiting,
    /// Following `file_id` from byte `start`.
    Following { file_id: FileId, start: u64 },
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
            .arg(follow_command(path.to_str().unwrap(), start))
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
            },
        );
        assert!(matches!(header, Header::Following { start: 0, .. }));
        assert_eq!(rest, body.as_bytes());
        // At the end: nothing old is sent.
        let (header, rest) = run_local(&path, StartAt::End);
        assert!(matches!(header, Header::Following { start, .. } if start == body.len() as u64));
        assert!(rest.is_empty());
    }
}
