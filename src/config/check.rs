//! The rules a configuration must pass before the datapath sees it, one
//! function per kind; [`Config::check`](super::Config::check) runs them in
//! order. See README "Limits".

use std::collections::HashMap;
use std::net::IpAddr;

use super::backend::check_remote_backend_addr;
use super::listen::check_frontend_addr;
use super::ring_len;
use super::{BackendConfig, FrontendConfig, Hash, Listen, Mode, Sched};
use crate::abi::{
    Endpoint, MAX_BACKENDS, MAX_BACKEND_SLOTS, MAX_FRONTENDS, UDPLB_MAX_RING,
    UDPLB_MAX_RING_ENTRIES, UDPLB_MAX_WEIGHT,
};
use crate::error::UsageError;
use crate::usage;

/// An error about the frontend of that index, or (`None`) about them all.
pub(super) type Refusal = (Option<usize>, UsageError);

/// At least one frontend, at most MAX_FRONTENDS.
pub(super) fn frontend_count(frontends: &[FrontendConfig]) -> Result<(), UsageError> {
    if frontends.is_empty() {
        return Err(usage!("no frontends given"));
    }
    if frontends.len() > MAX_FRONTENDS {
        return Err(usage!(
            "{} frontends given; the limit is {MAX_FRONTENDS}",
            frontends.len()
        ));
    }
    Ok(())
}

/// What the frontends listen on: the datapath's keys and the ports.
pub(super) struct Listening {
    keys: HashMap<Endpoint, Listen>,
    ports: HashMap<u16, Listen>,
}

impl Listening {
    /// Every frontend's address can appear in a packet, and no two
    /// frontends share a datapath key.
    pub(super) fn of(frontends: &[FrontendConfig]) -> Result<Listening, Refusal> {
        let mut keys: HashMap<Endpoint, Listen> = HashMap::new();
        let mut ports: HashMap<u16, Listen> = HashMap::new();
        for (i, fe) in frontends.iter().enumerate() {
            if let Some(Err(why)) = fe.listen.addr.map(check_frontend_addr) {
                return Err((Some(i), usage!("frontend {}: {why}", fe.listen)));
            }
            for key in fe.listen.endpoints() {
                if let Some(other) = keys.insert(key, fe.listen) {
                    return Err((
                        Some(i),
                        usage!("frontend {} duplicates frontend {other}", fe.listen),
                    ));
                }
            }
            ports.insert(fe.listen.port, fe.listen);
        }
        Ok(Listening { keys, ports })
    }
}

/// One frontend's rules, in the order its errors take precedence.
pub(super) fn frontend(
    fe: &FrontendConfig,
    listening: &Listening,
    owners: &mut Owners,
) -> Result<(), UsageError> {
    backend_count(fe)?;
    dsr_frontend(fe)?;
    for b in &fe.backends {
        backend_target(fe, b, listening)?;
        owners.claim(fe, b)?;
    }
    fe.check_quic().map_err(|(_, e)| UsageError(e))?;
    hash(fe)?;
    table_size(fe)
}

/// Hashing by client needs a scheduler that hashes: round robin has no
/// hash to choose.
fn hash(fe: &FrontendConfig) -> Result<(), UsageError> {
    match fe.hash {
        Hash::Client { .. } if !fe.sched.hashes() => Err(usage!(
            "frontend {}: hash = \"{}\" needs a scheduler that hashes (maglev or quic), \
             not {}",
            fe.listen,
            fe.hash.code(),
            fe.sched.code()
        )),
        _ => Ok(()),
    }
}

/// Direct server return: the backends own the frontend's address and answer
/// from it, so the frontend has one.
fn dsr_frontend(fe: &FrontendConfig) -> Result<(), UsageError> {
    if fe.mode.is_dsr() && fe.listen.addr.is_none_or(|a| a.is_unspecified()) {
        return Err(usage!(
            "frontend {}: mode {} needs the frontend's address, which the backends own \
             and answer from (IPv4:PORT or [IPv6]:PORT)",
            fe.listen,
            fe.mode
        ));
    }
    Ok(())
}

