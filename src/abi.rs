//! Rust mirrors of the structs in include/udplb.h.
//!
//! The constants (limits, reason codes) are generated from the header by
//! build.rs, so they are defined once, in C. The structs are `#[repr(C)]`
//! with the same explicit padding; `tests` below checks their sizes and field
//! offsets against the types libbpf-cargo generated from the program's BTF.

use std::net::{Ipv4Addr, Ipv6Addr};

mod generated {
    #![allow(unused_parens)]
    include!(concat!(env!("OUT_DIR"), "/udplb_abi.rs"));
}
pub use generated::*;

pub const MAX_FRONTENDS: usize = UDPLB_MAX_FRONTENDS as usize;
pub const MAX_BACKENDS: usize = UDPLB_MAX_BACKENDS as usize;
pub const MAX_BACKEND_SLOTS: usize = UDPLB_MAX_BACKEND_SLOTS as usize;
pub const REASON_COUNT: usize = UDPLB_REASON_COUNT as usize;
pub const FLOW_COUNTER_COUNT: usize = UDPLB_FLOW_COUNTER_COUNT as usize;
pub const QUIC_COUNTER_COUNT: usize = UDPLB_QUIC_COUNTER_COUNT as usize;
pub const EGRESS_VERDICT_COUNT: usize = UDPLB_EGRESS_VERDICT_COUNT as usize;

/// `struct udplb_endpoint`: (family, address or wildcard, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub family: u8,
    pub pad: u8,
    pub port_be: u16,
    pub addr_be: [u32; 4],
}

/// `struct udplb_frontend`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frontend {
    pub id: u32,
    pub table: u32,
    pub ring_size: u32,
    pub sched: u32,
    pub flow_timeout_s: u32,
    pub quic_server_id_len: u8,
    pub quic_cid_len: u8,
    pub port_be: u16,
    /// The frontend's address as in its key (all zero: port-only).
    pub addr_be: [u32; 4],
    /// The ring itself, if it has at most UDPLB_INLINE_RING entries.
    pub ring: InlineRing,
}

/// `struct udplb_frontend.ring`. A literal length: rustc 1.95 fails
/// (an internal error) on a struct field sized by the generated constant.
pub type InlineRing = [u16; 16];
const _: () = assert!(UDPLB_INLINE_RING as usize == 16);
// bpf/lookup.h masks a position with UDPLB_INLINE_RING - 1, and the ring
// holds slots as u16.
const _: () = assert!(UDPLB_INLINE_RING.is_power_of_two());
const _: () = assert!(UDPLB_BACKEND_SLOTS <= 1 << 16);

/// `struct udplb_backend`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub ep: Endpoint,
    pub weight: u32,
    pub flags: u32,
    pub ident: u32,
    /// The frontend it serves, and that frontend's port (network order).
    pub frontend_id: u32,
    pub frontend_port_be: u16,
    /// UDPLB_BY_PORT_*: the families whose replies are keyed by its port.
    pub by_port: u8,
    pub pad: u8,
}

/// `struct udplb_reply_target`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyTarget {
    pub frontend: Endpoint,
    pub frontend_id: u32,
    /// The backend's slot: where its passive counters are.
    pub backend_slot: u32,
}

/// `struct udplb_passive`: what the datapath saw of one backend without
/// sending anything (per backend slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passive {
    /// ICMP destination unreachable (not fragmentation needed) about a
    /// datagram sent to the backend.
    pub icmp_errors: u64,
    /// Replies seen from the backend.
    pub replies: u64,
}

/// `struct udplb_flow_key`: a flow, client to frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub family: u8,
    pub pad: u8,
    pub client_port_be: u16,
    pub frontend_port_be: u16,
    pub pad2: u16,
    pub client_addr_be: [u32; 4],
    pub frontend_addr_be: [u32; 4],
}

/// `struct udplb_clock`: the datapath's jiffies and its measured CONFIG_HZ.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    pub jiffies: u64,
    pub hz: u64,
}

/// `struct udplb_flow`: a pin.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub slot: u32,
    pub ident: u32,
    pub frontend_id: u32,
    pub pad: u32,
    /// Jiffies of the last reply.
    pub last_seen: u64,
}

