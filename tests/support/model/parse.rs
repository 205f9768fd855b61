//! Parsing, in the order bpf/parsing.h specifies: Ethernet, VLAN tags,
//! IPv4 or IPv6 (one Fragment header), then UDP or ICMP.

use super::*;

pub(super) const ETH_HLEN: usize = 14;
pub(super) const VLAN_HLEN: usize = 4;
pub(super) const MAX_VLAN_TAGS: usize = 2;
pub(super) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(super) const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(super) const TPID_8021Q: u16 = 0x8100;
pub(super) const TPID_8021AD: u16 = 0x88a8;
pub(super) const IPPROTO_UDP: u8 = 17;
pub(super) const IPPROTO_ICMP: u8 = 1;
pub(super) const IPPROTO_ICMPV6: u8 = 58;
pub(super) const UDP_HLEN: usize = 8;
pub(super) const IPV4_MIN_HLEN: usize = 20;
pub(super) const IPV6_HLEN: usize = 40;
pub(super) const IPV6_FRAGMENT: u8 = 44;
pub(super) const IPV6_FRAG_HLEN: usize = 8;

/// IANA "IPv6 Extension Header Types" (RFC 7045 and its registry): Hop-by-Hop
/// Options, Routing, Fragment, ESP, AH, Destination Options, Mobility, HIP,
/// Shim6, and the two values for experimentation.
pub(super) const IPV6_EXTENSION_HEADERS: [u8; 11] =
    [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];

/// A UDP datagram the datapath may rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Datagram {
    /// Offset of the UDP header in the frame.
    pub(super) udp: usize,
    pub(super) ipv6: bool,
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
}

/// Why parsing stopped: a reason code and the rule that fired.
pub(super) type Stop = (usize, &'static str);

/// An ICMP message (IPv4 protocol 1 not fragmented, IPv6 next header 58
/// right after the IPv6 header): where it starts and how long the IP header
/// says it is (bpf/icmp.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Icmp {
    pub(super) at: usize,
    pub(super) len: usize,
    pub(super) ipv6: bool,
}

/// What parsing found: a UDP datagram or an ICMP message.
pub(super) enum Parsed {
    Udp(Datagram),
    Icmp(Icmp),
}

pub(super) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(super) fn stop<T>(code: usize, why: &'static str) -> Result<T, Stop> {
    Err((code, why))
}

pub(super) fn parse(frame: &[u8]) -> Result<Parsed, Stop> {
    // Ethernet (14 bytes) -> up to two 802.1Q/802.1ad tags -> EtherType.
    if frame.len() < ETH_HLEN {
        return stop(reason::MALFORMED, "Ethernet: fewer than 14 bytes");
    }
    let is_tag = |t: u16| t == TPID_8021Q || t == TPID_8021AD;
    let mut ethertype = be16(frame, 12);
    let mut at = ETH_HLEN;
    let mut tags = 0;
    while is_tag(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return stop(reason::NOT_IP, "VLAN: more than two tags");
        }
        if frame.len() < at + VLAN_HLEN {
            return stop(reason::MALFORMED, "VLAN: tag truncated");
        }
        ethertype = be16(frame, at + 2);
        at += VLAN_HLEN;
        tags += 1;
    }
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, at),
        ETHERTYPE_IPV6 => parse_ipv6(frame, at),
        _ => stop(reason::NOT_IP, "EtherType is neither IPv4 nor IPv6"),
    }
}

pub(super) fn parse_ipv4(frame: &[u8], l3: usize) -> Result<Parsed, Stop> {
    let ip = &frame[l3..];
    if ip.len() < IPV4_MIN_HLEN {
        return stop(reason::MALFORMED, "IPv4: fewer than 20 bytes");
    }
    if ip[0] >> 4 != 4 {
        return stop(reason::MALFORMED, "IPv4: version is not 4");
    }
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    if hlen < IPV4_MIN_HLEN {
        return stop(reason::MALFORMED, "IPv4: IHL < 5");
    }
    if ip.len() < hlen {
        return stop(reason::MALFORMED, "IPv4: header (IHL*4) not all present");
    }
    let tot_len = usize::from(be16(ip, 2));
    if tot_len < hlen {
        return stop(reason::MALFORMED, "IPv4: tot_len < IHL*4");
    }
    if ip.len() < tot_len {
        return stop(reason::MALFORMED, "IPv4: tot_len bytes not present");
    }
    let frag = be16(ip, 6);
    if ip[9] == IPPROTO_ICMP && frag & 0x3fff == 0 {
        return Ok(Parsed::Icmp(Icmp {
            at: l3 + hlen,
            len: tot_len - hlen,
            ipv6: false,
        }));
    }
    if ip[9] != IPPROTO_UDP {
        return stop(reason::NOT_UDP, "IPv4: protocol is not UDP");
    }
    let more_fragments = frag & 0x2000 != 0;
    if frag & 0x1fff != 0 {
        return stop(reason::FRAGMENT, "IPv4: fragment offset is not 0");
    }
    if tot_len - hlen < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv4: UDP header not within tot_len");
    }
    let udp_len = usize::from(be16(ip, hlen + 4));
    if udp_len < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv4: udp.len < 8");
    }
    // A first fragment's datagram continues in later fragments, so its
    // udp.len may exceed this packet.
    if !more_fragments && udp_len > tot_len - hlen {
        return stop(reason::MALFORMED, "IPv4: udp.len > tot_len - IHL*4");
    }
    let addr = |at: usize| IpAddr::V4(Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]));
    Ok(Parsed::Udp(Datagram {
        udp: l3 + hlen,
        ipv6: false,
        src: addr(12),
        dst: addr(16),
    }))
}

