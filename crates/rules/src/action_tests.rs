//! Real processes and a real local HTTP server: what a command sees, how it
//! ends, and what a webhook sends and makes of the answer.

use super::*;
use std::collections::HashMap;
use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

const FIRING: Firing<'static> = Firing {
    rule: "disk-full",
    id: "f-0042",
    body: br#"{"rule":"disk-full","id":"f-0042"}"#,
};

fn command(argv: &[&str]) -> CommandAction {
    CommandAction {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout: Duration::from_secs(10),
        run_as: None,
        memory: None,
        retries: 0,
    }
}

fn sh(script: &str) -> CommandAction {
    command(&["/bin/sh", "-c", script])
}

fn run(a: &CommandAction) -> Outcome {
    run_command(a, &FIRING, &AtomicBool::new(false))
}

/// `key=value` lines of a command's output.
fn fields(output: &str) -> HashMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn am_root() -> bool {
    // SAFETY: plain system call.
    unsafe { libc::geteuid() == 0 }
}

fn my_user_name() -> String {
    let out = std::process::Command::new("/usr/bin/id")
        .arg("-un")
        .output();
    String::from_utf8_lossy(&out.expect("id runs").stdout)
        .trim()
        .to_owned()
}

/// Pids of live processes whose command line contains `marker` as an argument.
pub(crate) fn processes_with_arg(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == marker.as_bytes())
        })
        .collect()
}

#[test]
fn a_command_sees_the_firing_and_nothing_of_ours() {
    // A descriptor without close-on-exec, as a careless library might leave.
    let file = tempfile::tempfile().expect("temp file");
    // SAFETY: dup of a valid descriptor; the copy is closed below.
    let leaked = unsafe { libc::dup(file.as_raw_fd()) };
    assert!(leaked >= 3);

    let script = r#"
        printf 'stdin=%s\n' "$(cat)"
        printf 'pwd=%s\nhome=%s\ntmpdir=%s\n' "$(pwd)" "$HOME" "$TMPDIR"
        printf 'rule=%s\nid=%s\nlang=%s\npath=%s\n' "$RILL_RULE" "$RILL_FIRING_ID" "$LANG" "$PATH"
        printf 'mode=%s\n' "$(stat -c %a .)"
        printf 'owner=%s\n' "$(stat -c %U .)"
        printf 'pid=%s\npgid=%s\n' "$$" "$(cut -d' ' -f5 /proc/$$/stat)"
    "#;
    let outcome = run(&sh(script));
    // ls lists its own descriptors: 0, 1, 2 and the one it reads the
    // directory with, which is 3 only if nothing else was inherited.
    let fds = run(&command(&["/bin/ls", "/proc/self/fd"]));
    // SAFETY: our own duplicate.
    unsafe { libc::close(leaked) };
    assert_eq!(fds.output, "0\n1\n2\n3\n", "only stdin, stdout and stderr");

    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(0));
    let got = fields(&outcome.output);
    assert_eq!(got["stdin"], r#"{"rule":"disk-full","id":"f-0042"}"#);
    assert_eq!(got["rule"], "disk-full");
    assert_eq!(got["id"], "f-0042");
    assert_eq!(got["lang"], "C.UTF-8");
    assert_eq!(got["path"], COMMAND_PATH);
    assert_eq!(got["pwd"], got["home"]);
    assert_eq!(got["pwd"], got["tmpdir"]);
    assert_eq!(got["mode"], "700");
    assert_eq!(got["pgid"], got["pid"], "its own process group");
    let expected_owner = if am_root() {
        "nobody".to_owned()
    } else {
        my_user_name()
    };
    assert_eq!(got["owner"], expected_owner);
    let workdir = Path::new(&got["pwd"]);
    assert!(workdir.starts_with(std::env::temp_dir()), "{workdir:?}");
    assert!(
        !workdir.exists(),
        "{workdir:?} is removed after the attempt"
    );
    assert!(outcome.started_at <= outcome.finished_at);
}

#[test]
fn the_environment_is_exactly_the_listed_variables() {
    std::env::set_var("RILL_TEST_LEAK_CANARY", "ours");
    let outcome = run(&command(&["/usr/bin/env"]));
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    let mut names: Vec<&str> = outcome
        .output
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "HOME",
            "LANG",
            "PATH",
            "RILL_FIRING_ID",
            "RILL_RULE",
            "TMPDIR"
        ]
    );
}

