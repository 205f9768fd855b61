//! A real request/response protocol through udplb: three dnsmasq servers
//! on the backend ports, queried by dig through the frontend. dig checks
//! that the answer comes from the address and port it asked, so every
//! answer proves the reply path; each server answers with its own address,
//! so the answers also show the round robin.

use udplb_testkit as support;

use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;
use support::sockets::*;

const SERVERS: [(u16, &str); 3] = [
    (5301, "198.19.1.1"),
    (5302, "198.19.1.2"),
    (5303, "198.19.1.3"),
];

/// A dnsmasq answering `svc.test A <answer>` on `port`, stopped by PID on drop.
struct Dnsmasq(Child);

impl Dnsmasq {
    fn start(ns: &Netns, port: u16, answer: &str) -> Dnsmasq {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
            ])
            .args([
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--pid-file",
                "--log-facility=/dev/null",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--address=/svc.test/{answer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        Dnsmasq(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// `dig` pinned to CPU 0 (round robin is per CPU): the A record, or the error.
fn dig(ns: &Netns, server: &str, port: u16) -> String {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "taskset", "-c", "0", "dig", "+short", "+tries=1", "+time=2",
        ])
        .args([
            &format!("@{server}"),
            "-p",
            &port.to_string(),
            "svc.test",
            "A",
        ])
        .output()
        .expect("dig (apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Waits until every dnsmasq answers directly on its own port.
fn wait_for_servers(ns: &Netns, host: &str) {
    for (port, answer) in SERVERS {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while dig(ns, host, port) != answer {
            assert!(
                std::time::Instant::now() < deadline,
                "dnsmasq on {port} does not answer"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn queries_round_robin(client: &Netns, frontend: &str) {
    for round in 0..4 {
        for (_, answer) in SERVERS {
            assert_eq!(
                dig(client, frontend, 53),
                answer,
                "round {round}: dig through udplb at {frontend}"
            );
        }
    }
}

#[test]
fn dig_and_dnsmasq_on_lo() {
    let ns = Netns::new("dns-lo");
    let _servers: Vec<Dnsmasq> = SERVERS
        .iter()
        .map(|(p, a)| Dnsmasq::start(&ns, *p, a))
        .collect();
    wait_for_servers(&ns, "127.0.0.1");
    let lb = Udplb::start(&ns, &["lo", "53=5301,5302,5303"]);
    queries_round_robin(&ns, "127.0.0.1");
    queries_round_robin(&ns, "::1");
    let (status, out) = lb.stop(Signal::SIGINT);
    assert!(status.success(), "{out}");
    assert!(out.contains("replies        packets           24"), "{out}");
}

#[test]
fn dig_and_dnsmasq_across_veth() {
    for tx_csum in [true, false] {
        let client = Netns::new("dns-cli");
        let lbns = Netns::new("dns-lb");
        veth_pair(&client, &lbns);
        set_tx_csum(&client, "veth-a", tx_csum);
        set_tx_csum(&lbns, "veth-b", tx_csum);
        let _servers: Vec<Dnsmasq> = SERVERS
            .iter()
            .map(|(p, a)| Dnsmasq::start(&lbns, *p, a))
            .collect();
        wait_for_servers(&lbns, "127.0.0.1");
        // A query held back while NDP/ARP resolves is sent from whichever CPU
        // gets the answer, and round robin is per CPU: resolve first.
        resolve_neighbour(&client, "198.18.0.2");
        resolve_neighbour(&client, "2001:2::2");
        let lb = Udplb::start(&lbns, &["veth-b", "53=5301,5302,5303"]);
        queries_round_robin(&client, "198.18.0.2");
        queries_round_robin(&client, "2001:2::2");
        assert_eq!(client.snmp("Udp", "InCsumErrors"), 0, "tx csum {tx_csum}");
        assert_eq!(lbns.snmp("Udp", "InCsumErrors"), 0, "tx csum {tx_csum}");
        let (status, out) = lb.stop(Signal::SIGINT);
        assert!(status.success(), "{out}");
        for port in [5301, 5302, 5303] {
            assert!(
                out.contains(&format!("backend {port}   packets            8")),
                "{out}"
            );
        }
    }
}
