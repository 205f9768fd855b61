//! Next hops of direct server return that have no neighbour entry yet.
//!
//! A request sent in XDP (bpf/dsr.h) never makes the kernel resolve a
//! neighbour, and the kernel cannot send it instead (it would take the
//! request for this host, or drop an encapsulated one with this host's
//! source address as a martian). So the datapath notes such a next hop in
//! the dsr_neigh map and drops the request; the daemon takes the notes
//! and asks the kernel to resolve each one as if a packet were waiting for
//! it: RTM_NEWNEIGH with NTF_USE (`ip neigh replace ADDR dev DEV use`).
//! The kernel solicits the neighbour and answers at once; the requests
//! after the answer go.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};
use libbpf_rs::MapCore;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily as Family, RouteNetlinkMessage};
use nix::sys::socket::SockProtocol;

use super::netlink::Requester;
use super::Datapath;
use crate::abi::{self, NeighKey, UDPLB_FAMILY_IPV4};

impl Datapath {
    /// The next hops (ifindex, address) noted since the last call, taken
    /// out of dsr_neigh: a next hop still unresolved is noted again by the
    /// next request to it.
    pub fn unresolved_neighbours(&self) -> Result<Vec<(u32, IpAddr)>> {
        let map = &self.skel.maps.dsr_neigh;
        let keys: Vec<Vec<u8>> = map.keys().collect();
        let mut out = Vec::new();
        for k in keys {
            let _ = map.delete(&k);
            let Some(key) = abi::from_bytes::<NeighKey>(&k) else {
                continue;
            };
            out.push((key.ifindex, address(&key)));
        }
        Ok(out)
    }
}

fn address(k: &NeighKey) -> IpAddr {
    if u32::from(k.family) == UDPLB_FAMILY_IPV4 {
        return Ipv4Addr::from(k.addr_be[0].to_ne_bytes()).into();
    }
    let mut b = [0u8; 16];
    for (i, w) in k.addr_be.iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Ipv6Addr::from(b).into()
}

/// An rtnetlink socket for resolution requests, opened once.
pub struct Resolver {
    nl: Requester,
}

impl Resolver {
    pub fn open() -> Result<Resolver> {
        Ok(Resolver {
            nl: Requester::open(SockProtocol::NetlinkRoute, "neighbour resolution")?,
        })
    }

    /// Asks the kernel to resolve `addr` on interface `ifindex`: it creates
    /// the entry if there is none and solicits it (NTF_USE). Acknowledged
    /// before it returns; never waits for the neighbour's answer.
    pub fn resolve(&mut self, ifindex: u32, addr: IpAddr) -> Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = if addr.is_ipv4() {
            Family::Inet
        } else {
            Family::Inet6
        };
        msg.header.ifindex = ifindex;
        msg.header.state = NeighbourState::None;
        msg.header.flags = NeighbourFlags::Use;
        msg.attributes
            .push(NeighbourAttribute::Destination(match addr {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        self.nl
            .request(
                RouteNetlinkMessage::NewNeighbour(msg),
                NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            )
            .with_context(|| format!("asking the kernel to resolve {addr} (ifindex {ifindex})"))?;
        Ok(())
    }
}
