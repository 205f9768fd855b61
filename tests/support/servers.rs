//! Servers for the tests: real ones, each a process started in a namespace
//! (`ip netns exec` execs it, so its PID is the server's) and stopped by
//! that PID: dnsmasq, python3's http.server; and [`Echo`], the one UDP
//! echo backend, a thread of the test.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::netns::Netns;

pub struct Server(Child);

impl Server {
    pub fn start(ns: &Netns, args: &[&str]) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        Server(child)
    }

    pub fn kill(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// dnsmasq on `port` (every address of `ns`), answering `name` A with
/// `answer`.
pub fn dnsmasq(ns: &Netns, port: u16, name: &str, answer: &str) -> Server {
    let address = format!("--address=/{name}/{answer}");
    let port = format!("--port={port}");
    Server::start(
        ns,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            &address,
            &port,
        ],
    )
}

/// `dig svc.test A` from `ns` to `server` (an address, port 53) from
/// source port `sport` of the client's address (198.18.0.1 or 2001:2::1),
/// three tries `secs` apart: the answer (its last line: dig prints a try
/// that timed out on stdout too) and all it said. dig drops answers from
/// any other address than the one it asked.
pub fn dig_svc(ns: &Netns, server: &str, sport: u16, secs: u32) -> (String, String) {
    let local = if server.contains(':') {
        "2001:2::1"
    } else {
        "198.18.0.1"
    };
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "dig", "+short", "+tries=3"])
        .arg(format!("+time={secs}"))
        .args([&format!("@{server}"), "-b", &format!("{local}#{sport}")])
        .args(["svc.test", "A"])
        .output()
        .expect("dig (apt-get install bind9-dnsutils)");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let answer = said.lines().last().unwrap_or("").to_string();
    (answer, said + &String::from_utf8_lossy(&out.stderr))
}