/// `struct udplb_quic_key`: (frontend, config rotation, server ID).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuicKey {
    pub frontend_id: u32,
    pub config_rotation: u8,
    pub server_id_len: u8,
    /// Zero past `server_id_len`.
    pub server_id: [u8; UDPLB_QUIC_MAX_SERVER_ID_LEN as usize + 1],
    pub pad: u16,
}

impl QuicKey {
    pub fn new(frontend_id: u32, config_rotation: u8, server_id: &[u8]) -> QuicKey {
        let mut key = QuicKey {
            frontend_id,
            config_rotation,
            server_id_len: server_id.len() as u8,
            ..QuicKey::default()
        };
        key.server_id[..server_id.len()].copy_from_slice(server_id);
        key
    }
}

/// `struct udplb_quic_target`: the backend holding a server ID.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuicTarget {
    pub slot: u32,
    pub ident: u32,
}

/// `struct udplb_counter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

// SAFETY: all of these are repr(C) plain integers with explicit padding, so
// every byte pattern is a valid value.
unsafe impl plain::Plain for Endpoint {}
unsafe impl plain::Plain for Frontend {}
unsafe impl plain::Plain for Backend {}
unsafe impl plain::Plain for ReplyTarget {}
unsafe impl plain::Plain for Counter {}
unsafe impl plain::Plain for Passive {}
unsafe impl plain::Plain for FlowKey {}
unsafe impl plain::Plain for Flow {}
unsafe impl plain::Plain for Clock {}
unsafe impl plain::Plain for QuicKey {}
unsafe impl plain::Plain for QuicTarget {}

/// The bytes of a value as the kernel sees them (map keys and values).
pub fn bytes_of<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain (repr(C), no references, no uninitialised padding).
    unsafe { plain::as_bytes(v) }
}

/// Reads a value from map bytes; `None` if there are too few.
pub fn from_bytes<T: plain::Plain + Default>(bytes: &[u8]) -> Option<T> {
    let mut v = T::default();
    plain::copy_from_bytes(&mut v, bytes).ok()?;
    Some(v)
}

impl Endpoint {
    /// The IPv4 wildcard (`None`) or an exact IPv4 address.
    pub fn ipv4(addr: Option<Ipv4Addr>, port: u16) -> Self {
        let mut addr_be = [0; 4];
        if let Some(a) = addr {
            addr_be[0] = u32::from_ne_bytes(a.octets());
        }
        Endpoint {
            family: UDPLB_FAMILY_IPV4 as u8,
            pad: 0,
            port_be: port.to_be(),
            addr_be,
        }
    }

