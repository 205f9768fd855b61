//! Direct server return (bpf/dsr.h), the expected frames from scratch: the
//! client's IP packet untouched behind an outer IP header (ipip) or an
//! outer IP and UDP header (gue, variant 1), or with the backend's MAC
//! alone (l2). Outer checksums come from the kit's RFC 1071 code, never
//! from the datapath's arithmetic; the flow hash from udplb's Rust twin of
//! the datapath's (plan::flow_hash), whose agreement with the datapath the
//! Maglev fixtures show.

use std::net::IpAddr;

use udplb::config::{Mode, Tunnel};
use udplb::plan::flow_hash::{client_hash, flow_hash};

use super::checksum;
use super::packets::Frame;

/// The hash the datapath's frontend_hash gives a request `f`: the flow's,
/// or with `client_bits` the client's address alone.
pub fn request_hash(f: &Frame, client_bits: u8) -> u32 {
    let (src, dst) = addrs(f);
    let l4 = f.l4();
    let b = &f.bytes;
    if client_bits > 0 {
        return client_hash(src, client_bits);
    }
    flow_hash(src, dst, [b[l4], b[l4 + 1]], [b[l4 + 2], b[l4 + 3]])
}

fn addrs(f: &Frame) -> (&[u8], &[u8]) {
    let b = &f.bytes;
    match f.ipv6 {
        true => (&b[f.l3 + 8..f.l3 + 24], &b[f.l3 + 24..f.l3 + 40]),
        false => (&b[f.l3 + 12..f.l3 + 16], &b[f.l3 + 16..f.l3 + 20]),
    }
}

/// The inner IP packet: from the IP header to the IP length (no Ethernet
/// trailer).
fn inner(f: &Frame) -> &[u8] {
    let len = match f.ipv6 {
        true => 40 + usize::from(f.get16(f.l3 + 4)),
        false => usize::from(f.get16(f.l3 + 2)),
    };
    &f.bytes[f.l3..f.l3 + len]
}

