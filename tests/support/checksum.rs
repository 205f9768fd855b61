//! The one reference checksum of the tests: Internet checksum arithmetic
//! (RFC 1071, RFC 1624) and the UDP checksum (RFC 768 pseudo-header), from
//! scratch, sharing no code with bpf/csum.h. Frame-level helpers take the
//! offsets a [`Frame`](super::packets::Frame) records; etherparse serves as
//! a second, independent opinion.

use etherparse::UdpHeader;

/// One's-complement addition of two 16-bit words: add, then carry the 17th
/// bit back into the lowest.
pub fn add(a: u16, b: u16) -> u16 {
    let (sum, carry) = a.overflowing_add(b);
    sum + u16::from(carry)
}

/// The one's-complement sum (RFC 1071) of `data` as big-endian 16-bit
/// words, a last odd byte taken as the high half of a word; folded, not
/// inverted.
pub fn sum(data: &[u8]) -> u16 {
    data.chunks(2).fold(0, |acc, w| {
        add(
            acc,
            u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]),
        )
    })
}

/// RFC 1624 eqn. 3: the checksum `hc` after one covered 16-bit word changes
/// from `m` to `m2`: HC' = ~(~HC + ~m + m').
pub fn update(hc: u16, m: u16, m2: u16) -> u16 {
    !add(add(!hc, !m), m2)
}

/// The IPv4 header checksum of `header` (its checksum field taken as zero).
pub fn ipv4_header(header: &[u8]) -> u16 {
    let mut h = header.to_vec();
    h[10] = 0;
    h[11] = 0;
    !sum(&h)
}

/// The UDP pseudo-header for `addrs` (source then destination address, 8
/// or 32 bytes) and a datagram of `udp_len` bytes.
pub fn pseudo_header(addrs: &[u8], udp_len: usize, ipv6: bool) -> Vec<u8> {
    let mut pseudo = addrs.to_vec();
    if ipv6 {
        pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
    } else {
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    }
    pseudo
}

/// The UDP checksum over the pseudo-header and `udp_datagram` (its own
/// checksum field taken as zero) as computed, before RFC 768 turns a
/// computed 0 into 0xFFFF.
pub fn udp_computed(addrs: &[u8], udp_datagram: &[u8], ipv6: bool) -> u16 {
    let mut d = udp_datagram.to_vec();
    d[6] = 0;
    d[7] = 0;
    !add(sum(&pseudo_header(addrs, d.len(), ipv6)), sum(&d))
}

/// The UDP checksum as it goes on the wire: a computed 0 is sent as 0xFFFF.
pub fn udp(addrs: &[u8], udp_datagram: &[u8], ipv6: bool) -> u16 {
    match udp_computed(addrs, udp_datagram, ipv6) {
        0 => 0xffff,
        c => c,
    }
}

/// Whether the datagram's checksum field holds its correct checksum.
pub fn verifies(addrs: &[u8], udp_datagram: &[u8], ipv6: bool) -> bool {
    udp(addrs, udp_datagram, ipv6) == u16::from_be_bytes([udp_datagram[6], udp_datagram[7]])
}

/// Source and destination address of the IP header at `l3`.
pub fn addrs_at(bytes: &[u8], l3: usize, ipv6: bool) -> &[u8] {
    if ipv6 {
        &bytes[l3 + 8..l3 + 40]
    } else {
        &bytes[l3 + 12..l3 + 20]
    }
}

/// The UDP datagram at `l4` (udp.len bytes); it must all be in `bytes`.
fn datagram_at(bytes: &[u8], l4: usize) -> &[u8] {
    let ulen = usize::from(u16::from_be_bytes([bytes[l4 + 4], bytes[l4 + 5]]));
    assert!(
        l4 + ulen <= bytes.len(),
        "test bug: the UDP datagram ({ulen} bytes at {l4}) is not all in the frame"
    );
    &bytes[l4..l4 + ulen]
}

/// [`udp_computed`] of the datagram at `l4` of a frame whose IP header is
/// at `l3`.
pub fn udp_checksum_computed(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    udp_computed(addrs_at(bytes, l3, ipv6), datagram_at(bytes, l4), ipv6)
}

/// [`udp`] of the datagram at `l4` of a frame whose IP header is at `l3`.
pub fn udp_checksum(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    udp(addrs_at(bytes, l3, ipv6), datagram_at(bytes, l4), ipv6)
}

/// What a sender with checksum offload leaves in the UDP checksum field:
/// the folded, not inverted, sum of the pseudo-header (the kernel's
/// `~csum_tcpudp_magic(...)`).
pub fn partial_value(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    let ulen = usize::from(u16::from_be_bytes([bytes[l4 + 4], bytes[l4 + 5]]));
    sum(&pseudo_header(addrs_at(bytes, l3, ipv6), ulen, ipv6))
}

/// The same checksum computed by etherparse, as a second opinion on
/// [`udp_checksum`] (it shares no code with it either).
pub fn udp_checksum_etherparse(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    let (udp, rest) = UdpHeader::from_slice(&bytes[l4..]).expect("UDP header");
    let payload = &rest[..usize::from(udp.length) - UdpHeader::LEN];
    let a = addrs_at(bytes, l3, ipv6);
    if ipv6 {
        let (src, dst) = a.split_at(16);
        udp.calc_checksum_ipv6_raw(src.try_into().unwrap(), dst.try_into().unwrap(), payload)
            .unwrap()
    } else {
        let (src, dst) = a.split_at(4);
        udp.calc_checksum_ipv4_raw(src.try_into().unwrap(), dst.try_into().unwrap(), payload)
            .unwrap()
    }
}

/// [`udp_checksum`], asserted equal to [`udp_checksum_etherparse`]: the
/// value every expected output is built on.
pub fn udp_checksum_checked(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    let c = udp_checksum(bytes, l3, l4, ipv6);
    assert_eq!(
        c,
        udp_checksum_etherparse(bytes, l3, l4, ipv6),
        "test bug: the two from-scratch checksums disagree"
    );
    c
}

/// Recomputes the IPv4 header checksum at `l3` in place, cross-checked
/// against etherparse.
pub fn refresh_ipv4_header(bytes: &mut [u8], l3: usize) {
    let hlen = usize::from(bytes[l3] & 0x0f) * 4;
    let c = ipv4_header(&bytes[l3..l3 + hlen]);
    bytes[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    let (h, _) = etherparse::Ipv4Header::from_slice(&bytes[l3..]).expect("IPv4 header");
    assert_eq!(
        h.calc_header_checksum(),
        c,
        "test bug: etherparse disagrees on the IPv4 header checksum"
    );
}
