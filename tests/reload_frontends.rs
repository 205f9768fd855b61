//! Reloads under traffic across the lookups by port: frontends that switch
//! between port-only and `0.0.0.0:PORT` + `[::]:PORT`, a second exact
//! address that comes and goes beside a port's only one (port_exact vs the
//! hash), local backends that move, leave, and take freed slots. Each answer
//! comes from the address and port it was sent to, by a backend of that
//! frontend; none is lost; the counters add up afterwards.

use udplb_testkit as support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;
use support::sockets::*;

const ADDRS: &str = "127.0.0.1 127.0.0.2 127.0.0.3 [::1] [2001:2::a]";

/// The configurations cycled through, as `LISTEN=PORT,PORT ...`.
const CONFIGS: [&str; 4] = [
    "9875=9001,9002,9010 127.0.0.2:9875=9101,9102 [2001:2::a]:9875=9401 \
     127.0.0.2:9880=9201 9885=9301",
    "0.0.0.0:9875=9001,9002 [::]:9875=9003,9004 127.0.0.2:9875=9101,9102 \
     127.0.0.3:9875=9111 [2001:2::a]:9875=9401 127.0.0.2:9880=9201 127.0.0.3:9880=9211 \
     9885=9301,9010",
    "9875=9001,9002,9005 127.0.0.2:9875=9101,9103 127.0.0.3:9875=9111 [2001:2::a]:9875=9402 \
     127.0.0.2:9880=9201 9885=9301,9010",
    "0.0.0.0:9875=9001,9005 [::]:9875=9003 127.0.0.2:9875=9102,9103 \
     [2001:2::a]:9875=9401,9402 127.0.0.2:9880=9202 127.0.0.3:9880=9211 9885=9301,9006",
];

fn config_text(specs: &str) -> String {
    let mut t = "interface = \"lo\"\n".to_string();
    for fe in specs.split_whitespace() {
        let (listen, backends) = fe.split_once('=').unwrap();
        let list: Vec<String> = backends.split(',').map(|b| format!("\"{b}\"")).collect();
        t += &format!(
            "[[frontend]]\nlisten = \"{listen}\"\nbackends = [{}]\n",
            list.join(", ")
        );
    }
    t
}

/// What the client sends to, and the backends that may answer each
/// destination (in one configuration or another).
const TARGETS: [(&str, &[u16]); 8] = [
    ("127.0.0.1:9875", &[9001, 9002, 9005, 9010]),
    ("[::1]:9875", &[9001, 9002, 9005, 9010, 9003, 9004]),
    ("127.0.0.2:9875", &[9101, 9102, 9103]),
    ("127.0.0.3:9875", &[9001, 9002, 9005, 9010, 9111]),
    ("[2001:2::a]:9875", &[9401, 9402]),
    ("127.0.0.2:9880", &[9201, 9202]),
    ("127.0.0.1:9885", &[9301, 9010, 9006]),
    ("[::1]:9885", &[9301, 9010, 9006]),
];

