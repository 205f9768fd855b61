//! How udplb runs: everything the daemon takes from the command line and the
//! config file, as one value built before anything is touched. cli.rs maps
//! clap's flags onto it; the daemon reads only this, never the flags.

use std::net::SocketAddr;
use std::time::Duration;

use super::announce::{self, Announce};
use super::{file, CheckKind, Config, Defaults};
use crate::error::UsageError;
use crate::usage;

/// Where the frontends come from.
pub enum Frontends<'a> {
    /// `--config FILE`: the interfaces, frontends, metrics and announce
    /// settings of the file; SIGHUP re-reads it.
    File(&'a str),
    /// `IFACE FRONTEND=BACKENDS...` with the scheduler flags and `--health`.
    CommandLine {
        iface: &'a str,
        specs: &'a [String],
        defaults: Defaults,
        health: Option<&'a str>,
    },
}

/// The flags that say how to run, whatever the frontends' source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    pub xdp_mode: XdpMode,
    /// `--force`: replace an XDP program already on an interface.
    pub force: bool,
    /// `--pin`: leave the programs attached at exit, and take over pinned ones.
    pub pin: bool,
    /// `--stats SECS`: print the counters this often.
    pub stats: Option<Duration>,
    /// `--flow-table-size`: entries of the flow table.
    pub flow_table_size: u32,
    /// `-v`: 1 shows libbpf's warnings, 2 its debug output.
    pub verbose: u8,
}

/// `--xdp-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode where the driver supports it, else generic.
    Auto,
    /// Driver mode; fails on interfaces without native XDP (such as lo).
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

/// `--announce IFACE` with its timing flags (None: the defaults).
pub struct AnnounceFlags<'a> {
    pub interface: &'a str,
    pub grace: Option<Duration>,
    pub lease: Option<Duration>,
}

/// What udplb runs.
#[derive(Debug)]
pub struct Settings {
    /// The interface list as given (a reload may not change it).
    pub iface: String,
    pub config: Config,
    /// `--config FILE`: the file a reload re-reads.
    pub config_path: Option<String>,
    /// Where to serve /metrics and the status page: `--metrics`, else the
    /// file's `metrics`.
    pub metrics: Option<SocketAddr>,
    /// `--announce` or `announce_interface`: off unless asked.
    pub announce: Announce,
    pub run: RunOptions,
}

impl Settings {
    /// Reads and checks the frontends; touches nothing else (the
    /// interfaces and privileges are the daemon's to check).
    pub fn new(
        frontends: Frontends<'_>,
        run: RunOptions,
        metrics: Option<SocketAddr>,
        announce_flags: Option<AnnounceFlags<'_>>,
    ) -> Result<Settings, UsageError> {
        let (iface, config, config_path, file_metrics, mut announce) = match frontends {
            Frontends::File(path) => {
                let f = file::load(path)?;
                let path = Some(path.to_string());
                (f.interface, f.config, path, f.metrics, f.announce)
            }
            Frontends::CommandLine {
                iface,
                specs,
                defaults,
                health,
            } => {
                let mut config = Config::from_specs_with(specs, defaults)?;
                if let Some(kind) = health {
                    let kind = CheckKind::with_defaults(kind)
                        .ok_or_else(|| usage!("--health {kind}: unknown check kind"))?;
                    config.set_check(&kind);
                }
                (iface.to_string(), config, None, None, Announce::default())
            }
        };
        if let Some(a) = announce_flags {
            let grace = a.grace.unwrap_or(announce::DEFAULT_GRACE);
            let lease = a.lease.unwrap_or(announce::DEFAULT_LEASE);
            announce = Announce::every(&config, a.interface, grace, lease)?;
        }
        Ok(Settings {
            iface,
            config,
            config_path,
            metrics: metrics.or(file_metrics),
            announce,
            run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: RunOptions = RunOptions {
        xdp_mode: XdpMode::Auto,
        force: false,
        pin: false,
        stats: None,
        flow_table_size: 1024,
        verbose: 0,
    };

    fn command_line<'a>(specs: &'a [String], health: Option<&'a str>) -> Frontends<'a> {
        Frontends::CommandLine {
            iface: "lo",
            specs,
            defaults: Defaults::default(),
            health,
        }
    }

    #[test]
    fn from_the_command_line() {
        let specs = vec!["198.18.0.1:53=5301,5302".to_string()];
        let s = Settings::new(command_line(&specs, Some("dns")), RUN, None, None).unwrap();
        assert_eq!(s.iface, "lo");
        assert_eq!(s.config_path, None);
        assert_eq!(s.config.frontends[0].backends.len(), 2);
        let check = s.config.frontends[0].health.check_of("5301");
        assert_eq!(check.kind.code(), "dns");
        assert!(s.announce.interface.is_none());
        let flags = AnnounceFlags {
            interface: "udplb0",
            grace: None,
            lease: Some(Duration::from_secs(30)),
        };
        let addr = "127.0.0.1:9100".parse().unwrap();
        let s = Settings::new(command_line(&specs, None), RUN, Some(addr), Some(flags)).unwrap();
        assert_eq!(s.announce.interface.as_deref(), Some("udplb0"));
        assert_eq!(s.announce.grace, announce::DEFAULT_GRACE);
        assert_eq!(s.announce.lease, Duration::from_secs(30));
        assert_eq!(s.metrics, Some(addr));
    }

    #[test]
    fn refusals_name_their_input() {
        let specs = vec!["53=5301".to_string()];
        let e = Settings::new(command_line(&specs, Some("icmp")), RUN, None, None).unwrap_err();
        assert_eq!(e.0, "--health icmp: unknown check kind");
        // --announce needs an address on every frontend.
        let flags = AnnounceFlags {
            interface: "udplb0",
            grace: None,
            lease: None,
        };
        let e = Settings::new(command_line(&specs, None), RUN, None, Some(flags)).unwrap_err();
        assert!(e.0.starts_with("--announce: "), "{}", e.0);
        let e = Settings::new(Frontends::File("/nonexistent/lb.toml"), RUN, None, None);
        assert!(e.unwrap_err().0.starts_with("/nonexistent/lb.toml: "));
    }

    #[test]
    fn the_file_gives_metrics_unless_the_command_line_does() {
        let dir = std::env::temp_dir().join(format!("udplb-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lb.toml");
        let text = "interface = \"lo\"\nmetrics = \"127.0.0.1:9100\"\n\n\
                    [[frontend]]\nlisten = \"9875\"\nbackends = [\"9876\"]\n";
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        let s = Settings::new(Frontends::File(path), RUN, None, None).unwrap();
        assert_eq!(s.config_path.as_deref(), Some(path));
        assert_eq!(s.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        let flag = "127.0.0.1:9200".parse().unwrap();
        let s = Settings::new(Frontends::File(path), RUN, Some(flag), None).unwrap();
        assert_eq!(s.metrics, Some(flag));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
