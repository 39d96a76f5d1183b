//! A headless Chromium driven through Debian's `chromedriver` over the W3C
//! WebDriver protocol (plain JSON over HTTP): what the page's tests need
//! and no more. A failing test saves a screenshot: a failed check
//! ([`Browser::wait`], [`Browser::fail`]) and any other panic while the
//! browser is open (an `assert!` of the test's own), when it is dropped.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The key W3C WebDriver names elements by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    /// Where screenshots of failed checks go.
    pub shots: PathBuf,
    /// A screenshot of the failure is saved already.
    shot: Cell<bool>,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session.
    pub fn start(name: &str) -> Browser {
        let port = crate::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (tests/install-deps.sh installs chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        assert!(
            crate::wait_until(Duration::from_secs(20), || agent
                .get(format!("{base}/status"))
                .call()
                .is_ok()),
            "chromedriver did not answer"
        );
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            agent,
            shots: std::env::temp_dir().join(format!("rill-browser-{name}")),
            shot: Cell::new(false),
        };
        let v = b.post(
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,900"]
                }
            }}}),
        );
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// A WebDriver command; its answer's `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    /// [`Browser::call`], an error instead of a panic.
    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ureq::Error> {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let v: Value = resp?.body_mut().read_json().unwrap_or(Value::Null);
        Ok(v["value"].clone())
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call("POST", path, Some(body))
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub fn open(&self, url: &str) {
        self.post(&self.at("/url"), json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns what it returns.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.post(
            &self.at("/execute/sync"),
            json!({ "script": script, "args": args }),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.post(
            &self.at("/element"),
            json!({ "using": "css selector", "value": css }),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| {
                self.fail(&format!("no element {css}: {v}"));
            })
            .to_owned()
    }

    /// Types `text` into the element `css` (after clearing it).
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.post(&self.at(&format!("/element/{e}/clear")), json!({}));
        self.post(
            &self.at(&format!("/element/{e}/value")),
            json!({ "text": text }),
        );
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.post(&self.at(&format!("/element/{e}/click")), json!({}));
    }

    /// Polls `script` until it returns true (20 s); else fails with `what`.
    pub fn wait(&self, what: &str, script: &str, args: Value) {
        if !crate::wait_until(Duration::from_secs(20), || {
            self.eval(script, args.clone()) == Value::Bool(true)
        }) {
            self.fail(what);
        }
    }

    /// Saves a screenshot next to the test's name and panics with `what`.
    pub fn fail(&self, what: &str) -> ! {
        match self.save_screenshot() {
            Some(path) => panic!("{what} (screenshot: {})", path.display()),
            None => panic!("{what} (no screenshot: the browser did not take one)"),
        }
    }

    /// Writes a screenshot to `shots`.png; its path, if the browser took
    /// one and it was written.
    fn save_screenshot(&self) -> Option<PathBuf> {
        self.shot.set(true);
        let path = self.shots.with_extension("png");
        std::fs::write(&path, self.screenshot()?).ok()?;
        Some(path)
    }

    /// A PNG of the page as it is, if the browser answers.
    pub fn screenshot(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let shot = self.try_call("GET", &self.at("/screenshot"), None).ok()?;
        base64::engine::general_purpose::STANDARD
            .decode(shot.as_str()?)
            .ok()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A panic of the test's own (not a failed check, which saved one):
        // the page as the test left it. Nothing here may panic again.
        if std::thread::panicking() && !self.shot.get() && !self.session.is_empty() {
            if let Some(path) = self.save_screenshot() {
                eprintln!("the page when the test failed: {}", path.display());
            }
        }
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