#[test]
fn each_attempt_gets_a_fresh_directory() {
    let a = sh("pwd; touch left-behind");
    let first = run(&a);
    let second = run(&a);
    assert_eq!(first.status, Status::Success, "{first:?}");
    assert_ne!(first.output, second.output);
    assert!(!Path::new(first.output.trim()).exists());
}

#[test]
fn a_nonzero_exit_is_a_failure_with_the_output_interleaved() {
    let outcome = run(&sh("echo out; echo err >&2; echo out2; exit 3"));
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.signal, None);
    assert_eq!(outcome.http_status, None);
    assert_eq!(outcome.output, "out\nerr\nout2\n");
}

#[test]
fn only_the_last_4096_bytes_of_output_are_kept() {
    // 20,000 lines of 6 bytes: 120,000 bytes.
    let outcome = run(&command(&["/usr/bin/seq", "-w", "0", "19999"]));
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    let all: String = (0..20000).map(|i| format!("{i:05}\n")).collect();
    assert_eq!(outcome.output.len(), OUTPUT_BYTES);
    assert_eq!(outcome.output, all[all.len() - OUTPUT_BYTES..]);
}

#[test]
fn a_flood_of_output_is_read_to_the_end() {
    let a = sh("head -c 50000000 /dev/zero | tr '\\0' x; printf END");
    let outcome = run(&a);
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    assert_eq!(outcome.output.len(), OUTPUT_BYTES);
    assert!(outcome.output.ends_with("xxxEND"));
}

#[test]
fn a_command_killed_by_a_signal_reports_it() {
    let outcome = run(&sh("kill -TERM $$"));
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(libc::SIGTERM));
}

#[test]
fn a_command_that_ignores_stdin_is_fine() {
    let big = vec![b'x'; 1 << 20];
    let firing = Firing {
        body: &big,
        ..FIRING
    };
    let outcome = run_command(&command(&["/bin/true"]), &firing, &AtomicBool::new(false));
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
}

#[test]
fn a_missing_program_could_not_start() {
    let outcome = run(&command(&["/nonexistent/rill-test-program"]));
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, None);
    assert!(
        outcome.output.starts_with("could not start: "),
        "{}",
        outcome.output
    );
    assert!(
        outcome.output.contains("No such file"),
        "{}",
        outcome.output
    );

    let outcome = run(&command(&["sh", "-c", "true"]));
    assert_eq!(outcome.status, Status::Failure);
    assert!(
        outcome.output.starts_with("could not start: "),
        "{}",
        outcome.output
    );
}

#[test]
fn a_timeout_kills_the_whole_group_in_time() {
    let mut a = sh("sleep 30.101 & sleep 30.102");
    a.timeout = Duration::from_millis(300);
    let began = Instant::now();
    let outcome = run(&a);
    let took = began.elapsed();
    assert_eq!(outcome.status, Status::Timeout, "{outcome:?}");
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1300), "{took:?}");
    assert_eq!(processes_with_arg("30.101"), Vec::<u32>::new());
    assert_eq!(processes_with_arg("30.102"), Vec::<u32>::new());
}

#[test]
fn a_background_child_does_not_outlive_a_successful_command() {
    let outcome = run(&sh("sleep 30.103 & echo started"));
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    assert_eq!(outcome.output, "started\n");
    assert_eq!(processes_with_arg("30.103"), Vec::<u32>::new());
}

#[test]
fn an_escaped_child_holding_the_output_does_not_hold_the_attempt() {
    let mut a = sh("setsid sleep 30.104 & echo started");
    a.timeout = Duration::from_millis(300);
    let began = Instant::now();
    let outcome = run(&a);
    let took = began.elapsed();
    for pid in processes_with_arg("30.104") {
        // SAFETY: plain system call on the test's own stray.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    assert_eq!(outcome.output, "started\n");
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[test]
fn cancelling_stops_the_command() {
    let cancel = Arc::new(AtomicBool::new(false));
    let setter = Arc::clone(&cancel);
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        setter.store(true, Ordering::Relaxed);
    });
    let began = Instant::now();
    let outcome = run_command(&sh("sleep 30.105; echo done"), &FIRING, &cancel);
    let took = began.elapsed();
    stopper.join().expect("stopper thread");
    assert_eq!(outcome.status, Status::Failure, "{outcome:?}");
    assert_eq!(outcome.output, "stopped: the collector is shutting down");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    assert_eq!(processes_with_arg("30.105"), Vec::<u32>::new());
}

