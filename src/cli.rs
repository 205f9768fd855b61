//! The command line. `udplb [OPTIONS] <IFACE> <FRONTEND=BACKENDS>...`

use std::net::SocketAddr;

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};

use crate::abi::UDPLB_DEFAULT_MAGLEV_SIZE;
use crate::config::settings::{AnnounceFlags, Frontends, RunOptions, Settings, XdpMode};
use crate::config::{
    parse_flow_table_size, parse_flow_timeout, parse_table_size, Defaults, Hash, Mode, Sched,
    Tunnel, Tunnels,
};
use crate::error::UsageError;

/// UDP load balancer with an XDP datapath.
///
/// Datagrams arriving on IFACE for a FRONTEND are spread over its BACKENDS
/// (round robin, or Maglev for flows that must stick); replies from a
/// backend leave from the frontend's port.
///
/// Example: udplb lo 9875=9876,9877,9878
#[derive(Debug, Parser)]
#[command(name = "udplb", version, about, long_about = None, after_help = GRAMMAR,
          override_usage = USAGE,
          args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Interface(s) to attach to, e.g. lo, eth0, or eth0,eth1
    #[arg(value_name = "IFACE", required_unless_present_any = ["config", "unpin"],
          conflicts_with_all = ["config", "unpin"])]
    pub iface: Option<String>,

    /// A frontend and its backends: PORT, IPv4:PORT or [IPv6]:PORT, then '=',
    /// then comma-separated backends (a local PORT, or IPv4:PORT / [IPv6]:PORT of
    /// another host), each with an optional @WEIGHT
    #[arg(value_name = "FRONTEND=BACKENDS", required_unless_present_any = ["config", "unpin"],
          conflicts_with_all = ["config", "unpin"])]
    pub frontends: Vec<String>,

    /// Read interface and frontends from a TOML file; SIGHUP re-reads it
    #[arg(long, value_name = "FILE",
          conflicts_with_all = ["sched", "table_size", "flow_timeout", "quic_cid_len", "quic_config_id", "hash",
                               "mode", "tunnel_source"])]
    pub config: Option<String>,

    /// Scheduler: rr (per-datagram round robin), maglev (a flow sticks to a
    /// backend) or quic (by the server ID in the QUIC connection ID, each
    /// backend given as PORT#SERVER_ID; maglev for the rest)
    #[arg(long, value_enum, default_value_t = Sched::Rr, value_name = "SCHED")]
    pub sched: Sched,

    /// What maglev and quic hash: flow (addresses and ports: each flow of
    /// a client on its own backend) or client (the client's address alone:
    /// all its flows on one backend, one pin per client); client/N cuts an
    /// IPv6 client's address to its first N bits (e.g. client/64)
    #[arg(long, value_name = "HASH", default_value = "flow",
          value_parser = |s: &str| Hash::parse(s).map_err(|e| e.0))]
    pub hash: Hash,

    /// How requests reach remote backends: nat (their address and port;
    /// replies come back through udplb), or direct server return, the
    /// backend answering the client itself from the frontend's address:
    /// ipip, gue:PORT (the backends' `ip fou add port PORT gue`) or l2 (a
    /// backend on a segment of this host: its MAC)
    #[arg(long, value_name = "MODE", default_value = "nat",
          value_parser = |s: &str| Mode::parse(s).map_err(|e| e.0))]
    pub mode: Mode,

    /// The outer source address of ipip and gue, one per family; with
    /// /PREFIX the flow hash fills its host bits (the last 32 at most), so
    /// that routers and the backends' RSS spread the flows
    #[arg(long, value_name = "ADDR[/PREFIX]",
          value_parser = |s: &str| Tunnel::parse(s).map_err(|e| e.0))]
    pub tunnel_source: Vec<Tunnel>,

    /// Maglev table size per frontend: a prime (more entries, finer shares)
    #[arg(long, value_name = "N", default_value_t = UDPLB_DEFAULT_MAGLEV_SIZE,
          value_parser = |s: &str| parse_table_size(s).map_err(|e| e.0))]
    pub table_size: u32,

    /// Active health checks of every backend, with the default timing
    /// (interval 1s, timeout 500ms, rise 2, fall 3): dns (a `. NS` query),
    /// udp (a datagram, any reply), tcp (a connect to the backend's port),
    /// http (GET / on the backend's port, 2xx) or none. Local backends are
    /// also down while no UDP socket is bound to their port. The config
    /// file sets checks per frontend and per backend
    #[arg(long, value_name = "KIND", conflicts_with = "config",
          value_parser = crate::config::names::check_kind_names())]
    pub health: Option<String>,

    /// Maglev flow table: seconds a flow stays pinned to the backend that
    /// answered it after its last reply (0: no flow table)
    #[arg(long, value_name = "SECS", default_value_t = crate::abi::UDPLB_DEFAULT_FLOW_TIMEOUT,
          value_parser = |s: &str| parse_flow_timeout(s).map_err(|e| e.0))]
    pub flow_timeout: u32,

    /// Flow table entries, shared by all maglev and quic frontends (about 128 bytes
    /// each: the default 131072 takes about 16 MiB); LRU beyond that
    #[arg(long, value_name = "N", default_value_t = crate::abi::UDPLB_DEFAULT_FLOW_TABLE_SIZE,
          value_parser = |s: &str| parse_flow_table_size(s).map_err(|e| e.0))]
    pub flow_table_size: u32,

    /// QUIC frontends: the connection ID length of short headers (default
    /// max(8, server ID length + 5))
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u8).range(2..=20))]
    pub quic_cid_len: Option<u8>,

    /// QUIC frontends: the config rotation codepoint the servers put in the
    /// top 3 bits of their connection IDs
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=6))]
    pub quic_config_id: u8,

    /// XDP attach mode
    #[arg(long, value_enum, default_value_t = XdpMode::Auto, value_name = "MODE")]
    pub xdp_mode: XdpMode,

    /// Replace an XDP program already attached to IFACE
    #[arg(long)]
    pub force: bool,

    /// Keep the programs attached after exit, pinned under /sys/fs/bpf/udplb/IFACE;
    /// a later `udplb --pin` on IFACE takes them over with no gap
    #[arg(long)]
    pub pin: bool,

    /// Detach and remove what `--pin` left on IFACE, then exit
    #[arg(long, value_name = "IFACE", conflicts_with_all = ["pin", "config"])]
    pub unpin: Option<String>,

    /// Print per-backend and per-verdict counters every SECS seconds
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub stats: Option<u64>,

    /// Serve Prometheus metrics on http://ADDR:PORT/metrics and a live
    /// status page on http://ADDR:PORT/ (e.g. 127.0.0.1:9100); overrides
    /// `metrics` in the config file
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Add each frontend's address to IFACE (a dummy interface, or lo) while
    /// udplb is attached and the frontend has a backend up, for a routing
    /// daemon to announce (BIRD `protocol direct`, FRR `redistribute
    /// connected`); removed when its last backend goes down and on
    /// SIGINT/SIGTERM. Every frontend needs an address. In the file:
    /// `announce_interface`
    #[arg(long, value_name = "IFACE", conflicts_with = "config")]
    pub announce: Option<String>,

    /// With --announce: seconds between withdrawing the addresses and
    /// detaching, on SIGINT/SIGTERM, for routers to converge [default: 2]
    #[arg(long, value_name = "SECONDS", requires = "announce",
          value_parser = |s: &str| crate::config::announce::parse_grace(s).map_err(|e| e.0))]
    pub announce_grace: Option<std::time::Duration>,

    /// With --announce: lifetime of the addresses, refreshed while udplb
    /// runs; after a SIGKILL they expire within it [default: 10]
    #[arg(long, value_name = "SECONDS", requires = "announce",
          value_parser = |s: &str| crate::config::announce::parse_lease(s).map_err(|e| e.0))]
    pub announce_lease: Option<std::time::Duration>,

    /// More output: libbpf's warnings always show; -v adds its info
    /// messages, -vv its debug output
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Talking to a running balancer over its control socket (/run/udplb).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a running balancer: frontends, backends, counters and rates
    #[command(override_usage = "udplb status [IFACE] [--json]")]
    Status {
        /// The interfaces it was started on, as given (default: the only
        /// balancer in this network namespace)
        #[arg(value_name = "IFACE")]
        iface: Option<String>,
        /// Print the snapshot as JSON
        #[arg(long)]
        json: bool,
    },
    /// Ask a running balancer to re-read its config file; prints what changed
    #[command(override_usage = "udplb reload [IFACE]")]
    Reload {
        /// The interfaces it was started on, as given (default: the only
        /// balancer in this network namespace)
        #[arg(value_name = "IFACE")]
        iface: Option<String>,
    },
}

