//! Case (d): datagrams per second forwarded through a balancer namespace to
//! backends on another host, sent by a client across a veth pair.
//!
//!   client netns              balancer netns                 backend-hosts netns
//!   sender (CPU 0) ── veth-a ══ veth-b ─[balancer]─ veth-c ══ veth-d ── receivers (CPU 1)
//!   198.18.0.1                198.18.0.2          198.18.1.1   198.18.1.2, .3, .4 :5353
//!                             frontend 198.18.100.1:53 (on lo)
//!
//! Cases:
//! - plain routing: the client sends to the three backend addresses itself
//!   and the balancer only routes them (no NAT): the limit;
//! - nftables DNAT in the balancer: `numgen inc mod 3` to the backend
//!   addresses, the kernel forwards (conntrack keeps each flow on its
//!   backend);
//! - udplb with remote backends, XDP on veth-b and veth-c: DNAT,
//!   bpf_fib_lookup and XDP_REDIRECT into veth-c, so the balancer's stack
//!   never sees the datagrams;
//! - informative: udplb in generic (skb) XDP mode, and a reference without
//!   a balancer (the client's veth straight to the backend host's), from
//!   which the balancer's own share of the path is derived (below).
//!
//! Every case with a balancer has the same topology: forwarding on, GRO on
//! at every veth end (a veth takes redirected frames only when its peer has
//! NAPI on, which GRO or an XDP program turns on), permanent neighbour entries (no ARP
//! during a run, and the FIB lookup finds every next hop), the backend host
//! routing the client's subnet back through the balancer. No route leaves
//! the namespaces.
//!
//! The sender, receivers, rounds and figures are those of the local case
//! (end_to_end.rs): the whole path, the balancer's forwarding and the backend
//! host's receive, runs on CPU 0 inside the sender's system calls. So the
//! balancer-side CPU figure includes the backend host's receive too, the
//! same in every case ("above routing" is what a case costs beyond plain
//! forwarding), and the datagrams per second of every case are bounded by
//! what the sender and the backend host cost. The derived section takes
//! those out: per round, a case's sender-CPU time per datagram minus the
//! no-balancer reference's is the balancer's own part (its veth receive,
//! its work, its transmit), reported as datagrams per second of that CPU
//! time: what a balancer with a CPU of its own could forward.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::Result;

use super::balancers::{install_nft_dnat, start_udplb, Proc};
use super::deps::Tools;
use super::end_to_end::{measure, rows, sections, skip, Case, Layout, Path, Row};
use super::netns::{link, neigh, veth_pair, End, Netns, BALANCER_MAC, CLIENT_MAC, CLIENT_V4};
use super::report::{CaseResult, Report, Section};
use super::stats::Samples;

/// The cases, by the names the command line and results.json use.
pub const CASES: &[&str] = &[
    "remote_nobalancer",
    "remote_routing",
    "remote_nftables",
    "remote_udplb",
    "remote_udplb_generic",
];

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
pub const FRONTEND_PORT: u16 = 53;
pub const BACKEND_PORT: u16 = 5353;
/// The backend hosts: three addresses on the backend-hosts namespace's veth.
pub const BACKENDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 18, 1, 2),
    Ipv4Addr::new(198, 18, 1, 3),
    Ipv4Addr::new(198, 18, 1, 4),
];
const GATEWAY: &str = "198.18.1.1";
const GATEWAY_MAC: &str = "02:00:00:00:01:01";
const HOSTS_MAC: &str = "02:00:00:00:01:02";
/// The client's subnet, routed back through the balancer by the hosts.
const CLIENT_NET: &str = "198.18.0.0/24";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Reference: the client linked straight to the backend host.
    NoBalancer,
    Routing,
    Nftables,
    Udplb,
    /// Informative: udplb with generic (skb) XDP, where a redirect hands the
    /// skb itself to the next device.
    UdplbGeneric,
}

const KINDS: [Kind; 5] = [
    Kind::NoBalancer,
    Kind::Routing,
    Kind::Nftables,
    Kind::Udplb,
    Kind::UdplbGeneric,
];

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::NoBalancer => "remote_nobalancer",
            Kind::Routing => "remote_routing",
            Kind::Nftables => "remote_nftables",
            Kind::Udplb => "remote_udplb",
            Kind::UdplbGeneric => "remote_udplb_generic",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::NoBalancer => "(ref) no balancer, client-host veth",
            Kind::Routing => "plain routing, no NAT (limit)",
            Kind::Nftables => "nftables DNAT mod 3 + kernel forwarding",
            Kind::Udplb => "udplb remote (XDP DNAT + redirect)",
            Kind::UdplbGeneric => "(info) udplb remote, generic XDP",
        }
    }
}

