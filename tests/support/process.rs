//! The udplb process wrapper: a udplb the test starts inside a namespace,
//! watches through its output and stops by its own PID; and the files
//! (config files) a test writes for it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static TEMP_SEQ: AtomicU32 = AtomicU32::new(0);

/// A running udplb, started inside a namespace and stopped by its own PID.
pub struct Udplb {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    pub output: Vec<String>,
}

/// The udplb binary of this build (`target/release/udplb` under `cargo test
/// --release`), worked out by the kit's build.rs: cargo sets
/// `CARGO_BIN_EXE_udplb` for udplb's own tests only, not for the kit.
pub const BIN: &str = env!("UDPLB_TESTKIT_BIN");

/// A file for the test to write (a config file), removed on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "udplbt-{}-{}-{name}",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, text).expect("write temp file");
        TempFile(path)
    }

    pub fn write(&self, text: &str) {
        // Write then rename, so udplb never reads half a file.
        let tmp = self.0.with_extension("new");
        std::fs::write(&tmp, text).expect("write temp file");
        std::fs::rename(&tmp, &self.0).expect("rename temp file");
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory for the test (an install root), removed with its contents
/// on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "udplbt-{}-{}-{name}",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Udplb {
    /// Starts `udplb <args>` in `ns` and waits until it says it is attached.
    pub fn start(ns: &super::netns::Netns, args: &[&str]) -> Udplb {
        Udplb::start_with_env(ns, args, &[])
    }

    /// As [`start`](Self::start), with extra environment variables.
    pub fn start_with_env(ns: &super::netns::Netns, args: &[&str], env: &[(&str, &str)]) -> Udplb {
        Udplb::start_under(ns, &[], args, env)
    }

    /// As [`start_with_env`](Self::start_with_env), run by `wrapper` (a
    /// command that ends by running udplb, e.g. setpriv: one that execs
    /// keeps the child's PID udplb's).
    pub fn start_under(
        ns: &super::netns::Netns,
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Udplb {
        // nsenter execs the program, so the child's PID is udplb's; unlike
        // `ip netns exec` it keeps the mount namespace, so /sys/fs/bpf (for
        // --pin) is the host's BPF filesystem.
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args(wrapper)
            .arg(BIN)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn udplb");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        // Only the readers send: once udplb exits and they end, the wait
        // below ends at once (a refusal fails the test with its message,
        // not after the whole timeout).
        drop(tx);
        let mut u = Udplb {
            child: Some(child),
            lines: rx,
            output: Vec::new(),
        };
        // Started: attached to every interface, which the frontend lines
        // ("  9875 -> 9876, 9877 (rr)") follow. Not the first "attached
        // to": on a slow machine the rest can take seconds more.
        let started = |out: &[String]| {
            out.iter().any(|l| l.contains("attached to"))
                && out
                    .iter()
                    .any(|l| l.starts_with("  ") && l.contains(" -> "))
        };
        let deadline = Instant::now() + super::slow(Duration::from_secs(20));
        while !started(&u.output) {
            let left = deadline.saturating_duration_since(Instant::now());
            match u.lines.recv_timeout(left) {
                Ok(l) => u.output.push(l),
                Err(_) => {
                    let status = u.child.as_mut().unwrap().try_wait().ok().flatten();
                    panic!(
                        "udplb did not attach (exit {status:?}); output:\n{}",
                        u.output.join("\n")
                    );
                }
            }
        }
        u
    }

    /// Sends `sig` (e.g. SIGHUP) without waiting for anything.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal udplb");
    }

    /// Waits up to `timeout` for a line containing `needle`, keeping what
    /// was printed meanwhile in `output`; returns that line.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + super::slow(timeout);
        let seen = self.output.len();
        if let Some(l) = self.output[..seen].iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.output.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "udplb did not print `{needle}`; output:\n{}",
                    self.output.join("\n")
                ),
            }
        }
    }

    /// Keeps what udplb prints for `d` in `output` (to check afterwards that
    /// something was *not* said).
    pub fn watch(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Some(l) = self.next_line(left) {
                self.output.push(l);
            }
        }
    }

    /// The next line udplb prints, waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The first line printed so far that contains `needle`.
    pub fn line_with(&self, needle: &str) -> &str {
        self.output
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{}", self.output.join("\n")))
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Sends `sig` to udplb (by PID), waits for it to exit, and returns its
    /// exit status and everything it printed.
    pub fn stop(mut self, sig: nix::sys::signal::Signal) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig)
            .expect("signal udplb");
        let deadline = Instant::now() + super::slow(Duration::from_secs(10));
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("udplb did not exit within 10 s of {sig:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader threads end when the pipes close.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.output.push(l);
        }
        (status, self.output.join("\n"))
    }
}

impl Udplb {
    /// Waits up to `timeout` for udplb to exit by itself (no signal), and
    /// returns its exit status and everything it printed.
    pub fn exited(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.output.push(l);
                }
                panic!(
                    "udplb did not exit within {timeout:?}; output:\n{}",
                    self.output.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.output.push(l);
        }
        (status, self.output.join("\n"))
    }
}

impl Drop for Udplb {
    fn drop(&mut self) {
        // A test that panicked still must not leave its udplb running.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `udplb --unpin IFACE` when dropped: what a `--pin` test leaves
/// under /sys/fs/bpf/udplb (host-wide) goes, also when it fails.
pub struct Unpin(pub String);

impl Drop for Unpin {
    fn drop(&mut self) {
        let _ = std::process::Command::new(BIN)
            .args(["--unpin", &self.0])
            .output();
    }
}

/// Runs `cmd` with `input` on its stdin and waits for it: its output.
/// `what` names the program for the message if it cannot start.
pub fn output_with_stdin(
    mut cmd: std::process::Command,
    input: &str,
    what: &str,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