impl Args {
    /// Scheduler settings for frontends given on the command line.
    pub fn defaults(&self) -> Defaults {
        Defaults {
            sched: self.sched,
            table_size: self.table_size,
            flow_timeout: self.flow_timeout,
            hash: self.hash,
            mode: self.mode,
            // Two of one family are refused by settings().
            tunnels: Tunnels {
                v4: self
                    .tunnel_source
                    .iter()
                    .copied()
                    .find(|t| t.addr.is_ipv4()),
                v6: self
                    .tunnel_source
                    .iter()
                    .copied()
                    .find(|t| t.addr.is_ipv6()),
            },
            quic: crate::config::QuicSettings {
                server_id_len: None,
                cid_len: self.quic_cid_len,
                config_id: self.quic_config_id,
            },
        }
    }

    /// What the daemon runs: the frontends of the file or the command line,
    /// and how to run them. Reads the config file; touches nothing else.
    pub fn settings(&self) -> Result<Settings, UsageError> {
        let sources: Vec<String> = self.tunnel_source.iter().map(Tunnel::to_string).collect();
        Tunnels::parse(&sources)?;
        let frontends = match (&self.config, &self.iface) {
            (Some(path), _) => Frontends::File(path),
            (None, Some(iface)) => Frontends::CommandLine {
                iface,
                specs: &self.frontends,
                defaults: self.defaults(),
                health: self.health.as_deref(),
            },
            // clap requires one of the two (see `iface`).
            (None, None) => return Err(UsageError("no interface given".into())),
        };
        let run = RunOptions {
            xdp_mode: self.xdp_mode,
            force: self.force,
            pin: self.pin,
            stats: self.stats.map(std::time::Duration::from_secs),
            flow_table_size: self.flow_table_size,
            verbose: self.verbose,
        };
        let announce = self.announce.as_deref().map(|interface| AnnounceFlags {
            interface,
            grace: self.announce_grace,
            lease: self.announce_lease,
        });
        Settings::new(frontends, run, self.metrics, announce)
    }
}

