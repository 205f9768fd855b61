//! Warnings printed at start for set-ups that load fine but will not work
//! as the operator expects.

use crate::config::Config;
use crate::warn;

fn sysctl_on(knob: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/{knob}")).is_ok_and(|v| v.trim() == "1")
}

/// Remote backends need the kernel to forward (bpf_fib_lookup refuses
/// otherwise): say so at once rather than let datagrams pile up in the
/// `fib_fwd_disabled` counter. A port-only frontend on a forwarding host
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
    if remote().any(|a| a.is_ipv4()) && !sysctl_on("net/ipv4/conf/all/accept_local") {
        warn!(
            "udplb: warning: net.ipv4.conf.all.accept_local is off: a reply the datapath hands to \
             the kernel (neighbour not resolved yet, MTU exceeded) has the frontend's local \
             address as its source and is dropped (sysctl -w net.ipv4.conf.all.accept_local=1)"
        );
    }
    for (v4, knob) in [
        (true, "net/ipv4/ip_forward"),
        (false, "net/ipv6/conf/all/forwarding"),
    ] {
        if remote().any(|a| a.is_ipv4() == v4) && !sysctl_on(knob) {
            let name = knob.replace('/', ".");
            warn!(
                "udplb: warning: {name} is off: datagrams for remote backends go to the kernel, \
                 which will not forward them (sysctl -w {name}=1)"
            );
        }
    }
}