/// python3's http.server on `addr`:`port` in `ns`, serving `dir`; returns
/// once it listens (bounded wait).
pub fn http_server(ns: &Netns, addr: &str, port: u16, dir: &str) -> Server {
    let p = port.to_string();
    let s = Server::start(
        ns,
        &[
            "python3",
            "-m",
            "http.server",
            &p,
            "--bind",
            addr,
            "--directory",
            dir,
        ],
    );
    let deadline = Instant::now() + super::slow(Duration::from_secs(10));
    while !ns.exec(&["ss", "-Htln"]).contains(&format!(":{port} ")) {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// Waits (bounded) until `ns` has a UDP socket on `port`.
pub fn wait_bound(ns: &Netns, port: u16) {
    let deadline = Instant::now() + super::slow(Duration::from_secs(5));
    let needle = format!(":{port} ");
    while !ns.exec(&["ss", "-Hulnp"]).contains(&needle) {
        assert!(Instant::now() < deadline, "nothing bound to port {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What an [`Echo`] answers each datagram with.
#[derive(Clone)]
pub enum Reply {
    /// The datagram itself.
    Payload,
    /// `<name> <datagram>`: the reply names the backend that answered.
    Tagged(String),
    /// The server's own port, 2 bytes big-endian: names the backend too,
    /// in a reply of fixed size.
    Port,
}

/// How an [`Echo`] is to run; [`EchoSetup::start`] starts it.
pub struct EchoSetup {
    reply: Reply,
    cpu: Option<usize>,
    tcp: bool,
    record: bool,
}

impl EchoSetup {
    /// Answers from a thread pinned to `cpu` (None: anywhere), e.g. so that
    /// replies meet requests in per-CPU state from another CPU.
    pub fn on_cpu(mut self, cpu: Option<usize>) -> Self {
        self.cpu = cpu;
        self
    }

    /// Also listens on TCP on the same address, for tcp health checks
    /// (it accepts nothing: the kernel completes the handshake).
    pub fn with_tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// Keeps every datagram heard, with its source, for
    /// [`Echo::take_heard`].
    pub fn recording(mut self) -> Self {
        self.record = true;
        self
    }

    /// The echo on `addr` in `ns`, answering until dropped (or, at the
    /// latest, [`ECHO_LIFETIME`] after it started).
    pub fn start(&self, ns: &Netns, addr: &str) -> Echo {
        let sock = ns.udp_bind(addr);
        super::sockets::big_rcvbuf(&sock);
        // Short, so that a stop is seen soon.
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let local: SocketAddr = addr.parse().unwrap();
        let tcp = (self.tcp).then(|| ns.enter(|| TcpListener::bind(local).expect("bind tcp")));
        let state = Arc::new(EchoState::default());
        state.answering.store(true, Ordering::SeqCst);
        let (shared, reply, cpu, record) =
            (state.clone(), self.reply.clone(), self.cpu, self.record);
        let port = sock.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            if let Some(c) = cpu {
                // Best effort: a machine with fewer CPUs still runs the test.
                let _ = super::cpu::pin_to_cpu(c);
            }
            let deadline = Instant::now() + super::slow(ECHO_LIFETIME);
            let mut buf = vec![0u8; 65536];
            while !shared.stop.load(Ordering::SeqCst) {
                if Instant::now() > deadline {
                    eprintln!("echo on {local}: stopped after {ECHO_LIFETIME:?}, its bound");
                    return;
                }
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                // Counted before the answer: whoever has the answer finds
                // the datagram counted.
                if record {
                    shared.log.lock().unwrap().push((buf[..n].to_vec(), from));
                }
                shared.heard.fetch_add(1, Ordering::SeqCst);
                if !shared.answering.load(Ordering::SeqCst) {
                    continue;
                }
                let answer = match &reply {
                    Reply::Payload => buf[..n].to_vec(),
                    Reply::Tagged(name) => [format!("{name} ").as_bytes(), &buf[..n]].concat(),
                    Reply::Port => port.to_be_bytes().to_vec(),
                };
                // A source with no route back (a spoofed one) fails here.
                let _ = sock.send_to(&answer, from);
            }
        });
        Echo {
            state,
            thread: Some(thread),
            tcp,
        }
    }

    /// One echo on each of `ports` of `ip` in `ns`.
    pub fn start_ports(&self, ns: &Netns, ip: &str, ports: &[u16]) -> Vec<Echo> {
        (ports.iter())
            .map(|p| self.start(ns, &format!("{ip}:{p}")))
            .collect()
    }
}

/// How long an echo answers at most: its loop is bounded even if a test
/// leaks it; far longer than any test that uses one.
pub const ECHO_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Default)]
struct EchoState {
    stop: AtomicBool,
    answering: AtomicBool,
    heard: AtomicUsize,
    log: Mutex<Vec<(Vec<u8>, SocketAddr)>>,
}

/// A UDP echo backend: a thread that answers every datagram on its socket
/// as its [`Reply`] says, until dropped.
pub struct Echo {
    state: Arc<EchoState>,
    thread: Option<JoinHandle<()>>,
    /// The TCP listener of [`EchoSetup::with_tcp`]; set it to None to fail
    /// tcp health checks while UDP still answers.
    pub tcp: Option<TcpListener>,
}

impl Echo {
    /// An echo answering with `reply`, to set up further and start.
    pub fn setup(reply: Reply) -> EchoSetup {
        EchoSetup {
            reply,
            cpu: None,
            tcp: false,
            record: false,
        }
    }

    /// A backend that names itself: answers `<name> <datagram>`, and
    /// listens on TCP on the same address for tcp health checks.
    pub fn named(ns: &Netns, addr: &str, name: &str) -> Echo {
        Echo::setup(Reply::Tagged(name.to_string()))
            .with_tcp()
            .start(ns, addr)
    }

    /// Whether it answers (it still hears and counts what comes while not).
    pub fn answer(&self, on: bool) {
        self.state.answering.store(on, Ordering::SeqCst);
    }

    /// How many datagrams it has heard so far, answered or not.
    pub fn heard(&self) -> usize {
        self.state.heard.load(Ordering::SeqCst)
    }

    /// The datagrams heard since the last call, with their sources; only
    /// with [`EchoSetup::recording`].
    pub fn take_heard(&self) -> Vec<(Vec<u8>, SocketAddr)> {
        std::mem::take(&mut *self.state.log.lock().unwrap())
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