// The option values of types that live below the command line (config and
// datapath know nothing of clap).
impl ValueEnum for Sched {
    fn value_variants<'a>() -> &'a [Self] {
        &Sched::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Sched::Rr => "Per-datagram weighted round robin (stateless protocols: DNS, syslog)",
            Sched::Maglev => "Flow-consistent: Maglev hashing of the 4-tuple (QUIC, DTLS, games)",
            Sched::Quic => "QUIC-LB: the server ID in the connection ID, else maglev",
        };
        Some(PossibleValue::new(self.code()).help(help))
    }
}

impl ValueEnum for XdpMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[XdpMode::Auto, XdpMode::Native, XdpMode::Generic]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            XdpMode::Auto => PossibleValue::new("auto")
                .help("Native (driver) mode where the driver supports it, else generic"),
            XdpMode::Native => PossibleValue::new("native")
                .help("Driver mode; fails on interfaces without native XDP (such as lo)"),
            XdpMode::Generic => {
                PossibleValue::new("generic").help("Generic (skb) mode: works everywhere, slower")
            }
        })
    }
}

/// The ways to run udplb, as `--help` and every command-line error show
/// them (and the README's "Command line"). clap's own usage line would mark
/// IFACE optional and, after `--config FILE lo ...`, suggest that very
/// combination.
const USAGE: &str = "\
udplb [OPTIONS] <IFACE> <FRONTEND=BACKENDS>...
       udplb [OPTIONS] --config <FILE>
       udplb --unpin <IFACE>
       udplb status [IFACE] [--json]
       udplb reload [IFACE]";

const GRAMMAR: &str = "\
Frontends:
  9875                  port 9875 on every local IPv4 and IPv6 address
  198.18.0.1:53         one IPv4 address (beats a port-only frontend)
  [2001:2::1]:53        one IPv6 address
Backends:
  9876,9877@2,9878@0    ports on this host (weight 0-1000, default 1; 0 drains:
                        no new traffic, replies still translated)
  198.18.1.2:53         a port on another host, forwarded in XDP
  [2001:2::2]:53        the same over IPv6
  Each backend belongs to one frontend.
