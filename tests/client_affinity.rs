//! Client-address affinity (`hash = "client"`): every flow of one client on
//! one backend, the backend the Rust side predicts for the client's address
//! (src/plan/flow_hash.rs `client_hash` over the ring the plan writes), IPv6
//! clients grouped by prefix, and pins per client: a client's new flow
//! follows the pin its earlier flows' replies made. Real sockets in a
//! namespace, on lo.

use udplb_testkit as support;

use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::model::ModelConfig;
use support::netns::*;
use support::process::*;
use support::servers::{Echo, Reply};
use support::sockets::{clients_on, round_to};
use udplb::plan::flow_hash::client_hash;

const BACKENDS: [u16; 3] = [9876, 9877, 9878];
/// Flows per client: each its own source port.
const FLOWS: u16 = 4;

fn config(backends: &str, hash: &str, flow_timeout: u32) -> String {
    let list: Vec<String> = backends.split(',').map(|b| format!("\"{b}\"")).collect();
    format!(
        "interface = \"lo\"\n[[frontend]]\nlisten = \"9875\"\nsched = \"maglev\"\n\
         table_size = 251\nhash = \"{hash}\"\nflow_timeout = {flow_timeout}\nbackends = [{}]\n",
        list.join(", ")
    )
}

/// The backend port the datapath must pick for a client with no pin: the
/// ring the plan writes for `text`, indexed by the client's hash.
fn predicted(text: &str, client: IpAddr, ipv6_prefix: u8) -> u16 {
    let file = TempFile::new("predict.toml", text);
    let config = udplb::config::file::load(file.path())
        .expect("the test's config")
        .config;
    let fe = &ModelConfig::from_config(&config).frontends[0];
    let bytes = match client {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let h = client_hash(&bytes, ipv6_prefix) as usize;
    fe.backends[fe.ring[h % fe.ring.len()]]
}

/// Each client's flows (FLOWS source ports from first_port) and the
/// backend that answered each.
fn ask(
    ns: &Netns,
    clients: &[String],
    first_port: u16,
    frontend: &str,
) -> BTreeMap<String, Vec<u16>> {
    clients
        .iter()
        .map(|c| {
            let bind = if c.contains(':') {
                format!("[{c}]")
            } else {
                c.clone()
            };
            let socks: Vec<UdpSocket> = clients_on(ns, &bind, first_port, FLOWS);
            let answers = round_to(&socks, frontend, None);
            (c.clone(), answers.into_values().collect())
        })
        .collect()
}

/// udplb with `file`, and backends on `ip` that answer with their port.
fn start(ns: &Netns, file: &TempFile, ip: &str) -> (Udplb, Vec<Echo>) {
    let echo = Echo::setup(Reply::Port).start_ports(ns, ip, &BACKENDS);
    let lb = Udplb::start(ns, &["--config", file.path()]);
    (lb, echo)
}

#[test]
fn every_flow_of_a_client_goes_to_the_predicted_backend() {
    let ns = Netns::new("aff");
    let text = config("9876,9877,9878", "client", 0);
    let file = TempFile::new("aff.toml", &text);
    let (lb, _echo) = start(&ns, &file, "127.0.0.1");
    assert!(
        lb.output.iter().any(|l| l.contains("(maglev, by client)")),
        "{:?}",
        lb.output
    );
    let clients: Vec<String> = (10..40).map(|i| format!("127.0.0.{i}")).collect();
    let seen = ask(&ns, &clients, 30000, "127.0.0.1:9875");
    let mut per_backend = BTreeMap::<u16, usize>::new();
    for (client, backends) in &seen {
        let want = predicted(&text, client.parse().unwrap(), 128);
        assert_eq!(
            backends,
            &vec![want; FLOWS as usize],
            "the flows of {client}: one backend, the client hash's"
        );
        *per_backend.entry(want).or_default() += 1;
    }
    // The clients (not their flows) spread over the backends.
    assert_eq!(per_backend.len(), BACKENDS.len(), "{per_backend:?}");
    let s = support::operate::status(&ns);
    assert_eq!(s["frontends"][0]["hash"], "client", "{s:#}");
    let (exit, out) = lb.stop(Signal::SIGTERM);
    assert!(exit.success(), "{out}");
}

/// IPv6 clients by /64: two addresses of one /64 share a backend whatever
/// their last bits; the whole address (`client`) tells them apart.
#[test]
fn ipv6_clients_are_grouped_by_their_prefix() {
    let ns = Netns::new("aff6");
    let nets = [
        "2001:2:0:1",
        "2001:2:0:2",
        "2001:2:0:3",
        "2001:2:0:4",
        "2001:2:0:5",
    ];
    let clients: Vec<String> = (nets.iter())
        .flat_map(|n| (1..=4).map(move |h| format!("{n}::{h:x}")))
        .collect();
    for c in &clients {
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{c}/128"),
            "dev",
            "lo",
            "nodad",
        ]);
    }
    for (hash, bits) in [("client/64", 64u8), ("client", 128)] {
        let text = config("9876,9877,9878", hash, 0);
        let file = TempFile::new("aff6.toml", &text);
        let (lb, echo) = start(&ns, &file, "[::1]");
        let seen = ask(&ns, &clients, 31000, "[::1]:9875");
        for (client, backends) in &seen {
            let want = predicted(&text, client.parse().unwrap(), bits);
            assert_eq!(backends, &vec![want; FLOWS as usize], "{hash}: {client}");
        }
        if bits == 64 {
            for n in nets {
                let of_net: Vec<&Vec<u16>> = (seen.iter())
                    .filter(|(c, _)| c.starts_with(&format!("{n}::")))
                    .map(|(_, b)| b)
                    .collect();
                assert!(
                    of_net.windows(2).all(|w| w[0] == w[1]),
                    "{n}::/64: {of_net:?}"
                );
            }
        }
        let (exit, out) = lb.stop(Signal::SIGTERM);
        assert!(exit.success(), "{out}");
        drop(echo);
    }
}

