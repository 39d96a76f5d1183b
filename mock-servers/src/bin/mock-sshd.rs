//! mock-sshd: the embedded SSH host as a process, for manual fault tests.
//!
//! `mock-sshd --bind 127.0.0.1:0 --user U --password-file F` prints
//! `listening <port>` and `known_hosts <line>`, then serves until SIGINT/SIGTERM.

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut bind, mut user, mut password_file) = ("127.0.0.1:0".to_owned(), None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bind" => bind = args.next().unwrap_or(bind),
            "--user" => user = args.next(),
            "--password-file" => password_file = args.next(),
            "-h" | "--help" => {
                println!("usage: mock-sshd --bind ADDR:PORT --user USER --password-file FILE");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let user = user.ok_or_else(|| anyhow::anyhow!("--user is required"))?;
    let file = password_file.ok_or_else(|| anyhow::anyhow!("--password-file is required"))?;
    let password = std::fs::read_to_string(&file)?.trim_end().to_owned();
    let host = rill_mock_servers::EmbeddedSshHost::start(&bind, &user, &password)?;
    println!("listening {}", host.port());
    println!("known_hosts {}", host.known_hosts_line());
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: registering a flag-setting handler.
        unsafe { libc::signal(sig, handler as *const () as libc::sighandler_t) };
    }
    while !STOP.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    host.stop();
    Ok(())
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn handler(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}