Signals: SIGINT/SIGTERM stop (withdraw --announce addresses; unless --pin, wait
the grace, then detach); SIGHUP re-reads --config.
A running balancer answers `udplb status` and `udplb reload` (root).";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("udplb").chain(args.iter().copied()))
    }

    #[test]
    fn the_example_line() {
        let a = parse(&["lo", "9875=9876,9877,9878"]).unwrap();
        assert_eq!(a.iface.as_deref(), Some("lo"));
        assert_eq!(a.defaults(), Defaults::default());
        assert_eq!(a.frontends, vec!["9875=9876,9877,9878"]);
        assert_eq!(a.xdp_mode, XdpMode::Auto);
        assert!(!a.force);
        assert_eq!(a.stats, None);
    }

    #[test]
    fn options() {
        let a = parse(&[
            "--xdp-mode",
            "generic",
            "--force",
            "--stats",
            "5",
            "-vv",
            "eth0",
            "53=5353",
            "54=5454",
        ])
        .unwrap();
        assert_eq!(a.xdp_mode, XdpMode::Generic);
        assert!(a.force);
        assert_eq!(a.stats, Some(5));
        assert_eq!(a.verbose, 2);
        assert_eq!(a.frontends.len(), 2);
        assert_eq!(
            parse(&["--xdp-mode", "native", "eth0", "1=2"])
                .unwrap()
                .xdp_mode,
            XdpMode::Native
        );
    }

    #[test]
    fn schedulers_config_and_pinning() {
        let a = parse(&["--sched", "maglev", "--table-size", "16381", "lo", "1=2"]).unwrap();
        assert_eq!(
            a.defaults(),
            Defaults {
                sched: Sched::Maglev,
                table_size: 16381,
                flow_timeout: 60,
                quic: Default::default(),
                hash: Hash::Flow,
                mode: Mode::Nat,
                tunnels: Tunnels::default(),
            }
        );
        let a = parse(&[
            "--sched",
            "maglev",
            "--mode",
            "gue:6080",
            "--tunnel-source",
            "198.18.0.0/24",
            "--tunnel-source",
            "2001:2::1",
            "lo",
            "1=2",
        ])
        .unwrap();
        assert_eq!(a.defaults().mode, Mode::Gue { port: 6080 });
        assert_eq!(a.defaults().tunnels.code(), ["198.18.0.0/24", "2001:2::1"]);
        let two = parse(&[
            "--tunnel-source",
            "198.18.0.1",
            "--tunnel-source",
            "198.18.0.2",
            "lo",
            "1=2",
        ]);
        assert!(two
            .unwrap()
            .settings()
            .unwrap_err()
            .0
            .contains("one per family"));
        let e = parse(&["--mode", "gue", "lo", "1=2"]).unwrap_err();
        assert!(e.to_string().contains("gue:PORT"), "{e}");
        let a = parse(&["--sched", "maglev", "--hash", "client/64", "lo", "1=2"]).unwrap();
        assert_eq!(a.defaults().hash, Hash::Client { ipv6_prefix: 64 });
        for bad in ["client/0", "client/129", "clients", "client/"] {
            let e = parse(&["--sched", "maglev", "--hash", bad, "lo", "1=2"]).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
        let a = parse(&["--config", "lb.toml", "--pin"]).unwrap();
        assert_eq!(
            (a.config.as_deref(), a.iface, a.pin),
            (Some("lb.toml"), None, true)
        );
        let a = parse(&["--unpin", "eth0"]).unwrap();
        assert_eq!(a.unpin.as_deref(), Some("eth0"));
    }

    #[test]
    fn settings_carry_every_run_flag() {
        let a = parse(&[
            "--xdp-mode",
            "native",
            "--force",
            "--pin",
            "--stats",
            "7",
            "--flow-table-size",
            "4096",
            "-v",
            "--metrics",
            "127.0.0.1:9100",
            "eth0",
            "53=5301",
        ])
        .unwrap();
        let s = a.settings().unwrap();
        assert_eq!(
            s.run,
            RunOptions {
                xdp_mode: XdpMode::Native,
                force: true,
                pin: true,
                stats: Some(std::time::Duration::from_secs(7)),
                flow_table_size: 4096,
                verbose: 1,
            }
        );
        assert_eq!((s.iface.as_str(), s.config_path), ("eth0", None));
        assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        let a = parse(&["--config", "/nonexistent/lb.toml"]).unwrap();
        let e = a.settings().unwrap_err();
        assert!(e.0.starts_with("/nonexistent/lb.toml: "), "{}", e.0);
    }

    #[test]
    fn health_flag() {
        assert_eq!(parse(&["lo", "1=2"]).unwrap().health, None);
        for kind in ["none", "udp", "dns", "tcp", "http"] {
            let a = parse(&["--health", kind, "lo", "53=5301"]).unwrap();
            assert_eq!(a.health.as_deref(), Some(kind));
        }
        assert_eq!(
            parse(&["--health", "icmp", "lo", "1=2"])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse(&["--health", "dns", "--config", "x.toml"])
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn announce_flags() {
        let a = parse(&[
            "--announce",
            "udplb0",
            "--announce-grace",
            "0.5",
            "eth0",
            "198.18.100.1:53=5301",
        ])
        .unwrap();
        assert_eq!(a.announce.as_deref(), Some("udplb0"));
        assert_eq!(
            a.announce_grace,
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(a.announce_lease, None);
        assert_eq!(
            parse(&["--announce-grace", "1", "eth0", "1=2"])
                .unwrap_err()
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["--announce", "d0", "--config", "x.toml"])
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["--announce", "d0", "--announce-lease", "1", "eth0", "1=2"])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn bad_command_lines() {
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["lo"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["--xdp-mode", "fast", "lo", "1=2"])
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse(&["--stats", "0", "lo", "1=2"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--stats", "x", "lo", "1=2"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["--bogus", "lo", "1=2"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
    }
}
