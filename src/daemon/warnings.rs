//! Warnings printed at start (and, for [`sockets`], after each reload that
//! changes something) for set-ups that load fine but will not work as the
//! operator expects.

use std::net::IpAddr;

use crate::config::Config;
use crate::datapath::sockets::Bound;
use crate::warn;

fn sysctl_on(knob: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/{knob}")).is_ok_and(|v| v.trim() == "1")
}

/// Remote backends need the kernel to forward (bpf_fib_lookup refuses
/// otherwise, in every mode): say so at once rather than let datagrams
/// pile up in the `fib_fwd_disabled` or `dsr_unsent` counter. A port-only frontend on a forwarding host
/// also matches datagrams passing through.
pub fn forwarding(config: &Config) {
    if sysctl_on("net/ipv4/ip_forward") || sysctl_on("net/ipv6/conf/all/forwarding") {
        for fe in config
            .frontends
            .iter()
            .filter(|f| f.listen.addr.is_none_or(|a| a.is_unspecified()))
        {
            warn!(
                "udplb: warning: this host forwards packets, and frontend {} matches its port on \
                 every address, also in datagrams passing through; give it an address",
                fe.listen
            );
        }
    }
    let remote = || {
        config
            .frontends
            .iter()
            .flat_map(|f| &f.backends)
            .filter_map(|b| b.addr)
    };
    for (v4, knob) in [
        (true, "net/ipv4/ip_forward"),
        (false, "net/ipv6/conf/all/forwarding"),
    ] {
        if remote().any(|a| a.is_ipv4() == v4) && !sysctl_on(knob) {
            let name = knob.replace('/', ".");
            warn!(
                "udplb: warning: {name} is off: datagrams for remote backends cannot be routed \
                 (XDP's FIB lookup needs forwarding): NAT hands them to a kernel that will not \
                 forward them, direct server return drops them (sysctl -w {name}=1)"
            );
        }
    }
}

/// Set-ups that load fine but surprise: a frontend port a local socket
/// listens on (udplb takes its datagrams), a local backend port with nothing
/// bound (its datagrams are refused), a remote backend that is this host
/// (its traffic is delivered here, not forwarded). One line each.
pub fn sockets(config: &Config, bound: &[Bound], own: &[IpAddr]) -> Vec<String> {
    let mut out = Vec::new();
    let covers = |listen: Option<IpAddr>, port: u16, b: &Bound| {
        b.1 == port
            && match listen {
                None => true,
                Some(a) => a == b.0 || b.0.is_unspecified() || a.is_unspecified(),
            }
    };
    for fe in &config.frontends {
        if let Some(b) = bound
            .iter()
            .find(|b| covers(fe.listen.addr, fe.listen.port, b))
        {
            let at = match b.0 {
                IpAddr::V6(a) => format!("[{a}]:{}", b.1),
                a => format!("{a}:{}", b.1),
            };
            out.push(format!(
                "udplb: warning: frontend {}: a local socket listens on {at}; udplb sends its \
                 datagrams to the backends instead",
                fe.listen
            ));
        }
        for be in &fe.backends {
            match be.addr {
                None if !bound.iter().any(|b| b.1 == be.port) => out.push(format!(
                    "udplb: warning: frontend {}: nothing listens on local backend port {}; \
                     datagrams sent there are refused",
                    fe.listen, be.port
                )),
                Some(a) if own.contains(&a) => out.push(format!(
                    "udplb: warning: frontend {}: backend {} is an address of this host; its \
                     datagrams are delivered here, not forwarded",
                    fe.listen,
                    be.name()
                )),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn each_foot_gun_gets_one_line() {
        let config = Config::from_specs(&[
            "9875=9876,9877",
            "198.18.0.1:53=198.18.1.2:53,198.18.0.9:53",
        ])
        .unwrap();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let bound = [(lo, 9875), (lo, 9876), (any, 53)];
        let own = [IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9))];
        let w = sockets(&config, &bound, &own);
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].contains("frontend *:9875: a local socket listens on 127.0.0.1:9875"));
        assert!(w[1].contains("nothing listens on local backend port 9877"));
        assert!(w[2].contains("frontend 198.18.0.1:53: a local socket listens on 0.0.0.0:53"));
        assert!(w[3].contains("backend 198.18.0.9:53 is an address of this host"));
        // All well: nothing to say.
        let quiet = Config::from_specs(&["9875=9876"]).unwrap();
        assert!(sockets(&quiet, &[(lo, 9876)], &[]).is_empty());
    }
}
