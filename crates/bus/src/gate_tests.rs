//! The gate and client logins against real libzmq sockets on 127.0.0.1
//! (ports chosen by the kernel): a REQ client asks, a guarded REP answers.
//! A refused client hears nothing, and the gate counts the refusal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client_auth::{ClientAuth, CurveClient};
use crate::gate::{CurveServer, Gate, Policy};
use crate::keys::{self, KeyPair};

/// How long an admitted exchange may take; a refused one is given
/// [`REFUSED_WITHIN`] to (wrongly) arrive.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
const REFUSED_WITHIN: Duration = Duration::from_millis(1_500);

/// A REP bound on 127.0.0.1 under a gate (if any), answering `pong: ` and
/// the request on a thread until dropped.
struct Server {
    endpoint: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Stopped after the thread has closed its socket.
    gate: Option<Gate>,
}

impl Server {
    fn start(policy: Option<Policy>, curve_without_gate: Option<&KeyPair>) -> Server {
        let ctx = zmq::Context::new();
        let gate = policy.map(|p| Gate::install(&ctx, p).unwrap());
        let rep = ctx.socket(zmq::REP).unwrap();
        rep.set_linger(0).unwrap();
        if let Some(g) = &gate {
            g.guard(&rep).unwrap();
        }
        if let Some(pair) = curve_without_gate {
            rep.set_curve_server(true).unwrap();
            rep.set_curve_secretkey(&pair.secret).unwrap();
        }
        rep.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = rep.get_last_endpoint().unwrap().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if rep.poll(zmq::POLLIN, 50).unwrap() == 0 {
                    continue;
                }
                let m = rep.recv_bytes(0).unwrap();
                rep.send([b"pong: ".as_slice(), &m].concat(), 0).unwrap();
            }
        });
        Server {
            endpoint,
            stop,
            thread: Some(thread),
            gate,
        }
    }

    fn gate(&self) -> &Gate {
        self.gate.as_ref().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `ping` with `auth` and returns the answer heard within `within`.
fn ask(endpoint: &str, auth: &ClientAuth, within: Duration) -> Option<Vec<u8>> {
    let ctx = zmq::Context::new();
    let req = ctx.socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    auth.apply(&req).unwrap();
    req.connect(endpoint).unwrap();
    req.send("ping", 0).unwrap();
    if req.poll(zmq::POLLIN, within.as_millis() as i64).unwrap() == 0 {
        return None;
    }
    Some(req.recv_bytes(0).unwrap())
}

fn refusals_reach(gate: &Gate, n: u64) -> (u64, Option<String>) {
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        let r = gate.refusals();
        if r.0 >= n || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn curve_client(server: &KeyPair, client: &KeyPair) -> ClientAuth {
    ClientAuth {
        plain: None,
        curve: Some(CurveClient {
            server_public: server.public,
            public: client.public,
            secret: client.secret,
        }),
    }
}

#[test]
fn curve_is_built_in_and_carries_a_message() {
    assert_eq!(
        zmq::has("curve"),
        Some(true),
        "libzmq was built without CURVE"
    );
    let (server_keys, client_keys) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    assert_ne!(server_keys, client_keys);
    // No ZAP handler: CURVE encrypts and checks the server's key only.
    let server = Server::start(None, Some(&server_keys));
    let auth = curve_client(&server_keys, &client_keys);
    assert_eq!(
        ask(&server.endpoint, &auth, ANSWER_WITHIN).as_deref(),
        Some(b"pong: ping".as_slice())
    );
    // A client expecting another server key hears nothing.
    let other = KeyPair::generate().unwrap();
    let wrong_server = curve_client(&other, &client_keys);
    assert_eq!(ask(&server.endpoint, &wrong_server, REFUSED_WITHIN), None);
}

#[test]
fn an_address_outside_the_allowlist_is_refused_and_counted() {
    let allow = vec!["10.0.0.0/8".parse().unwrap()];
    let policy = Policy::new("streams", allow, None, None, true).unwrap();
    let server = Server::start(Some(policy), None);
    assert_eq!(
        ask(&server.endpoint, &ClientAuth::default(), REFUSED_WITHIN),
        None
    );
    let (count, last) = refusals_reach(server.gate(), 1);
    assert!(count >= 1);
    assert_eq!(
        last.as_deref(),
        Some("address 127.0.0.1 is not in streams.allow")
    );
}

#[test]
fn plain_admits_the_right_password_and_refuses_a_wrong_one() {
    let users = rill_config::Credentials::parse("ops:s3cret\n").unwrap();
    let allow = vec!["127.0.0.0/8".parse().unwrap()];
    let policy = Policy::new("sessions", allow, Some(users), None, true).unwrap();
    let server = Server::start(Some(policy), None);
    let login = |password: &str| ClientAuth {
        plain: Some(("ops".into(), password.into())),
        curve: None,
    };
    assert_eq!(ask(&server.endpoint, &login("guess"), REFUSED_WITHIN), None);
    let (count, last) = refusals_reach(server.gate(), 1);
    assert!(count >= 1);
    let last = last.unwrap();
    assert!(
        last.starts_with("wrong user or password (user \"ops\")"),
        "{last}"
    );
    assert!(!last.contains("guess"), "{last}");
    assert_eq!(
        ask(&server.endpoint, &login("s3cret"), ANSWER_WITHIN).as_deref(),
        Some(b"pong: ping".as_slice())
    );
    // Without a login at all (NULL against a PLAIN server): nothing.
    assert_eq!(
        ask(&server.endpoint, &ClientAuth::default(), REFUSED_WITHIN),
        None
    );
}

#[test]
fn curve_admits_an_authorized_key_and_refuses_an_unknown_one() {
    let server_keys = KeyPair::generate().unwrap();
    let (known, unknown) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let curve = CurveServer {
        secret_key: server_keys.secret,
        public_key: server_keys.public,
        authorized: vec![known.public],
    };
    let policy = Policy::new("streams", vec![], None, Some(curve), true).unwrap();
    let server = Server::start(Some(policy), None);

    assert_eq!(
        ask(
            &server.endpoint,
            &curve_client(&server_keys, &known),
            ANSWER_WITHIN
        )
        .as_deref(),
        Some(b"pong: ping".as_slice())
    );
    assert_eq!(server.gate().refusals(), (0, None));

    let refused = ask(
        &server.endpoint,
        &curve_client(&server_keys, &unknown),
        REFUSED_WITHIN,
    );
    assert_eq!(refused, None, "an unknown key must hear nothing");
    let (count, last) = refusals_reach(server.gate(), 1);
    assert!(count >= 1);
    assert_eq!(
        last,
        Some(format!(
            "client key {} from 127.0.0.1 is not in streams.curve.authorized_keys_dir",
            keys::z85(&unknown.public)
        ))
    );
    // The handle a status thread keeps sees the same.
    assert_eq!(server.gate().refusal_log().get().1, last);
}

#[test]
fn keys_written_to_files_are_what_the_gate_and_clients_load() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (server_file, client_file) = (dir.path().join("server"), dir.path().join("client"));
    let authorized = dir.path().join("authorized");
    std::fs::create_dir(&authorized).unwrap();
    let server_keys = KeyPair::generate().unwrap();
    let client_keys = KeyPair::generate().unwrap();
    server_keys.write(&server_file).unwrap();
    let client_pub = client_keys.write(&client_file).unwrap();
    std::fs::copy(&client_pub, authorized.join("client.pub")).unwrap();

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server_file), 0o600);
    assert_eq!(mode(&keys::public_key_path(&server_file)), 0o644);

    let curve = CurveServer::load(&server_file, &authorized).unwrap();
    assert_eq!(curve.secret_key, server_keys.secret);
    // The server's own key: what local tools connect with.
    assert_eq!(
        curve.authorized,
        vec![client_keys.public, server_keys.public]
    );
    let client = CurveClient::load(&client_file, &keys::public_key_path(&server_file)).unwrap();
    assert_eq!(client.server_public, server_keys.public);
    assert_eq!(
        (client.public, client.secret),
        (client_keys.public, client_keys.secret)
    );

    // Refusing to overwrite either file of a pair.
    let e = KeyPair::generate()
        .unwrap()
        .write(&server_file)
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    std::fs::remove_file(&server_file).unwrap();
    let e = KeyPair::generate()
        .unwrap()
        .write(&server_file)
        .unwrap_err();
    assert!(e.to_string().contains("server.pub already exists"), "{e}");
    assert!(!server_file.exists(), "no half pair left behind");
}

