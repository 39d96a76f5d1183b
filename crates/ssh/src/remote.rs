//! Running a POSIX `sh` script on a server whatever the account's login
//! shell is (sh, bash, zsh, fish, tcsh): the login shell only runs
//! `exec sh -c BOOT rill SCRIPT ARGS...`, each word escaped so that every
//! one of them passes it on unchanged. The script's text is constant and
//! every value reaches it as a positional parameter, never by substitution:
//! a path is always a path.

/// What the login shell runs: `sh`, which turns each of its arguments back
/// into the bytes they stand for ([`escape`]), then runs the first as a
/// script with the rest as its positional parameters. It holds no `'`,
/// `\`, `!` or newline, so sh, bash, zsh, fish and tcsh all pass it to `sh`
/// unchanged inside single quotes.
const BOOT: &str = r#"for a in "$@"; do v=$(printf "%bx" "$a"); set -- "$@" "${v%x}"; shift; done; s=$1; shift; eval "$s""#;

/// `s` as a word that every login shell passes on unchanged inside single
/// quotes and that `printf %b` turns back into `s`: every byte but
/// printable ASCII other than `\`, `'` and `!` becomes `\0ooo`.
pub fn escape(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s {
        if c.is_ascii_graphic() && !matches!(c, b'\\' | b'\'' | b'!') || c == b' ' {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\0{c:03o}"));
        }
    }
    out
}

/// The command line for the login shell: `script` run by `sh` with `args`
/// as `$1`, `$2`, ...
pub fn sh(script: &str, args: &[impl AsRef<str>]) -> String {
    let mut cmd = format!("exec sh -c '{BOOT}' rill '{}'", escape(script.as_bytes()));
    for a in args {
        cmd.push_str(" '");
        cmd.push_str(&escape(a.as_ref().as_bytes()));
        cmd.push('\'');
    }
    cmd
}

/// `command` (a command line from [`sh`]) run as root through `sudo`:
/// `sudo -n` (it must not ask), or with `password` `sudo -S -p ''`, which
/// reads the password from the channel's first line (the caller writes it
/// there; never on a command line, which `ps` shows to every user).
pub fn as_root(command: &str, password: bool) -> String {
    let rest = command
        .strip_prefix("exec sh ")
        .expect("a command line made by remote::sh");
    let sudo = if password {
        "sudo -S -p '' --"
    } else {
        "sudo -n --"
    };
    format!("exec {sudo} sh {rest}")
}