/// The inner TOS / traffic class, which the outer header copies.
fn traffic_class(f: &Frame) -> u8 {
    let b = &f.bytes;
    match f.ipv6 {
        true => (b[f.l3] << 4) | (b[f.l3 + 1] >> 4),
        false => b[f.l3 + 1],
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// What XDP sends for request `f` of a frontend in `mode` (ipip or gue) to
/// `backend`, out of a device with MAC `smac` to the next hop `dmac`:
/// `tunnel` the frontend's tunnel source of the backend's family.
pub fn encapsulated(
    f: &Frame,
    mode: Mode,
    tunnel: Tunnel,
    backend: IpAddr,
    hash: u32,
    (smac, dmac): ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let inner = inner(f);
    let outer6 = backend.is_ipv6();
    let src = octets(tunnel.source_for(hash));
    let dst = octets(backend);
    // The UDP header of gue, its checksum filled below.
    let mut udp = Vec::new();
    if let Mode::Gue { port } = mode {
        let sport = 0xC000 | (hash & 0x3FFF) as u16;
        udp.extend_from_slice(&sport.to_be_bytes());
        udp.extend_from_slice(&port.to_be_bytes());
        udp.extend_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
    }
    let proto = match (mode, f.ipv6) {
        (Mode::Gue { .. }, _) => 17,
        (_, true) => 41,
        (_, false) => 4,
    };
    let tc = traffic_class(f);
    let mut out = Vec::new();
    out.extend_from_slice(&dmac);
    out.extend_from_slice(&smac);
    out.extend_from_slice(if outer6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    if outer6 {
        let first = (6u32 << 28) | (u32::from(tc) << 20) | (hash & 0xFFFFF);
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&((udp.len() + inner.len()) as u16).to_be_bytes());
        out.extend_from_slice(&[proto, 64]);
    } else {
        // DF as the inner IPv4 header has it (RFC 2003), set for IPv6.
        let df = if f.ipv6 || f.bytes[f.l3 + 6] & 0x40 != 0 {
            0x40
        } else {
            0
        };
        let len = (20 + udp.len() + inner.len()) as u16;
        // Fragments of one packet share an ID: with DF clear, the inner
        // IPv4 packet's.
        let id = if df == 0 {
            [f.bytes[f.l3 + 4], f.bytes[f.l3 + 5]]
        } else {
            [0, 0]
        };
        out.extend_from_slice(&[0x45, tc]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&id);
        out.extend_from_slice(&[df, 0, 64, proto, 0, 0]);
    }
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    if !outer6 {
        let c = checksum::ipv4_header(&out[14..34]);
        out[24..26].copy_from_slice(&c.to_be_bytes());
    }
    if !udp.is_empty() && outer6 {
        // Over IPv6 the outer UDP checksum is required (RFC 8200); over
        // IPv4 it is 0, none.
        let mut dgram = udp.clone();
        dgram.extend_from_slice(inner);
        let addrs = [src.clone(), dst.clone()].concat();
        let c = checksum::udp(&addrs, &dgram, true);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&udp);
    out.extend_from_slice(inner);
    out
}

/// What XDP sends for request `f` of an l2 frontend: the frame as it came,
/// from `smac` to the backend's `dmac`.
pub fn readdressed(f: &Frame, (smac, dmac): ([u8; 6], [u8; 6])) -> Vec<u8> {
    let mut out = f.bytes.clone();
    out[0..6].copy_from_slice(&dmac);
    out[6..12].copy_from_slice(&smac);
    out
}

/// Whether the outer UDP checksum of an encapsulated frame (gue over IPv6)
/// verifies over the whole datagram, by the kit's own sum.
pub fn outer_udp_verifies(out: &[u8]) -> bool {
    let addrs = &out[14 + 8..14 + 40];
    checksum::verifies(addrs, &out[14 + 40..], true)
}

/// The ICMP error XDP answers request `f` with when it is too big for the
/// path once encapsulated: fragmentation needed (IPv4) or packet too big
/// (IPv6) with the path's `mtu`, from the frontend (the request's
/// destination) to the client, quoting the request's IP packet up to 576
/// or 1280 bytes in all, back to the client's MAC.
pub fn too_big(f: &Frame, mtu: u32) -> Vec<u8> {
    let inner = inner(f);
    let (src, dst) = addrs(f);
    let (client, frontend) = (src.to_vec(), dst.to_vec());
    // Never larger than the request: the quote leaves room for the new
    // headers.
    let room = if f.ipv6 { 48 } else { 28 };
    let quote = &inner[..(inner.len() - room).min(if f.ipv6 { 1280 - 48 } else { 576 - 28 })];
    let mut icmp = Vec::new();
    if f.ipv6 {
        icmp.extend_from_slice(&[2, 0, 0, 0]);
        icmp.extend_from_slice(&mtu.to_be_bytes());
    } else {
        icmp.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
        icmp.extend_from_slice(&(mtu as u16).to_be_bytes());
    }
    icmp.extend_from_slice(quote);
    // The pseudo-header first, so that an odd-length message keeps its
    // 16-bit words aligned.
    let mut covered = Vec::new();
    if f.ipv6 {
        covered.extend_from_slice(&frontend);
        covered.extend_from_slice(&client);
        covered.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        covered.extend_from_slice(&[0, 0, 0, 58]);
    }
    covered.extend_from_slice(&icmp);
    let c = !checksum::sum(&covered);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::new();
    out.extend_from_slice(&f.bytes[6..12]);
    out.extend_from_slice(&f.bytes[0..6]);
    if f.ipv6 {
        out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        out.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        out.extend_from_slice(&[58, 64]);
    } else {
        out.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        out.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
        // ID 0 with DF (RFC 6864).
        out.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
    }
    out.extend_from_slice(&frontend);
    out.extend_from_slice(&client);
    if !f.ipv6 {
        let c = checksum::ipv4_header(&out[14..34]);
        out[24..26].copy_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&icmp);
    out
}