pub(super) fn parse_ipv6(frame: &[u8], l3: usize) -> Result<Parsed, Stop> {
    let ip = &frame[l3..];
    if ip.len() < IPV6_HLEN {
        return stop(reason::MALFORMED, "IPv6: fewer than 40 bytes");
    }
    if ip[0] >> 4 != 6 {
        return stop(reason::MALFORMED, "IPv6: version is not 6");
    }
    let payload_len = usize::from(be16(ip, 4));
    if ip.len() < IPV6_HLEN + payload_len {
        return stop(
            reason::MALFORMED,
            "IPv6: 40 + payload_len bytes not present",
        );
    }
    // The one extension header parsed: Fragment (44), whose first fragment
    // (offset 0) holds the UDP header.
    let (mut next, mut at, mut rest, mut more) = (ip[6], IPV6_HLEN, payload_len, false);
    let mut offset = 0;
    if next == IPV6_FRAGMENT {
        if payload_len < IPV6_FRAG_HLEN {
            return stop(
                reason::MALFORMED,
                "IPv6: Fragment header not within payload_len",
            );
        }
        next = ip[IPV6_HLEN];
        let field = be16(ip, IPV6_HLEN + 2);
        offset = field & 0xfff8;
        more = field & 1 != 0;
        at += IPV6_FRAG_HLEN;
        rest -= IPV6_FRAG_HLEN;
    }
    if next == IPPROTO_ICMPV6 && at == IPV6_HLEN {
        return Ok(Parsed::Icmp(Icmp {
            at: l3 + at,
            len: rest,
            ipv6: true,
        }));
    }
    if IPV6_EXTENSION_HEADERS.contains(&next) {
        return stop(reason::IPV6_EXT, "IPv6: next header is an extension header");
    }
    if next != IPPROTO_UDP {
        return stop(reason::NOT_UDP, "IPv6: next header is not UDP");
    }
    if offset != 0 {
        return stop(reason::FRAGMENT, "IPv6: fragment offset is not 0");
    }
    if rest < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv6: UDP header not within payload_len");
    }
    // Linux reads udp.len 0 as the rest of the payload (RFC 2675's form).
    let udp_len = match usize::from(be16(ip, at + 4)) {
        0 => rest,
        n => n,
    };
    if udp_len < UDP_HLEN {
        return stop(reason::MALFORMED, "IPv6: udp.len < 8");
    }
    // A first fragment's datagram continues in later fragments.
    if !more && udp_len > rest {
        return stop(reason::MALFORMED, "IPv6: udp.len > payload_len");
    }
    let addr = |at: usize| {
        let mut o = [0u8; 16];
        o.copy_from_slice(&ip[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(Parsed::Udp(Datagram {
        udp: l3 + at,
        ipv6: true,
        src: addr(8),
        dst: addr(24),
    }))
}

/// Sets the UDP port at `field` (0: source, 2: destination) and updates the
/// checksum for it.
pub(super) fn set_port(frame: &mut [u8], d: &Datagram, field: usize, port: u16) {
    let at = d.udp + field;
    let old = be16(frame, at);
    frame[at..at + 2].copy_from_slice(&port.to_be_bytes());
    let check = be16(frame, d.udp + 6);
    // RFC 768: an IPv4 checksum of 0 means "no checksum" and stays so. IPv6
    // has no such value (RFC 8200): always update.
    if !d.ipv6 && check == 0 {
        return;
    }
    let new = match checksum::update(check, old, port) {
        0 => 0xffff,
        c => c,
    };
    frame[d.udp + 6..d.udp + 8].copy_from_slice(&new.to_be_bytes());
}