pub fn backends() -> Vec<SocketAddrV4> {
    BACKENDS
        .iter()
        .map(|&a| SocketAddrV4::new(a, BACKEND_PORT))
        .collect()
}

/// One case's namespaces and balancer, kept for all rounds.
struct Setup {
    kind: Kind,
    // Fields drop in order: udplb stops before its namespaces go.
    udplb: Option<Proc>,
    client: Netns,
    /// None in the no-balancer reference.
    balancer: Option<Netns>,
    hosts: Netns,
}

impl Setup {
    fn new(kind: Kind) -> Result<Setup> {
        let tag = kind.key().trim_start_matches("remote_");
        let client = super::netns::create(&format!("r{tag}-c"))?;
        let hosts = super::netns::create(&format!("r{tag}-s"))?;
        let host_addrs: Vec<String> = BACKENDS.iter().map(|a| format!("{a}/24")).collect();
        let host_addrs: Vec<&str> = host_addrs.iter().map(String::as_str).collect();
        if kind == Kind::NoBalancer {
            // The client's veth straight to the hosts', which takes the
            // balancer's Ethernet address (the frames are addressed to it).
            link(
                &End {
                    ns: &client,
                    dev: "veth-a",
                    mac: Some(CLIENT_MAC),
                    addrs: &[&format!("{CLIENT_V4}/24")],
                },
                &End {
                    ns: &hosts,
                    dev: "veth-d",
                    mac: Some(BALANCER_MAC),
                    addrs: &host_addrs,
                },
            )?;
            hosts.try_ip(&["route", "add", CLIENT_NET, "dev", "veth-d"])?;
            for (ns, dev) in [(&client, "veth-a"), (&hosts, "veth-d")] {
                ns.try_exec(&["ethtool", "-K", dev, "gro", "on"])?;
            }
            return Ok(Setup {
                kind,
                udplb: None,
                client,
                balancer: None,
                hosts,
            });
        }
        let balancer = super::netns::create(&format!("r{tag}-b"))?;
        topology(&client, &balancer, &hosts)?;
        let mut udplb = None;
        match kind {
            Kind::NoBalancer | Kind::Routing => {}
            Kind::Nftables => install_nft_dnat(&balancer, Some(VIP), FRONTEND_PORT, &backends())?,
            Kind::Udplb | Kind::UdplbGeneric => {
                let list: Vec<String> = backends().iter().map(|b| b.to_string()).collect();
                let spec = format!("{VIP}:{FRONTEND_PORT}={}", list.join(","));
                let options: &[&str] = if kind == Kind::UdplbGeneric {
                    &["--xdp-mode", "generic"]
                } else {
                    &[]
                };
                udplb = Some(start_udplb(&balancer, options, "veth-b,veth-c", &spec)?);
            }
        }
        Ok(Setup {
            kind,
            udplb,
            client,
            balancer: Some(balancer),
            hosts,
        })
    }
}

impl Case for Setup {
    fn key(&self) -> &'static str {
        self.kind.key()
    }

    fn label(&self) -> &'static str {
        self.kind.label()
    }

    fn path(&self) -> Path<'_> {
        Path {
            client: &self.client,
            dsts: match self.kind {
                Kind::NoBalancer | Kind::Routing => backends(),
                _ => vec![SocketAddrV4::new(VIP, FRONTEND_PORT)],
            },
            hosts: &self.hosts,
            backends: backends(),
            balancer: self.balancer.as_ref(),
            pids: self.udplb.iter().map(Proc::pid).collect(),
        }
    }

    fn udplb(&mut self) -> Option<&mut Proc> {
        self.udplb.as_mut()
    }
}

/// Joins `client`, `balancer` and `hosts` as every case with a balancer
/// has them: veth-a ══ veth-b, veth-c ══ veth-d, the frontend on the
/// balancer's lo, forwarding on, GRO on at every veth end, permanent
/// neighbour entries, the hosts routing the client's subnet back through
/// the balancer. (The NIC-speed section, nic.rs, uses it too.)
pub fn topology(client: &Netns, balancer: &Netns, hosts: &Netns) -> Result<()> {
    let host_addrs: Vec<String> = BACKENDS.iter().map(|a| format!("{a}/24")).collect();
    let host_addrs: Vec<&str> = host_addrs.iter().map(String::as_str).collect();
    veth_pair(client, balancer)?;
    link(
        &End {
            ns: balancer,
            dev: "veth-c",
            mac: Some(GATEWAY_MAC),
            addrs: &[&format!("{GATEWAY}/24")],
        },
        &End {
            ns: hosts,
            dev: "veth-d",
            mac: Some(HOSTS_MAC),
            addrs: &host_addrs,
        },
    )?;
    for a in BACKENDS {
        neigh(balancer, "veth-c", &a.to_string(), HOSTS_MAC)?;
    }
    neigh(hosts, "veth-d", GATEWAY, GATEWAY_MAC)?;
    hosts.try_ip(&["route", "add", CLIENT_NET, "via", GATEWAY, "dev", "veth-d"])?;
    balancer.try_ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
    balancer.try_exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    for (ns, dev) in [
        (client, "veth-a"),
        (balancer, "veth-b"),
        (balancer, "veth-c"),
        (hosts, "veth-d"),
    ] {
        ns.try_exec(&["ethtool", "-K", dev, "gro", "on"])?;
    }
    Ok(())
}