/// A backend in a DSR mode gets the datagram as the client sent it: on
/// another host (checked before), at the frontend's port, and for ipip or
/// gue with a tunnel source of its family for the outer header.
fn dsr_backend(fe: &FrontendConfig, b: &BackendConfig, addr: IpAddr) -> Result<(), UsageError> {
    if !fe.mode.is_dsr() {
        return Ok(());
    }
    if b.port != fe.listen.port {
        return Err(usage!(
            "frontend {}: backend {b}: in mode {} the backend gets the datagram as the \
             client sent it, to port {}; list it as {}",
            fe.listen,
            fe.mode,
            fe.listen.port,
            BackendConfig {
                port: fe.listen.port,
                ..*b
            }
        ));
    }
    // The backends' decapsulation socket would take the datagram itself
    // and decapsulate the client's payload: any IP packet, any source.
    if fe.mode
        == (Mode::Gue {
            port: fe.listen.port,
        })
    {
        return Err(usage!(
            "frontend {}: mode {} decapsulates on the service's own port; the backends' \
             GUE port must be another",
            fe.listen,
            fe.mode
        ));
    }
    let tunnel = fe
        .tunnels
        .for_backend(addr)
        .filter(|_| fe.mode.encapsulates());
    let own = |t: &super::Tunnel| t.covers(addr) || fe.listen.addr.is_some_and(|a| t.covers(a));
    if let Some(t) = tunnel.filter(own) {
        return Err(usage!(
            "frontend {}: tunnel source {t} covers the frontend's or backend {b}'s address: \
             the backend drops packets from its own addresses",
            fe.listen
        ));
    }
    if fe.mode.encapsulates() && tunnel.is_none() {
        return Err(usage!(
            "frontend {}: backend {b} needs an {} tunnel source for the outer header \
             (--tunnel-source, or tunnel_source in the file)",
            fe.listen,
            if addr.is_ipv4() { "IPv4" } else { "IPv6" }
        ));
    }
    Ok(())
}

/// At most MAX_BACKENDS backends on one frontend.
fn backend_count(fe: &FrontendConfig) -> Result<(), UsageError> {
    let n = fe.backends.len();
    if n > MAX_BACKENDS {
        return Err(usage!(
            "frontend {}: {n} backends given; the limit is {MAX_BACKENDS}",
            fe.listen
        ));
    }
    Ok(())
}

/// A backend is somewhere datagrams can go and not come back: a remote one
/// is one host of the frontend's family, behind a frontend with an address
/// to reply from; neither kind is a frontend.
fn backend_target(
    fe: &FrontendConfig,
    b: &BackendConfig,
    listening: &Listening,
) -> Result<(), UsageError> {
    let port = b.port;
    let Some(addr) = b.addr else {
        if fe.mode.is_dsr() {
            return Err(usage!(
                "frontend {}: backend {port} is a port on this host; mode {} sends \
                 requests to other hosts (IPv4:PORT or [IPv6]:PORT)",
                fe.listen,
                fe.mode
            ));
        }
        return match listening.ports.get(&port) {
            Some(f) => Err(usage!(
                "frontend {}: backend {port} is also frontend {f}: datagrams would loop",
                fe.listen
            )),
            None => Ok(()),
        };
    };
    if let Err(why) = check_remote_backend_addr(addr) {
        return Err(usage!("frontend {}: backend {b} {why}", fe.listen));
    }
    let same_family = fe
        .listen
        .addr
        .is_some_and(|a| a.is_ipv4() == addr.is_ipv4());
    if fe.listen.addr.is_none_or(|a| a.is_unspecified()) {
        return Err(usage!(
            "frontend {}: backend {b} is on another host, so the frontend needs \
             an address (IPv4:PORT or [IPv6]:PORT) for its replies to come from",
            fe.listen
        ));
    }
    // Encapsulated, a datagram may travel in an outer header of the
    // backend's family.
    if !same_family && !fe.mode.encapsulates() {
        return Err(usage!(
            "frontend {}: backend {b} is of another address family",
            fe.listen
        ));
    }
    dsr_backend(fe, b, addr)?;
    if listening.keys.contains_key(&b.endpoint()) {
        return Err(usage!(
            "frontend {}: backend {b} is a frontend: datagrams would loop",
            fe.listen
        ));
    }
    Ok(())
}