#[test]
fn memory_limits_the_address_space() {
    let mut a = sh("ulimit -v");
    a.memory = Some(64 * 1024 * 1024);
    let outcome = run(&a);
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    assert_eq!(outcome.output, "65536\n");
}

#[test]
fn run_as_switches_user_when_root_and_refuses_otherwise() {
    let mut a = sh("id -un; id -Gn");
    a.run_as = Some("nobody".to_owned());
    let outcome = run(&a);
    if am_root() {
        assert_eq!(outcome.status, Status::Success, "{outcome:?}");
        let groups = String::from_utf8_lossy(
            &std::process::Command::new("/usr/bin/id")
                .args(["-gn", "nobody"])
                .output()
                .expect("id runs")
                .stdout,
        )
        .trim()
        .to_owned();
        assert_eq!(outcome.output, format!("nobody\n{groups}\n"));
    } else {
        assert_eq!(outcome.status, Status::Failure);
        assert_eq!(
            outcome.output,
            "cannot run as nobody: the collector is not root"
        );
    }
}

#[test]
fn by_default_root_runs_commands_as_nobody() {
    let outcome = run(&sh("id -un"));
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    let expected = if am_root() {
        "nobody".to_owned()
    } else {
        my_user_name()
    };
    assert_eq!(outcome.output, format!("{expected}\n"));
}

#[test]
fn running_as_ourselves_needs_no_root() {
    let mut a = sh("id -un");
    a.run_as = Some(my_user_name());
    let outcome = run(&a);
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    assert_eq!(outcome.output, format!("{}\n", my_user_name()));
}

#[test]
fn an_unknown_user_is_a_failure() {
    let mut a = sh("true");
    a.run_as = Some("rill-no-such-user".to_owned());
    let outcome = run(&a);
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.output, "no user rill-no-such-user");
}

// ---------------------------------------------------------------- webhooks

/// One request as the server saw it.
#[derive(Debug)]
struct Request {
    head: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Request {
    let mut reader = io::BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).expect("request line");
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("request body");
    Request {
        head,
        headers,
        body,
    }
}

fn respond(mut stream: &TcpStream, status: &str, extra: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes()).expect("answer");
}

/// A server answering one request per entry of `answers`, in order; sends
/// back each request it saw.
fn serve(answers: Vec<(&'static str, &'static str, String)>) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (status, extra, body) in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let request = read_request(&stream);
            respond(&stream, status, extra, &body);
            let _ = tx.send(request);
        }
    });
    (url, rx)
}

fn webhook(url: &str) -> WebhookAction {
    WebhookAction {
        url: url.to_owned(),
        secret_env: None,
        timeout: Duration::from_secs(5),
        retries: 0,
    }
}

fn expected_signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn a_webhook_is_signed_and_only_2xx_is_success() {
    let long_body = (0..1000).map(|i| format!("{i:04}\n")).collect::<String>();
    let (url, requests) = serve(vec![
        ("500 Internal Server Error", "", "try later".to_owned()),
        ("200 OK", "", long_body.clone()),
    ]);
    std::env::set_var("RILL_TEST_WEBHOOK_SECRET", "s3cret-key");
    let mut a = webhook(&url);
    a.secret_env = Some("RILL_TEST_WEBHOOK_SECRET".to_owned());

    let first = post_webhook(&a, &FIRING);
    let second = post_webhook(&a, &FIRING);

    assert_eq!(first.status, Status::Failure, "{first:?}");
    assert_eq!(first.http_status, Some(500));
    assert_eq!(first.output, "try later");
    assert_eq!(second.status, Status::Success, "{second:?}");
    assert_eq!(second.http_status, Some(200));
    assert_eq!(second.output, long_body[long_body.len() - OUTPUT_BYTES..]);
    assert!(!second.output.contains("s3cret"));

    let signature = expected_signature(b"s3cret-key", FIRING.body);
    for request in [requests.recv(), requests.recv()] {
        let request = request.expect("the server saw the request");
        assert!(request.head.starts_with("POST /hook "), "{}", request.head);
        assert_eq!(request.body, FIRING.body);
        let header = |name: &str| request.headers.get(name).map(String::as_str);
        assert_eq!(header("x-rill-signature"), Some(signature.as_str()));
        assert_eq!(header("content-type"), Some("application/json"));
        assert_eq!(header("x-rill-rule"), Some("disk-full"));
        assert_eq!(header("x-rill-firing-id"), Some("f-0042"));
        let agent = concat!("rill/", env!("CARGO_PKG_VERSION"));
        assert_eq!(header("user-agent"), Some(agent));
    }
}