/// Pins per client: after a client's replies pinned it, a flow it opens
/// later follows the pin even where the ring now says otherwise (its
/// backend drained to weight 0), while a client without a pin gets the
/// ring's choice.
#[test]
fn a_clients_new_flow_follows_its_pin() {
    let ns = Netns::new("affpin");
    let text = config("9876,9877,9878", "client", 60);
    let file = TempFile::new("affpin.toml", &text);
    let (mut lb, _echo) = start(&ns, &file, "127.0.0.1");
    let clients: Vec<String> = (10..40).map(|i| format!("127.0.0.{i}")).collect();
    // The pinned clients: those the ring sends to 9877.
    let pinned: Vec<String> = (clients.iter())
        .filter(|c| predicted(&text, c.parse().unwrap(), 128) == 9877)
        .cloned()
        .collect();
    assert!(!pinned.is_empty(), "no client hashes to 9877");
    let first = ask(&ns, &pinned, 32000, "127.0.0.1:9875");
    assert!(
        first.values().all(|b| b.iter().all(|&p| p == 9877)),
        "{first:?}"
    );

    let drained = config("9876,9877@0,9878", "client", 60);
    file.write(&drained);
    lb.signal(Signal::SIGHUP);
    lb.wait_for("9877@0", Duration::from_secs(5));
    // New source ports: flows the table has never seen, of pinned clients.
    let later = ask(&ns, &pinned, 33000, "127.0.0.1:9875");
    assert_eq!(later, first, "the pinned clients' new flows");
    // A client that never sent: the ring, which no longer has 9877.
    let fresh: Vec<String> = (40..70).map(|i| format!("127.0.0.{i}")).collect();
    for (client, backends) in ask(&ns, &fresh, 33000, "127.0.0.1:9875") {
        let want = predicted(&drained, client.parse().unwrap(), 128);
        assert_ne!(want, 9877);
        assert_eq!(backends, vec![want; FLOWS as usize], "{client}");
    }
    let s = support::operate::status(&ns);
    let live: u64 = (s["frontends"][0]["backends"].as_array().unwrap().iter())
        .filter_map(|b| b["live_flows"].as_u64())
        .sum();
    assert_eq!(live, pinned.len() as u64 + 30, "one pin per client: {s:#}");
    let (exit, out) = lb.stop(Signal::SIGTERM);
    assert!(exit.success(), "{out}");
}
