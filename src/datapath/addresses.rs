//! The frontend addresses udplb announces: added to and removed from one
//! interface (a dummy, or lo) over rtnetlink (RTM_NEWADDR / RTM_DELADDR /
//! RTM_GETADDR), typed by the rust-netlink project's
//! `netlink-packet-route`, asked through [`Requester`](super::netlink::Requester).
//!
//! Every address udplb adds carries [`PROTO`] as its address protocol
//! (IFA_PROTO, Linux 6.1+; `ip addr` shows `proto 0x75`), which is how udplb
//! tells its own addresses from anyone else's: it only ever removes or
//! refreshes an address with that mark. Each also gets a finite lifetime
//! (the lease), which udplb refreshes while it runs: after a SIGKILL the
//! kernel removes it when the lease runs out.
//!
//! Each request is acknowledged by the kernel before the call returns; it
//! never waits for anything outside the kernel.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
    AddressScope, CacheInfo,
};
use netlink_packet_route::{AddressFamily as Family, RouteNetlinkMessage};
use nix::errno::Errno;
use nix::sys::socket::SockProtocol;

use super::netlink::Requester;

/// The address protocol (IFA_PROTO) that marks udplb's addresses: 0x75,
/// 'u'. The kernel's own values are 0-3.
pub const PROTO: u8 = 0x75;

/// One address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present {
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// Marked with [`PROTO`]: udplb added it.
    pub ours: bool,
    /// When it was last added or given a lease (IFA_CACHEINFO's tstamp,
    /// hundredths of a second since boot; 0 if the kernel gave none): which
    /// udplb wrote it last, when two announce the same address.
    pub stamp: u32,
}

/// An rtnetlink socket for address requests, opened once.
pub struct Addresses {
    nl: Requester,
}

/// What [`Addresses::add`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Added now (or refreshed: it was ours already).
    Ours,
    /// The address is there already and is not ours: left alone.
    Foreign,
}

impl Addresses {
    pub fn open() -> Result<Addresses> {
        let nl = Requester::open(SockProtocol::NetlinkRoute, "addresses")?;
        Ok(Addresses { nl })
    }

    /// Every address on interface `ifindex`.
    pub fn list(&mut self, ifindex: u32) -> Result<Vec<Present>> {
        let mut out = Vec::new();
        for family in [Family::Inet, Family::Inet6] {
            let mut msg = AddressMessage::default();
            msg.header.family = family;
            msg.header.index = ifindex;
            let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
            for m in replies {
                let RouteNetlinkMessage::NewAddress(a) = m else {
                    continue;
                };
                if a.header.index != ifindex {
                    continue;
                }
                let addr = a.attributes.iter().find_map(|x| match x {
                    // IFA_LOCAL is the address itself where it differs
                    // from IFA_ADDRESS (point-to-point); prefer it.
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = addr.or_else(|| {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
                let ours = a
                    .attributes
                    .iter()
                    .any(|x| matches!(x, AddressAttribute::Protocol(p) if u8::from(*p) == PROTO));
                let stamp = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::CacheInfo(c) => Some(c.tstamp),
                    _ => None,
                });
                if let Some(addr) = addr {
                    out.push(Present {
                        addr,
                        prefix_len: a.header.prefix_len,
                        ours,
                        stamp: stamp.unwrap_or(0),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Adds `addr` (/32 or /128) to `ifindex`, marked as ours, expiring
    /// after `lease`; an address of ours already there gets a fresh lease.
    /// One that is not ours is left as it is.
    pub fn add(&mut self, ifindex: u32, addr: IpAddr, lease: Duration) -> Result<Added> {
        match self.new_address(ifindex, addr, lease, NLM_F_CREATE | NLM_F_EXCL) {
            Ok(()) => Ok(Added::Ours),
            Err(e) if e.downcast_ref::<Errno>() == Some(&Errno::EEXIST) => {
                if self.is_ours(ifindex, addr)? {
                    self.refresh(ifindex, addr, lease)?;
                    Ok(Added::Ours)
                } else {
                    Ok(Added::Foreign)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A fresh lease for an address of ours (the caller knows it is).
    pub fn refresh(&mut self, ifindex: u32, addr: IpAddr, lease: Duration) -> Result<()> {
        self.new_address(ifindex, addr, lease, NLM_F_REPLACE)
    }

    /// Removes `addr` from `ifindex` if it is ours; true if it was there.
    pub fn remove(&mut self, ifindex: u32, addr: IpAddr) -> Result<bool> {
        if !self.is_ours(ifindex, addr)? {
            return Ok(false);
        }
        let msg = message(ifindex, addr);
        match self.request(RouteNetlinkMessage::DelAddress(msg), 0) {
            Ok(_) => Ok(true),
            // Expired or removed meanwhile.
            Err(e) if e.downcast_ref::<Errno>() == Some(&Errno::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {addr} (ifindex {ifindex})")),
        }
    }

    fn is_ours(&mut self, ifindex: u32, addr: IpAddr) -> Result<bool> {
        Ok(self
            .list(ifindex)?
            .iter()
            .any(|p| p.addr == addr && p.ours && p.prefix_len == host_prefix(addr)))
    }

    fn new_address(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        lease: Duration,
        flags: u16,
    ) -> Result<()> {
        let mut msg = message(ifindex, addr);
        let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX).max(1);
        let mut lifetime = CacheInfo::default();
        (lifetime.ifa_preferred, lifetime.ifa_valid) = (secs, secs);
        msg.attributes.push(AddressAttribute::CacheInfo(lifetime));
        msg.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(PROTO)));
        if addr.is_ipv6() {
            // Usable at once: no duplicate address detection on a dummy.
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(RouteNetlinkMessage::NewAddress(msg), flags)
            .map(|_| ())
    }

    /// Sends one request and reads until its acknowledgement (or the end of
    /// its dump): the messages that came back, or the kernel's errno.
    fn request(
        &mut self,
        inner: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.nl.request(inner, NLM_F_ACK | flags)
    }
}

/// /32 or /128.
pub fn host_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The header and address attributes of `addr` as a host route on `ifindex`.
fn message(ifindex: u32, addr: IpAddr) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = match addr {
        IpAddr::V4(_) => Family::Inet,
        IpAddr::V6(_) => Family::Inet6,
    };
    msg.header.prefix_len = host_prefix(addr);
    msg.header.flags = AddressHeaderFlags::empty();
    msg.header.scope = AddressScope::Universe;
    msg.header.index = ifindex;
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_address_request_is_what_ip_addr_add_sends() {
        let m = message(7, "198.18.100.1".parse().unwrap());
        assert_eq!((m.header.prefix_len, m.header.index), (32, 7));
        assert_eq!(m.header.family, Family::Inet);
        let m = message(7, "2001:2:100::1".parse().unwrap());
        assert_eq!((m.header.prefix_len, m.header.family), (128, Family::Inet6));
    }
}
