//! The command line. `udplb [OPTIONS] <IFACE> <FRONTEND=BACKENDS>...`

use clap::Parser;

use crate::attach::XdpMode;

/// UDP load balancer with an XDP datapath.
///
/// Datagrams arriving on IFACE for a FRONTEND are sent round-robin to its
/// BACKENDS; replies from a backend leave from the frontend's port.
///
/// Example: udplb lo 9875=9876,9877,9878
#[derive(Debug, Parser)]
#[command(name = "udplb", version, about, long_about = None, after_help = GRAMMAR)]
pub struct Args {
    /// Interface to attach to, e.g. lo or eth0
    #[arg(value_name = "IFACE")]
    pub iface: String,

    /// A frontend and its backends: PORT, IPv4:PORT or [IPv6]:PORT, then '=',
    /// then comma-separated local backend ports
    #[arg(value_name = "FRONTEND=BACKENDS", required = true)]
    pub frontends: Vec<String>,

    /// XDP attach mode
    #[arg(long, value_enum, default_value_t = XdpMode::Auto, value_name = "MODE")]
    pub xdp_mode: XdpMode,

    /// Replace an XDP program already attached to IFACE
    #[arg(long)]
    pub force: bool,

    /// Print per-backend and per-verdict counters every SECS seconds
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub stats: Option<u64>,

    /// More output: -v shows libbpf warnings, -vv libbpf debug output
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

const GRAMMAR: &str = "\
Frontends:
  9875                  port 9875 on every local IPv4 and IPv6 address
  198.18.0.1:53         one IPv4 address (beats a port-only frontend)
  [2001:2::1]:53        one IPv6 address
Backends: local ports, e.g. 9876,9877,9878 (each port belongs to one frontend)";

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
        assert_eq!(a.iface, "lo");
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