/// Runs every case, or those named in `only`.
pub fn run(report: &mut Report, tools: &Tools, only: &[String]) -> Result<()> {
    let mut setups = Vec::new();
    for kind in KINDS
        .into_iter()
        .filter(|k| only.is_empty() || only.iter().any(|o| o == k.key()))
    {
        if let (Kind::Nftables, Err(why)) = (kind, &tools.nft) {
            skip(report, "remote", kind.key(), why);
            continue;
        }
        setups.push(Setup::new(kind)?);
    }
    let collected = measure("remote", &mut setups)?;
    let rows = rows(&setups, &collected);
    report.sections.extend(sections(
        &Layout {
            key: "e2e_remote",
            what: "remote backends",
            bases: &[
                ("routing", "remote_routing"),
                ("nftables", "remote_nftables"),
            ],
            forwarding: true,
        },
        &rows,
    ));
    report.sections.extend(balancer_only(&rows));
    Ok(())
}

/// The balancer's own share of the path, derived: a case's sender-CPU time
/// per datagram minus the no-balancer reference's in the same round (same
/// sender, same backend host, one veth less), as datagrams per second of
/// that CPU time. What a balancer with a CPU of its own could forward.
fn balancer_only(rows: &[Row]) -> Option<Section> {
    let reference = rows.iter().find(|r| r.key == "remote_nobalancer")?;
    let own = |r: &Row| -> Samples {
        Samples(
            r.c.per_cpu_rate()
                .0
                .iter()
                .zip(&reference.c.per_cpu_rate().0)
                .map(|(&x, &base)| {
                    // kdgram per CPU-second -> ns per datagram.
                    let ns = 1e6 / x - 1e6 / base;
                    if ns > 0.0 {
                        1e6 / ns
                    } else {
                        f64::NAN
                    }
                })
                .collect(),
        )
    };
    let measured: Vec<(&Row, Samples)> = rows
        .iter()
        .filter(|r| r.key != reference.key)
        .map(|r| (r, own(r)))
        .collect();
    let base = |key: &str| measured.iter().find(|(r, _)| r.key == key).map(|m| &m.1);
    let bases: Vec<(&str, &Samples)> = [
        ("routing", "remote_routing"),
        ("nftables", "remote_nftables"),
    ]
    .into_iter()
    .filter_map(|(name, key)| Some((name, base(key)?)))
    .collect();
    let cases = measured
        .iter()
        .map(|(r, s)| {
            let mut c = CaseResult::new(r.key, r.label, "kdgram/cpu-s", s.clone());
            for (name, b) in &bases {
                c.ratios.push(((*name).into(), s.ratio_to(b)));
            }
            let ns: Vec<f64> = s.0.iter().map(|v| 1e6 / v).collect();
            c.extra
                .push(("ns per datagram".into(), super::stats::median(&ns)));
            c
        })
        .collect();
    Some(Section {
        key: "e2e_remote_balancer".into(),
        title: "End to end, remote backends: the balancer's own forwarding, derived".into(),
        method: "per round: 1 / (sender-CPU time per datagram - the no-balancer reference's): \
                 datagrams per second of the CPU the balancer's part of the path took"
            .into(),
        cases,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn case_names_match_the_kinds() {
        let keys: Vec<&str> = super::KINDS.iter().map(|k| k.key()).collect();
        assert_eq!(keys, super::CASES);
    }

    #[test]
    fn addresses_stay_in_the_benchmark_range() {
        // 198.18.0.0/15: 198.18.x.x and 198.19.x.x only.
        let in_range = |a: std::net::Ipv4Addr| a.octets()[..2] == [198, 18];
        assert!(in_range(super::VIP));
        assert!(super::BACKENDS.iter().all(|&a| in_range(a)));
        assert!(in_range(super::GATEWAY.parse().unwrap()));
        assert_eq!(super::backends().len(), 3);
    }
}