#[test]
fn bad_key_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pair = KeyPair::generate().unwrap();
    let secret = dir.path().join("server");
    pair.write(&secret).unwrap();

    // A public key where the secret one is expected, and the reverse.
    let e = KeyPair::load(&keys::public_key_path(&secret))
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.pub: expected a secret key file"), "{e}");
    let e = keys::load_public_key(&secret).unwrap_err().to_string();
    assert!(e.contains("server: this is a secret key file"), "{e}");
    let e = KeyPair::load(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("could not read") && e.contains("missing"),
        "{e}"
    );

    // An authorized keys folder: comments and blank lines are fine, dot
    // files and folders skipped; a bad file is named, and so is a secret
    // key file.
    let authorized = dir.path().join("authorized");
    std::fs::create_dir(&authorized).unwrap();
    assert!(keys::load_authorized_keys(&authorized).unwrap().is_empty());
    std::fs::create_dir(authorized.join("old")).unwrap();
    let key = keys::z85(&pair.public);
    std::fs::write(
        authorized.join("alice"),
        format!("# alice's laptop\n\n{key}\n"),
    )
    .unwrap();
    std::fs::write(authorized.join(".alice.swp"), "junk").unwrap();
    assert_eq!(
        keys::load_authorized_keys(&authorized).unwrap(),
        vec![pair.public]
    );
    std::fs::write(authorized.join("bob"), "not a key\n").unwrap();
    let e = keys::load_authorized_keys(&authorized)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("authorized/bob: expected a key of 40 characters"),
        "{e}"
    );
    std::fs::remove_file(authorized.join("bob")).unwrap();
    std::fs::copy(&secret, authorized.join("carol")).unwrap();
    let e = keys::load_authorized_keys(&authorized)
        .unwrap_err()
        .to_string();
    assert!(e.contains("carol: this is a secret key file"), "{e}");
}