/// Which frontend each backend (address and port) serves.
#[derive(Default)]
pub(super) struct Owners(HashMap<(Option<IpAddr>, u16), Listen>);

impl Owners {
    /// A backend serves one frontend, and is listed there once: the
    /// balancer tells its replies apart by its address and port alone.
    pub(super) fn claim(
        &mut self,
        fe: &FrontendConfig,
        b: &BackendConfig,
    ) -> Result<(), UsageError> {
        let name = BackendConfig {
            weight: 1,
            server_id: None,
            ..*b
        };
        match self.0.insert(b.id(), fe.listen) {
            Some(prev) if prev == fe.listen => Err(usage!(
                "frontend {}: backend {name} is listed twice",
                fe.listen
            )),
            Some(prev) => Err(usage!(
                "backend {name} serves both frontend {prev} and frontend {}: its \
                 replies could not be told apart",
                fe.listen
            )),
            None => Ok(()),
        }
    }
}

// A round-robin cycle (sum of weights) always fits in the largest ring.
const _: () = assert!(UDPLB_MAX_WEIGHT as u64 * MAX_BACKENDS as u64 <= UDPLB_MAX_RING as u64);

/// A Maglev table has more entries than the frontend has backends. Round
/// robin needs no check: weights <= UDPLB_MAX_WEIGHT over at most
/// MAX_BACKENDS backends fit in UDPLB_MAX_RING (asserted above).
fn table_size(fe: &FrontendConfig) -> Result<(), UsageError> {
    let n = fe.backends.len();
    match fe.sched {
        Sched::Maglev | Sched::Quic if fe.table_size as usize <= n => Err(usage!(
            "frontend {}: a maglev table of {} entries cannot hold {n} backends; \
             use a larger --table-size",
            fe.listen,
            fe.table_size
        )),
        _ => Ok(()),
    }
}

