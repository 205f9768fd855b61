//! Rust mirrors of the structs in include/udplb.h.
//!
//! The constants (limits, reason codes) are generated from the header by
//! build.rs, so they are defined once, in C. The structs are `#[repr(C)]`
//! with the same explicit padding; `plain_mirror!` below proves at compile
//! time that their sizes and field offsets are those of the types
//! libbpf-cargo generated from the program's BTF, with no padding.

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
    pub ring_id: u32,
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
    /// 0: hash the flow; else the client's address (IPv6: this many bits).
    pub client_bits: u8,
    /// UDPLB_MODE_*: how requests reach the backends.
    pub mode: u8,
    /// UDPLB_MODE_GUE: the backends' decapsulation port (network order).
    pub gue_port_be: u16,
    /// Outer sources of encapsulated requests: IPv4, IPv6.
    pub tunnel: [TunnelSource; 2],
}

/// `struct udplb_tunnel_source`: the outer source of encapsulated
/// requests of one family; the bits of `hash_mask_be` (in the address's
/// last word) carry the flow hash.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSource {
    pub family: u8,
    pub pad: [u8; 3],
    pub hash_mask_be: u32,
    pub addr_be: [u32; 4],
}

/// `struct udplb_neigh_key`: a next hop a DSR request found unresolved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighKey {
    pub ifindex: u32,
    pub family: u8,
    pub pad: [u8; 3],
    pub addr_be: [u32; 4],
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
    /// Its frontend's `client_bits`: its replies pin per client.
    pub client_bits: u8,
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

/// Declares a mirror `Plain` (readable from and writable to the maps' raw
/// bytes) after proving at compile time that it has its C struct's layout
/// (as libbpf-cargo generated it from the program's BTF) and no padding:
/// the same size, every field at the C field's offset, and field sizes that
/// add up to the whole, so no byte is padding the compiler added.
macro_rules! plain_mirror {
    ($rust:ty, $c:ty, [$($f:ident: $t:ty),* $(,)?]) => {
        const _: () = {
            use std::mem::{offset_of, size_of};
            /// The size of the field `field` picks, whatever its type.
            const fn field_size<S, F>(_field: fn(&S) -> &F) -> usize {
                size_of::<F>()
            }
            assert!(size_of::<$rust>() == size_of::<$c>());
            // Each field: at the generated struct's offset, of the type
            // listed here (a mismatch does not compile) and of the
            // generated field's size.
            $(
                assert!(offset_of!($rust, $f) == offset_of!($c, $f));
                let _: fn(&$rust) -> &$t = |s| &s.$f;
                assert!(field_size(|s: &$c| &s.$f) == size_of::<$t>());
            )*
            assert!(0 $(+ size_of::<$t>())* == size_of::<$rust>());
        };
        // SAFETY: a repr(C) struct of plain integers (and arrays and
        // structs of them) with no padding, proven just above: every
        // byte pattern is a valid value and every byte is initialised.
        unsafe impl plain::Plain for $rust {}
    };
}

use crate::bpf::types as c;
plain_mirror!(Endpoint, c::udplb_endpoint, [family: u8, pad: u8, port_be: u16, addr_be: [u32; 4]]);
plain_mirror!(
    Frontend,
    c::udplb_frontend,
    [
        id: u32,
        ring_id: u32,
        ring_size: u32,
        sched: u32,
        flow_timeout_s: u32,
        quic_server_id_len: u8,
        quic_cid_len: u8,
        port_be: u16,
        addr_be: [u32; 4],
        ring: InlineRing,
        client_bits: u8,
        mode: u8,
        gue_port_be: u16,
        tunnel: [TunnelSource; 2],
    ]
);
plain_mirror!(
    TunnelSource,
    c::udplb_tunnel_source,
    [family: u8, pad: [u8; 3], hash_mask_be: u32, addr_be: [u32; 4]]
);
plain_mirror!(
    NeighKey,
    c::udplb_neigh_key,
    [ifindex: u32, family: u8, pad: [u8; 3], addr_be: [u32; 4]]
);
plain_mirror!(
    Backend,
    c::udplb_backend,
    [
        ep: Endpoint,
        weight: u32,
        flags: u32,
        ident: u32,
        frontend_id: u32,
        frontend_port_be: u16,
        by_port: u8,
        client_bits: u8,
    ]
);
plain_mirror!(
    ReplyTarget,
    c::udplb_reply_target,
    [frontend: Endpoint, frontend_id: u32, backend_slot: u32]
);
plain_mirror!(Passive, c::udplb_passive, [icmp_errors: u64, replies: u64]);
plain_mirror!(
    FlowKey,
    c::udplb_flow_key,
    [
        family: u8,
        pad: u8,
        client_port_be: u16,
        frontend_port_be: u16,
        pad2: u16,
        client_addr_be: [u32; 4],
        frontend_addr_be: [u32; 4],
    ]
);
plain_mirror!(Clock, c::udplb_clock, [jiffies: u64, hz: u64]);
plain_mirror!(
    Flow,
    c::udplb_flow,
    [slot: u32, ident: u32, frontend_id: u32, pad: u32, last_seen: u64]
);
plain_mirror!(
    QuicKey,
    c::udplb_quic_key,
    [
        frontend_id: u32,
        config_rotation: u8,
        server_id_len: u8,
        server_id: [u8; UDPLB_QUIC_MAX_SERVER_ID_LEN as usize + 1],
        pad: u16,
    ]
);
plain_mirror!(QuicTarget, c::udplb_quic_target, [slot: u32, ident: u32]);
plain_mirror!(Counter, c::udplb_counter, [packets: u64, bytes: u64]);

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
