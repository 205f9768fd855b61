//! A real headless browser in a test namespace: Debian's Chromium driven by
//! Playwright (tests/support/browser.py), for pages udplb serves. Every
//! command waits a bounded time; the driver (and with it Chromium) is
//! stopped by its own PID when the test is done or fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::netns::Netns;

const DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/browser.py");

pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

/// A message the page logged, or an error it raised, or a request of it
/// that failed.
#[derive(Debug, Clone)]
pub struct Console {
    pub kind: String,
    pub text: String,
}

impl Browser {
    /// Starts Chromium inside `ns`; fails the test, saying what to install,
    /// if Chromium or Playwright is missing.
    pub fn open(ns: &Netns) -> Browser {
        // `ip netns exec` execs python3: the child's PID is the driver's.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/install-deps.sh installs it)");
        let (tx, answers) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut err, keep) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut b = Browser {
            stdin: child.stdin.take(),
            child,
            answers,
            stderr,
        };
        // A minute here; an emulated kernel's VM takes longer to start a
        // browser (super::slow).
        if let Err(e) = b.answer(super::slow(Duration::from_secs(60))) {
            panic!("the browser did not start: {e}");
        }
        b
    }

    fn answer(&mut self, timeout: Duration) -> Result<Value, String> {
        let line = self.answers.recv_timeout(timeout).map_err(|_| {
            format!(
                "no answer from the browser within {timeout:?}; its stderr:\n{}",
                self.stderr.lock().unwrap()
            )
        })?;
        let a: Value =
            serde_json::from_str(&line).map_err(|e| format!("browser said {line:?}: {e}"))?;
        match a["ok"].as_bool() {
            Some(true) => Ok(a["value"].clone()),
            _ => Err(a["error"].as_str().unwrap_or(&line).to_string()),
        }
    }

    fn ask(&mut self, cmd: Value, timeout: Duration) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().expect("browser open");
        writeln!(stdin, "{cmd}").map_err(|e| format!("browser gone: {e}"))?;
        self.answer(timeout)
    }

    /// Loads `url`; its HTTP status.
    pub fn goto(&mut self, url: &str) -> u64 {
        let v = self.ask(json!({"cmd": "goto", "url": url}), Duration::from_secs(30));
        v.unwrap_or_else(|e| panic!("loading {url}: {e}"))
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits up to `timeout` until the expression `js` is truthy in the
    /// page: how long that took, or the browser's error.
    pub fn wait(&mut self, js: &str, timeout: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        let ms = timeout.as_millis() as u64;
        let cmd = json!({"cmd": "wait", "js": js, "timeout_ms": ms});
        self.ask(cmd, timeout + Duration::from_secs(10))
            .map(|_| t.elapsed())
    }

    /// The value of the expression `js` in the page.
    pub fn eval(&mut self, js: &str) -> Value {
        let v = self.ask(json!({"cmd": "eval", "js": js}), Duration::from_secs(30));
        v.unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
    }

    /// A PNG of the whole page at `path`.
    pub fn screenshot(&mut self, path: &str) {
        let cmd = json!({"cmd": "screenshot", "path": path});
        if let Err(e) = self.ask(cmd, Duration::from_secs(30)) {
            panic!("screenshot to {path}: {e}");
        }
    }

    /// Everything the page logged so far, with its errors and failed
    /// requests.
    pub fn console(&mut self) -> Vec<Console> {
        let v = self.ask(json!({"cmd": "console"}), Duration::from_secs(30));
        let v = v.unwrap_or_else(|e| panic!("reading the console: {e}"));
        (v.as_array().unwrap().iter())
            .map(|m| Console {
                kind: m["type"].as_str().unwrap_or("").into(),
                text: m["text"].as_str().unwrap_or("").into(),
            })
            .collect()
    }
}

impl Drop for Browser {
    /// Asks the driver to quit, then closes its stdin (it ends, and
    /// Chromium with it); killed by PID if it has not within 10 s.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.ask(json!({"cmd": "quit"}), Duration::from_secs(10));
        }
        drop(self.stdin.take());
        let deadline = Instant::now() + super::slow(Duration::from_secs(10));
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