/// No backend's service port is the GUE port of a gue frontend with a
/// backend on the same host: that host's decapsulation socket would take
/// the datagrams for the service, and the client's payload for a packet.
pub(super) fn gue_ports(frontends: &[FrontendConfig]) -> Result<(), Refusal> {
    let decap: Vec<(IpAddr, u16, Listen)> = (frontends.iter())
        .filter_map(|fe| match fe.mode {
            Mode::Gue { port } => Some((fe, port)),
            _ => None,
        })
        .flat_map(|(fe, port)| {
            fe.backends
                .iter()
                .filter_map(move |b| Some((b.addr?, port, fe.listen)))
        })
        .collect();
    for (i, fe) in frontends.iter().enumerate() {
        for b in &fe.backends {
            let clash = decap
                .iter()
                .find(|(a, p, _)| b.addr == Some(*a) && b.port == *p);
            if let Some((_, port, other)) = clash {
                return Err((
                    Some(i),
                    usage!(
                        "frontend {}: backend {b} is on port {port}, where frontend {other} \
                         has that host decapsulate GUE",
                        fe.listen
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The sums over all frontends: backend slots, and ring entries (every one
/// costs kernel memory and time to write: cap the sum, not just each
/// table).
pub(super) fn totals(frontends: &[FrontendConfig]) -> Result<(), UsageError> {
    let total: usize = frontends.iter().map(|fe| fe.backends.len()).sum();
    if total > MAX_BACKEND_SLOTS {
        return Err(usage!(
            "{total} backends over all frontends; the limit is {MAX_BACKEND_SLOTS}"
        ));
    }
    let entries: u64 = frontends.iter().map(ring_len).sum();
    if entries > UDPLB_MAX_RING_ENTRIES as u64 {
        return Err(usage!(
            "the frontends' rings hold {entries} entries in all; the limit is \
             {UDPLB_MAX_RING_ENTRIES} (8 bytes of kernel memory each): use smaller \
             --table-size values or fewer frontends"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::abi::{MAX_BACKENDS, MAX_FRONTENDS, UDPLB_MAX_RING, UDPLB_MAX_RING_ENTRIES};
    use crate::config::refused as err;
    use crate::config::ring_len;
    use crate::config::{Config, Defaults, Sched};

    #[test]
    fn duplicates_and_loops() {
        assert!(err(&["9875=9876", "9875=9877"]).contains("duplicates"));
        assert!(err(&["9875=9876", "0.0.0.0:9875=9877"]).contains("duplicates"));
        assert!(err(&["9875=9876", "[::]:9875=9877"]).contains("duplicates"));
        assert!(err(&["9875=9875"]).contains("loop"));
        assert!(err(&["9875=9876", "9876=9877"]).contains("loop"));
        assert!(err(&["9875=9876", "9000=9876"]).contains("serves both"));
        // An exact address beside the wildcard is allowed: the exact one wins.
        Config::from_specs(&["9875=9876", "127.0.0.2:9875=9877"]).unwrap();
        // The same port on two families' explicit wildcards is two frontends.
        Config::from_specs(&["0.0.0.0:9875=9876", "[::]:9875=9877"]).unwrap();
    }

    #[test]
    fn addresses_that_can_never_work() {
        let e = err(&["[::ffff:198.18.0.1]:53=9876"]);
        assert!(
            e.contains("frontend [::ffff:198.18.0.1]:53") && e.contains("IPv4-mapped"),
            "{e}"
        );
        for (spec, why) in [
            ("198.18.0.1:53=224.0.0.1:53", "multicast"),
            ("198.18.0.1:53=239.1.2.3:53", "multicast"),
            ("198.18.0.1:53=255.255.255.255:53", "broadcast"),
            ("198.18.0.1:53=127.0.0.2:53", "loopback"),
            ("[2001:2::1]:53=[ff02::1]:53", "multicast"),
            ("[2001:2::1]:53=[::1]:53", "loopback"),
            ("[2001:2::1]:53=[::ffff:198.18.1.2]:53", "IPv4-mapped"),
        ] {
            let e = err(&[spec]);
            let (front, back) = spec.split_once('=').unwrap();
            assert!(
                e.contains(&format!("frontend {front}: backend {back}")) && e.contains(why),
                "{spec}: {e}"
            );
        }
        // A loopback frontend is fine: it is local.
        Config::from_specs(&["127.0.0.1:53=9876"]).unwrap();
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..=MAX_BACKENDS)
            .map(|i| (20000 + i).to_string())
            .collect();
        let spec = format!("9875={}", many.join(","));
        assert!(err(&[&spec]).contains(&format!("the limit is {MAX_BACKENDS}")));
        let at_limit = format!("9875={}", many[..MAX_BACKENDS].join(","));
        Config::from_specs(&[at_limit]).unwrap();

        let fronts: Vec<String> = (0..=MAX_FRONTENDS)
            .map(|i| format!("{}={}", 1000 + i, 30000 + i))
            .collect();
        let refs: Vec<&str> = fronts.iter().map(String::as_str).collect();
        assert!(err(&refs).contains(&format!("the limit is {MAX_FRONTENDS}")));
        Config::from_specs(&refs[..MAX_FRONTENDS]).unwrap();
    }

    #[test]
    fn ring_entries_over_all_frontends_are_capped() {
        let maglev = |n: usize, table_size: u32| {
            let specs: Vec<String> = (0..n)
                .map(|i| format!("{}={}", 1000 + i, 30000 + i))
                .collect();
            let defaults = Defaults {
                sched: Sched::Maglev,
                table_size,
                ..Defaults::default()
            };
            Config::from_specs_with(&specs, defaults)
        };
        // Every frontend at the default size fits...
        maglev(MAX_FRONTENDS, crate::abi::UDPLB_DEFAULT_MAGLEV_SIZE).unwrap();
        // ...but not 17 of the largest rings (2.1 GB at 256 of them).
        let e = maglev(17, UDPLB_MAX_RING).unwrap_err().to_string();
        let total = 17 * UDPLB_MAX_RING as u64;
        assert!(
            e.contains(&format!(
                "{total} entries in all; the limit is {UDPLB_MAX_RING_ENTRIES}"
            )),
            "{e}"
        );
        // Round-robin cycles count too.
        let rr = Config::from_specs(&["9875=9876@1000,9877@999"]).unwrap();
        assert_eq!(ring_len(&rr.frontends[0]), 1999);
    }
}