#[test]
fn a_webhook_with_its_secret_unset_is_not_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let mut a = webhook(&url);
    a.secret_env = Some("RILL_TEST_SECRET_THAT_IS_NEVER_SET".to_owned());

    let outcome = post_webhook(&a, &FIRING);
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.http_status, None);
    assert_eq!(
        outcome.output,
        "environment variable RILL_TEST_SECRET_THAT_IS_NEVER_SET is not set"
    );
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "nothing was sent: {accepted:?}"
    );
}

#[test]
fn a_redirect_is_a_failure_not_followed() {
    let (url, requests) = serve(vec![(
        "302 Found",
        "Location: http://127.0.0.1:9/elsewhere\r\n",
        String::new(),
    )]);
    let outcome = post_webhook(&webhook(&url), &FIRING);
    assert_eq!(outcome.status, Status::Failure, "{outcome:?}");
    assert_eq!(outcome.http_status, Some(302));
    requests.recv().expect("one request");
}

#[test]
fn a_webhook_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = read_request(&stream);
            thread::sleep(Duration::from_secs(3));
        }
    });
    let mut a = webhook(&url);
    a.timeout = Duration::from_millis(300);

    let began = Instant::now();
    let outcome = post_webhook(&a, &FIRING);
    let took = began.elapsed();
    assert_eq!(outcome.status, Status::Timeout, "{outcome:?}");
    assert_eq!(outcome.http_status, None);
    assert_eq!(outcome.output, "no answer within 300ms");
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[test]
fn a_refused_connection_is_a_failure_with_the_reason() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let outcome = post_webhook(&webhook(&format!("http://127.0.0.1:{port}/")), &FIRING);
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.http_status, None);
    assert!(
        outcome.output.to_lowercase().contains("refused"),
        "{}",
        outcome.output
    );
}

// ---------------------------------------------------------------- pure parts

#[test]
fn backoff_doubles_from_one_second_up_to_a_minute() {
    let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(0), Duration::from_secs(1));
    assert_eq!(backoff(64), MAX_BACKOFF);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[test]
fn the_tail_keeps_the_last_bytes_whatever_the_writes() {
    let mut tail = Tail::default();
    for chunk in [&[b'a'; 3000][..], &[b'b'; 3000], &[b'c'; 10]] {
        tail.push(chunk);
        assert!(tail.bytes.len() <= OUTPUT_BYTES);
    }
    let text = tail.text();
    assert_eq!(text.len(), OUTPUT_BYTES);
    assert!(text.starts_with("aaa") && text.ends_with("bbbcccccccccc"));
    tail.push(&[b'd'; 100_000]);
    assert_eq!(tail.text(), "d".repeat(OUTPUT_BYTES));
}

#[test]
fn the_tail_is_cut_on_a_character_boundary() {
    let text = "é".repeat(3000); // 6000 bytes
    let kept = tail_text(text.as_bytes());
    assert!(kept.len() <= OUTPUT_BYTES);
    assert!(kept.chars().all(|c| c == 'é'), "no replacement character");
    assert_eq!(kept.len(), OUTPUT_BYTES);

    let invalid = vec![0xFF; 5000];
    let kept = tail_text(&invalid);
    assert!(kept.len() <= OUTPUT_BYTES);
    assert!(kept.chars().all(|c| c == char::REPLACEMENT_CHARACTER));
}

#[test]
fn status_is_lowercase_in_json_and_an_outcome_round_trips() {
    let now = Utc::now();
    let outcome = Outcome {
        status: Status::Timeout,
        exit_code: None,
        signal: Some(9),
        http_status: None,
        output: "x".to_owned(),
        started_at: now,
        finished_at: now,
    };
    let json = serde_json::to_value(&outcome).expect("serializes");
    assert_eq!(json["status"], "timeout");
    assert_eq!(
        serde_json::to_value(Status::Success).expect("ok"),
        "success"
    );
    assert_eq!(
        serde_json::to_value(Status::Failure).expect("ok"),
        "failure"
    );
    let back: Outcome = serde_json::from_value(json).expect("parses");
    assert_eq!(back, outcome);
}
