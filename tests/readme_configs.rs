//! README's configuration files are true (issue 24, item 3): every complete
//! file in a ```toml block of README.md (one that sets `interface`) parses,
//! and each health check kind's example runs as written against real
//! servers on the backend hosts of the triangle topology (dnsmasq, a UDP
//! responder, TCP listeners, python3's http.server): every backend comes
//! up, and a backend whose server stops goes down. Only the interface line
//! changes, to the test balancer's devices.

use udplb_testkit as support;

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::netns::Netns;
use support::operate::status;
use support::process::{TempFile, Udplb};
use support::servers::{dnsmasq, http_server};
use support::topology::triangle;

/// The ```toml blocks of README.md, in order.
fn toml_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The complete files: blocks that set the interface.
fn files() -> Vec<String> {
    toml_blocks()
        .into_iter()
        .filter(|b| b.lines().any(|l| l.starts_with("interface =")))
        .collect()
}

#[test]
fn every_complete_file_in_the_readme_parses() {
    let files = files();
    assert!(
        files.len() >= 6,
        "README has {} complete files",
        files.len()
    );
    for (i, f) in files.iter().enumerate() {
        udplb::config::file::parse(f, &format!("README.md file {i}"))
            .unwrap_or_else(|e| panic!("{}\n{f}", e.0));
    }
}

/// README's file for `check = "<kind>"`, its interface the triangle's.
fn example(kind: &str) -> TempFile {
    let needle = format!("check = \"{kind}\"");
    let f = files()
        .into_iter()
        .find(|f| f.lines().any(|l| l.starts_with(&needle)))
        .unwrap_or_else(|| panic!("no README file with {needle}"));
    let f = f.replace("interface = \"eth0,eth1\"", "interface = \"l0,l1,l2\"");
    assert!(
        f.contains("\"l0,l1,l2\""),
        "the {kind} example's interface line"
    );
    TempFile::new("readme.toml", &f)
}

/// Answers "pong" to every datagram on `addr` in `ns` until stopped.
struct Pong(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Pong {
    fn start(ns: &Netns, addr: &str) -> Pong {
        let s: UdpSocket = ns.udp_bind(addr);
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(b"pong", from);
                }
            }
        });
        Pong(stop, Some(t))
    }
}

impl Drop for Pong {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            t.join().unwrap();
        }
    }
}

/// What keeps a backend host's check answering (a server process, a
/// responder, a listener); dropped, it stops.
type Up = Box<dyn std::any::Any>;

/// Runs README's `kind` example with `servers` for backend 0 and 1, then
/// stops backend 0's and waits for it to go down.
fn runs_as_written(kind: &str, servers: impl Fn(&[Netns; 2]) -> Vec<Vec<Up>>, port: u16) {
    let t = triangle();
    let mut up = servers(&t.srv);
    let file = example(kind);
    let mut lb = Udplb::start(&t.lb, &["--config", file.path()]);
    lb.wait_for("attached to l2", Duration::from_secs(10));
    // rise probes of every backend answered: both up, and they stay so.
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&t.lb);
    for b in s["frontends"][0]["backends"].as_array().unwrap() {
        assert_eq!(b["health"]["state"], "up", "{kind}: {b}");
        assert_eq!(b["health"]["transitions"], 0, "{kind}: {b}");
    }
    up[0].clear();
    let down = format!("198.18.1.2:{port} down");
    let line = lb.wait_for(&down, Duration::from_secs(15));
    assert!(line.contains(&format!("{kind} probe")), "{line}");
    let (st, out) = lb.stop(Signal::SIGTERM);
    assert!(st.success(), "{out}");
}

#[test]
fn the_dns_example_runs() {
    runs_as_written(
        "dns",
        |srv| {
            srv.iter()
                .map(|ns| vec![Box::new(dnsmasq(ns, 53, "example.org", "198.18.9.1")) as Up])
                .collect()
        },
        53,
    );
}

#[test]
fn the_udp_example_runs() {
    runs_as_written(
        "udp",
        |srv| {
            (srv.iter().enumerate())
                .map(|(i, ns)| {
                    vec![Box::new(Pong::start(ns, &format!("198.18.{}.2:514", i + 1))) as Up]
                })
                .collect()
        },
        514,
    );
}

#[test]
fn the_tcp_example_runs() {
    runs_as_written(
        "tcp",
        |srv| {
            (srv.iter().enumerate())
                .map(|(i, ns)| {
                    let a = format!("198.18.{}.2:7000", i + 1);
                    vec![Box::new(ns.enter(|| TcpListener::bind(&a).unwrap())) as Up]
                })
                .collect()
        },
        53,
    );
}

#[test]
fn the_http_example_runs() {
    let dir = std::env::temp_dir().join(format!("udplb-readme-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("health"), "ok\n").unwrap();
    let d = dir.to_str().unwrap().to_string();
    runs_as_written(
        "http",
        |srv| {
            vec![
                vec![Box::new(http_server(&srv[0], "198.18.1.2", 8080, &d)) as Up],
                // The example overrides this backend's check: tcp to 7000.
                vec![
                    Box::new(srv[1].enter(|| TcpListener::bind("198.18.2.2:7000").unwrap())) as Up,
                ],
            ]
        },
        53,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
