//! A real Prometheus server (Debian's `prometheus`, installed by
//! scripts/install-deps.sh) scraping udplb's /metrics inside a test
//! namespace, its answers to PromQL through the HTTP API, and
//! `promtool check metrics`. The server lives in the namespace (listening on
//! 127.0.0.1 there), its configuration and storage in a temporary
//! directory, and it is stopped by its own PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::netns::Netns;

/// Where the server listens, in its namespace.
pub const LISTEN: &str = "127.0.0.1:9090";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    ns: String,
}

impl Prometheus {
    /// Starts a server in `ns` that scrapes `target` (host:port, udplb's
    /// --metrics listener) every second, and waits until it is ready.
    pub fn start(ns: &Netns, target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "udplb-prometheus-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir for Prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: udplb\n    static_configs:\n\
                 \x20     - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        // `ip netns exec` execs the server: the child's PID is its own.
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/install-deps.sh installs Debian's `prometheus`)");
        let p = Prometheus {
            child,
            dir,
            ns: ns.name.clone(),
        };
        let deadline = Instant::now() + super::slow(Duration::from_secs(60));
        while p.get("/-/ready").map(|(code, _)| code) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready after 60 s:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET `path` from the server: (status code, body); None if it does
    /// not answer (yet). HTTP/1.0: the server closes after the body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let netns = format!("/run/netns/{}", self.ns);
        let text = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    super::netns::join_path(&netns).expect("join the test namespace");
                    let mut s = TcpStream::connect(LISTEN).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
                    let mut t = String::new();
                    s.read_to_string(&mut t).ok()?;
                    Some(t)
                })
                .join()
                .expect("HTTP client thread")
        });
        let text = text?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    }

    /// The instant vector `promql` evaluates to at Unix time `at` (now if
    /// None): (labels as `k=v,...` sorted, value) per series.
    pub fn query(&self, promql: &str, at: Option<f64>) -> Vec<(String, f64)> {
        let mut path = format!("/api/v1/query?query={}", url_encode(promql));
        if let Some(t) = at {
            path += &format!("&time={t:.3}");
        }
        let (code, body) = self
            .get(&path)
            .unwrap_or_else(|| panic!("no answer from Prometheus to {promql}"));
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{promql}: {e}: {body}"));
        assert!(code == 200 && v["status"] == "success", "{promql}: {body}");
        (v["data"]["result"].as_array().unwrap().iter())
            .map(|r| {
                let mut labels: Vec<String> = (r["metric"].as_object().unwrap().iter())
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                labels.sort();
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels.join(","), value)
            })
            .collect()
    }

    /// The value of `promql`, which must be one series (a `sum(...)`, say).
    pub fn scalar(&self, promql: &str, at: Option<f64>) -> f64 {
        match self.query(promql, at).as_slice() {
            [(_, v)] => *v,
            other => panic!("{promql}: expected one series, got {other:?}"),
        }
    }

    /// Waits (up to `wait`) until `promql` evaluates to `want` now.
    pub fn wait_for(&self, promql: &str, want: f64, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let got = self.query(promql, None);
            if got.len() == 1 && got[0].1 == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: {got:?} after {wait:?}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + super::slow(Duration::from_secs(10));
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encoding of a query string value (RFC 3986 unreserved kept).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on an exposition: (exit code, what it printed).
pub fn promtool_check(exposition: &str) -> (i32, String) {
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "metrics"]);
    let out = super::process::output_with_stdin(
        cmd,
        exposition,
        "promtool (Debian's `prometheus`, scripts/install-deps.sh)",
    );
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