    /// The IPv6 wildcard (`None`) or an exact IPv6 address.
    pub fn ipv6(addr: Option<Ipv6Addr>, port: u16) -> Self {
        let mut addr_be = [0; 4];
        if let Some(a) = addr {
            for (word, chunk) in addr_be.iter_mut().zip(a.octets().chunks_exact(4)) {
                *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        }
        Endpoint {
            family: UDPLB_FAMILY_IPV6 as u8,
            pad: 0,
            port_be: port.to_be(),
            addr_be,
        }
    }

    pub fn port(&self) -> u16 {
        u16::from_be(self.port_be)
    }

    /// Whether this is a port alone (every local address).
    pub fn is_wildcard(&self) -> bool {
        self.addr_be == [0; 4]
    }

    /// The same endpoint on another port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port_be = port.to_be();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::types;
    use std::mem::{offset_of, size_of};

    /// Fails if a mirror and its C struct differ in size or in any offset.
    macro_rules! same_layout {
        ($rust:ty, $c:ty, [$($rf:ident = $cf:ident),*]) => {
            assert_eq!(size_of::<$rust>(), size_of::<$c>(), "size of {}", stringify!($rust));
            $(assert_eq!(offset_of!($rust, $rf), offset_of!($c, $cf),
                "offset of {}.{}", stringify!($rust), stringify!($rf));)*
        };
    }

    #[test]
    fn mirrors_match_the_c_structs() {
        same_layout!(
            Endpoint,
            types::udplb_endpoint,
            [
                family = family,
                pad = pad,
                port_be = port_be,
                addr_be = addr_be
            ]
        );
        same_layout!(
            Frontend,
            types::udplb_frontend,
            [
                id = id,
                table = table,
                ring_size = ring_size,
                sched = sched,
                flow_timeout_s = flow_timeout_s,
                quic_server_id_len = quic_server_id_len,
                quic_cid_len = quic_cid_len,
                port_be = port_be,
                addr_be = addr_be,
                ring = ring
            ]
        );
        same_layout!(
            Backend,
            types::udplb_backend,
            [
                ep = ep,
                weight = weight,
                flags = flags,
                ident = ident,
                frontend_id = frontend_id,
                frontend_port_be = frontend_port_be,
                by_port = by_port
            ]
        );
        same_layout!(
            ReplyTarget,
            types::udplb_reply_target,
            [
                frontend = frontend,
                frontend_id = frontend_id,
                backend_slot = backend_slot
            ]
        );
        same_layout!(
            Passive,
            types::udplb_passive,
            [icmp_errors = icmp_errors, replies = replies]
        );
        same_layout!(
            FlowKey,
            types::udplb_flow_key,
            [
                family = family,
                pad = pad,
                client_port_be = client_port_be,
                frontend_port_be = frontend_port_be,
                pad2 = pad2,
                client_addr_be = client_addr_be,
                frontend_addr_be = frontend_addr_be
            ]
        );
        same_layout!(Clock, types::udplb_clock, [jiffies = jiffies, hz = hz]);
        same_layout!(
            Flow,
            types::udplb_flow,
            [
                slot = slot,
                ident = ident,
                frontend_id = frontend_id,
                pad = pad,
                last_seen = last_seen
            ]
        );
        same_layout!(
            QuicKey,
            types::udplb_quic_key,
            [
                frontend_id = frontend_id,
                config_rotation = config_rotation,
                server_id_len = server_id_len,
                server_id = server_id,
                pad = pad
            ]
        );
        same_layout!(
            QuicTarget,
            types::udplb_quic_target,
            [slot = slot, ident = ident]
        );
        same_layout!(
            Counter,
            types::udplb_counter,
            [packets = packets, bytes = bytes]
        );
    }

    #[test]
    fn reason_names_cover_every_reason() {
        assert_eq!(REASON_NAMES.len(), REASON_COUNT);
        assert_eq!(REASON_NAMES[UDPLB_REASON_BALANCED as usize], "balanced");
        assert_eq!(REASON_NAMES[UDPLB_REASON_IPV6_EXT as usize], "ipv6_ext");
        assert_eq!(FLOW_COUNTER_NAMES.len(), FLOW_COUNTER_COUNT);
        assert_eq!(
            FLOW_COUNTER_NAMES[UDPLB_FLOW_PIN_CREATED as usize],
            "pin_created"
        );
        assert_eq!(EGRESS_VERDICT_NAMES.len(), EGRESS_VERDICT_COUNT);
        assert_eq!(EGRESS_VERDICT_NAMES[UDPLB_EGRESS_REPLY as usize], "reply");
        assert_eq!(
            EGRESS_VERDICT_NAMES[UDPLB_EGRESS_UNTOUCHED as usize],
            "untouched"
        );
        assert_eq!(QUIC_COUNTER_NAMES.len(), QUIC_COUNTER_COUNT);
        assert_eq!(
            QUIC_COUNTER_NAMES[UDPLB_QUIC_CLIENT_CID as usize],
            "client_cid"
        );
    }

    #[test]
    fn endpoints_store_network_order() {
        let ep = Endpoint::ipv4(Some(Ipv4Addr::new(198, 18, 0, 1)), 9875);
        assert_eq!(
            bytes_of(&ep),
            [4, 0, 0x26, 0x93, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        let ep6 = Endpoint::ipv6(Some("2001:2::1".parse().unwrap()), 53);
        assert_eq!(&bytes_of(&ep6)[2..8], [0, 53, 0x20, 0x01, 0, 2]);
        assert_eq!(bytes_of(&ep6)[19], 1);
    }
}