#[test]
fn answers_keep_their_frontend_across_reloads() {
    let ns = Netns::new("relfe");
    ns.ip(&["-6", "addr", "add", "2001:2::a/128", "dev", "lo", "nodad"]);
    let configs: Vec<String> = CONFIGS.iter().map(|c| config_text(c)).collect();
    let file = TempFile::new("lb.toml", &configs[0]);
    let mut lb = Udplb::start(
        &ns,
        &["--metrics", "127.0.0.1:9100", "--config", file.path()],
    );
    let bind = |addr: String| {
        let s = ns.udp_bind(&addr);
        big_rcvbuf(&s);
        s.set_nonblocking(true).unwrap();
        s
    };
    let targets: Vec<(SocketAddr, &[u16])> = (TARGETS.iter())
        .map(|(to, ok)| (to.parse().unwrap(), *ok))
        .collect();
    let backends: BTreeSet<u16> = TARGETS.iter().flat_map(|t| t.1.to_vec()).collect();
    // Every backend port on every address, so that a reply leaves from the
    // address the request came to.
    let socks: Vec<(u16, UdpSocket)> = (backends.iter())
        .flat_map(|&p| ADDRS.split(' ').map(move |a| (p, format!("{a}:{p}"))))
        .map(|(p, a)| (p, bind(a)))
        .collect();
    let (c4, c6) = (bind("127.0.0.1:0".into()), bind("[::1]:0".into()));
    const TOTAL: u32 = 24_000;
    let done = AtomicBool::new(false);
    let echo_done = AtomicBool::new(false);
    let received: Mutex<Vec<(u32, u16)>> = Mutex::new(Vec::new());
    let answers: Mutex<BTreeMap<u32, (SocketAddr, u16)>> = Mutex::new(BTreeMap::new());
    let no_ports = ns.snmp("Udp", "NoPorts");
    let mut reloads = 0;
    std::thread::scope(|s| {
        // Backends: echo with their port appended.
        s.spawn(|| {
            let mut buf = [0u8; 512];
            while !echo_done.load(Ordering::SeqCst) {
                for (p, b) in &socks {
                    while let Ok((n, from)) = b.recv_from(&mut buf) {
                        let seq = seq_of(&buf[..n]);
                        received.lock().unwrap().push((seq, *p));
                        buf[n..n + 2].copy_from_slice(&p.to_be_bytes());
                        let _ = b.send_to(&buf[..n + 2], from);
                    }
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        // Client: sends, and collects the answers.
        s.spawn(|| {
            let mut buf = [0u8; 512];
            let mut last = None;
            let mut seq = 0;
            loop {
                if seq < TOTAL {
                    for _ in 0..8 {
                        let (to, _) = &targets[seq as usize % targets.len()];
                        let c = if to.is_ipv4() { &c4 } else { &c6 };
                        c.send_to(&payload(seq, 40), to).unwrap();
                        seq += 1;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                } else {
                    done.store(true, Ordering::SeqCst);
                    let t = *last.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_millis(800) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                for c in [&c4, &c6] {
                    while let Ok((n, from)) = c.recv_from(&mut buf) {
                        let q = seq_of(&buf[..n]);
                        let port = u16::from_be_bytes([buf[n - 2], buf[n - 1]]);
                        answers.lock().unwrap().insert(q, (from, port));
                    }
                }
            }
        });
        while !done.load(Ordering::SeqCst) {
            reloads += 1;
            file.write(&configs[reloads % configs.len()]);
            lb.signal(Signal::SIGHUP);
            let line = lb.wait_for("reload", Duration::from_secs(5));
            assert!(line.contains("reloaded"), "{line}");
            lb.output.clear();
            std::thread::sleep(Duration::from_millis(30));
        }
        std::thread::sleep(Duration::from_millis(1200));
        echo_done.store(true, Ordering::SeqCst);
    });
    let answers = answers.into_inner().unwrap();
    let received = received.into_inner().unwrap();
    let mut bad: BTreeMap<String, u32> = BTreeMap::new();
    for (seq, p) in &received {
        let (to, ok) = &targets[*seq as usize % targets.len()];
        if !ok.contains(p) {
            *bad.entry(format!("{to} reached {p}")).or_default() += 1;
        }
    }
    for seq in 0..TOTAL {
        let (to, _) = &targets[seq as usize % targets.len()];
        let what = match answers.get(&seq) {
            None => format!("{to}: no answer"),
            // 9010 moves between *:9875 and *:9885; its reply entry is
            // rewritten between the two frontends' switches
            // (tests/moved_backend_replies.rs), so an answer to a request
            // in flight across them may leave from the other port.
            Some((from, 9010)) if from.ip() == to.ip() && [9875, 9885].contains(&from.port()) => {
                continue
            }
            Some((from, p)) if from != to => format!("{to} answered from {from} by {p}"),
            _ => continue,
        };
        *bad.entry(what).or_default() += 1;
    }
    assert!(bad.is_empty(), "after {reloads} reloads: {bad:?}");
    assert_eq!(
        ns.snmp("Udp", "NoPorts"),
        no_ports,
        "to a port with no socket"
    );
    // The counters after all this: every request balanced, every answer a reply.
    let m = support::operate::scrape(&ns);
    let verdict = |v: &str| {
        support::operate::sample(&m, "udplb_packets_total", &format!("hook=xdp,verdict={v}"))
    };
    assert_eq!(verdict("balanced"), TOTAL as f64);
    assert_eq!(verdict("reply"), TOTAL as f64);
    assert_eq!(verdict("backend_to_frontend") + verdict("no_frontend"), 0.0);
    let st = support::operate::status(&ns).to_string();
    assert!(
        st.contains(r#""listen":"127.0.0.2:9875""#),
        "udplb status: {st}"
    );
    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}
