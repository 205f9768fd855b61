//! Test frames: built with etherparse (or serialised by hand where etherparse
//! cannot express the case), edited field by field for the malformed cases,
//! and checked with an independent RFC 1071 checksum.
//!
//! A [`Frame`] records where its IP and UDP headers start when it is built,
//! so the expected output of a case is computed without parsing the packet:
//! parsing is the datapath's job, and that is what is under test.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, IpAuthHeader, IpFragOffset,
    IpHeaders, IpNumber, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6FlowLabel,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
    SingleVlanHeader, UdpHeader, VlanId, VlanPcp,
};

pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// A frame and the offsets of its headers, as built.
#[derive(Clone, Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Offset of the IP header (the end of the link layer).
    pub l3: usize,
    /// Offset of the UDP header, for UDP frames.
    pub l4: Option<usize>,
    pub ipv6: bool,
}

/// Which UDP port a case expects the datapath to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Source,
    Destination,
}

// ---------------------------------------------------------------------------
// Checksums, from scratch (RFC 1071), sharing no code with bpf/csum.h.

/// The 16-bit one's-complement sum of `data` (big-endian words, an odd last
/// byte padded with zero), folded but not inverted.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for pair in data.chunks(2) {
        let hi = u64::from(pair[0]) << 8;
        let lo = pair.get(1).copied().map(u64::from).unwrap_or(0);
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The UDP checksum of the datagram at `l4` (pseudo-header + udp.len bytes,
/// checksum field taken as zero) as computed, before RFC 768 turns a
/// computed 0 into 0xFFFF. The whole datagram must be in `bytes`.
pub fn udp_checksum_computed(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    let ulen = usize::from(u16::from_be_bytes([bytes[l4 + 4], bytes[l4 + 5]]));
    assert!(
        l4 + ulen <= bytes.len(),
        "test bug: the UDP datagram ({ulen} bytes at {l4}) is not all in the frame"
    );
    let mut covered = Vec::with_capacity(40 + ulen);
    if ipv6 {
        covered.extend_from_slice(&bytes[l3 + 8..l3 + 40]); // source, destination
        covered.extend_from_slice(&(ulen as u32).to_be_bytes());
        covered.extend_from_slice(&[0, 0, 0, 17]);
    } else {
        covered.extend_from_slice(&bytes[l3 + 12..l3 + 20]); // source, destination
        covered.extend_from_slice(&[0, 17]);
        covered.extend_from_slice(&(ulen as u16).to_be_bytes());
    }
    let start = covered.len();
    covered.extend_from_slice(&bytes[l4..l4 + ulen]);
    covered[start + 6] = 0;
    covered[start + 7] = 0;
    !ones_complement_sum(&covered)
}

/// The UDP checksum as it goes on the wire: a computed 0 is sent as 0xFFFF.
pub fn udp_checksum(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    match udp_checksum_computed(bytes, l3, l4, ipv6) {
        0 => 0xffff,
        c => c,
    }
}

/// The same checksum computed by etherparse, as a second opinion on
/// [`udp_checksum`] (it shares no code with it either).
pub fn udp_checksum_etherparse(bytes: &[u8], l3: usize, l4: usize, ipv6: bool) -> u16 {
    let (udp, rest) = UdpHeader::from_slice(&bytes[l4..]).expect("UDP header");
    let payload = &rest[..usize::from(udp.length) - UdpHeader::LEN];
    if ipv6 {
        let src: [u8; 16] = bytes[l3 + 8..l3 + 24].try_into().unwrap();
        let dst: [u8; 16] = bytes[l3 + 24..l3 + 40].try_into().unwrap();
        udp.calc_checksum_ipv6_raw(src, dst, payload).unwrap()
    } else {
        let src: [u8; 4] = bytes[l3 + 12..l3 + 16].try_into().unwrap();
        let dst: [u8; 4] = bytes[l3 + 16..l3 + 20].try_into().unwrap();
        udp.calc_checksum_ipv4_raw(src, dst, payload).unwrap()
    }
}

// ---------------------------------------------------------------------------
// Building.

/// Ethernet header plus one 4-byte tag per TPID in `tpids` (outermost
/// first), ending in `ethertype`. Serialised by hand from etherparse's
/// header types because PacketBuilder stops at two tags.
pub fn link_layer(tpids: &[u16], ethertype: u16) -> Vec<u8> {
    let mut types = tpids.to_vec();
    types.push(ethertype);
    let mut out = Ethernet2Header {
        source: MAC_SRC,
        destination: MAC_DST,
        ether_type: EtherType(types[0]),
    }
    .to_bytes()
    .to_vec();
    for (i, next) in types[1..].iter().enumerate() {
        let tag = SingleVlanHeader {
            pcp: VlanPcp::ZERO,
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(100 + i as u16).unwrap(),
            ether_type: EtherType(*next),
        };
        out.extend_from_slice(&tag.to_bytes());
    }
    out
}

fn ipv4_header(src: IpAddr, dst: IpAddr, options: &[u8]) -> Ipv4Header {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
        panic!("test bug: mixed address families");
    };
    let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, s.octets(), d.octets()).unwrap();
    h.identification = 0x1234;
    h.options = Ipv4Options::try_from(options).expect("IPv4 options: 0..=40 bytes, 4n");
    h
}

fn ipv6_header(src: IpAddr, dst: IpAddr) -> Ipv6Header {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else {
        panic!("test bug: mixed address families");
    };
    Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: 0,
        next_header: IpNumber::UDP,
        hop_limit: 64,
        source: s.octets(),
        destination: d.octets(),
    }
}

/// A UDP frame under construction: `udp(src, dst)` then optional tags,
/// IPv4 options, payload, and `build()`.
#[derive(Clone, Debug)]
pub struct Udp {
    src: SocketAddr,
    dst: SocketAddr,
    tpids: Vec<u16>,
    options: Vec<u8>,
    payload: Vec<u8>,
}

pub fn udp(src: &str, dst: &str) -> Udp {
    Udp {
        src: src.parse().expect("source address:port"),
        dst: dst.parse().expect("destination address:port"),
        tpids: Vec::new(),
        options: Vec::new(),
        payload: b"udplb test payload".to_vec(),
    }
}

impl Udp {
    /// VLAN tags, outermost first (802.1ad 0x88A8 or 802.1Q 0x8100).
    pub fn tags(mut self, tpids: &[u16]) -> Self {
        self.tpids = tpids.to_vec();
        self
    }

    /// IPv4 options: `ihl` 6..=15 gives (ihl - 5) * 4 bytes of NOPs ending
    /// in End of Options List, so the header is IHL * 4 bytes.
    pub fn ihl(mut self, ihl: u8) -> Self {
        assert!((5..=15).contains(&ihl));
        let n = (usize::from(ihl) - 5) * 4;
        self.options = vec![1; n]; // NOP
        if n > 0 {
            self.options[n - 1] = 0; // EOL
        }
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    pub fn build(&self) -> Frame {
        let ipv6 = self.src.is_ipv6();
        let (net, ethertype, ip_len) = if ipv6 {
            let h = ipv6_header(self.src.ip(), self.dst.ip());
            (IpHeaders::Ipv6(h, Default::default()), ETH_P_IPV6, 40)
        } else {
            let h = ipv4_header(self.src.ip(), self.dst.ip(), &self.options);
            let len = h.header_len();
            (IpHeaders::Ipv4(h, Default::default()), ETH_P_IP, len)
        };
        let mut bytes = link_layer(&self.tpids, ethertype);
        let l3 = bytes.len();
        PacketBuilder::ip(net)
            .udp(self.src.port(), self.dst.port())
            .write(&mut bytes, &self.payload)
            .expect("etherparse writes the packet");
        let frame = Frame {
            bytes,
            l3,
            l4: Some(l3 + ip_len),
            ipv6,
        };
        // etherparse computed the checksum; our own sum must agree, or the
        // expectations built on it mean nothing.
        assert_eq!(
            frame.udp_check(),
            udp_checksum(&frame.bytes, l3, l3 + ip_len, ipv6),
            "test bug: etherparse and the RFC 1071 helper disagree"
        );
        frame
    }
}

/// An ARP request: not IP.
pub fn arp(tpids: &[u16]) -> Frame {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &MAC_SRC,
        &[192, 0, 2, 10],
        &[0; 6],
        &[192, 0, 2, 1],
    )
    .unwrap();
    let mut bytes = link_layer(tpids, 0x0806);
    let l3 = bytes.len();
    bytes.extend_from_slice(&packet.to_bytes());
    Frame {
        bytes,
        l3,
        l4: None,
        ipv6: false,
    }
}

/// An Ethernet frame of an arbitrary EtherType with a short payload.
pub fn ethertype(tpids: &[u16], ethertype: u16) -> Frame {
    let mut bytes = link_layer(tpids, ethertype);
    let l3 = bytes.len();
    bytes.extend_from_slice(&[0x5a; 46]);
    Frame {
        bytes,
        l3,
        l4: None,
        ipv6: false,
    }
}

/// Another transport over IP, aimed at a frontend port where it has ports.
pub enum Transport {
    Tcp,
    Icmp,
}

pub fn non_udp(src: &str, dst: &str, t: Transport) -> Frame {
    let src: SocketAddr = src.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let ipv6 = src.is_ipv6();
    let (net, ethertype) = if ipv6 {
        (
            IpHeaders::Ipv6(ipv6_header(src.ip(), dst.ip()), Default::default()),
            ETH_P_IPV6,
        )
    } else {
        (
            IpHeaders::Ipv4(ipv4_header(src.ip(), dst.ip(), &[]), Default::default()),
            ETH_P_IP,
        )
    };
    let mut bytes = link_layer(&[], ethertype);
    let l3 = bytes.len();
    let ip = PacketBuilder::ip(net);
    let payload = b"not udp";
    match (t, ipv6) {
        (Transport::Tcp, _) => ip
            .tcp(src.port(), dst.port(), 1, 65535)
            .syn()
            .write(&mut bytes, payload),
        (Transport::Icmp, false) => ip.icmpv4_echo_request(1, 1).write(&mut bytes, payload),
        (Transport::Icmp, true) => ip.icmpv6_echo_request(1, 1).write(&mut bytes, payload),
    }
    .unwrap();
    Frame {
        bytes,
        l3,
        l4: None,
        ipv6,
    }
}

/// An IPv6 UDP datagram behind one extension header of type `nexthdr`.
/// etherparse builds the types it knows (0, 43, 44, 51, 60); the others
/// (ESP 50, Mobility 135, HIP 139, Shim6 140, experimental 253/254) get a
/// minimal 8-byte header by hand (for ESP: SPI and sequence number, the
/// datagram after it as if the null cipher were used).
pub fn udp6_behind_ext(src: &str, dst: &str, nexthdr: u8) -> Frame {
    let plain = udp(src, dst).build();
    let l4 = plain.l4.unwrap();
    let datagram = &plain.bytes[l4..];
    let hdr = ipv6_header(plain_addr(&plain, true), plain_addr(&plain, false));
    let raw = |next: IpNumber| Ipv6RawExtHeader::new_raw(next, &[0; 6]).unwrap();
    let mut exts = Ipv6Extensions::default();
    match nexthdr {
        0 => exts.hop_by_hop_options = Some(raw(IpNumber::UDP)),
        43 => {
            exts.routing = Some(Ipv6RoutingExtensions {
                routing: raw(IpNumber::UDP),
                final_destination_options: None,
            })
        }
        44 => {
            exts.fragment = Some(Ipv6FragmentHeader::new(
                IpNumber::UDP,
                IpFragOffset::ZERO,
                true,
                7,
            ))
        }
        51 => exts.auth = Some(IpAuthHeader::new(IpNumber::UDP, 1, 1, &[0; 4]).unwrap()),
        60 => exts.destination_options = Some(raw(IpNumber::UDP)),
        _ => {}
    }
    let mut bytes = link_layer(&[], ETH_P_IPV6);
    let l3 = bytes.len();
    if exts.is_empty() {
        let mut h = hdr;
        h.next_header = IpNumber(nexthdr);
        h.payload_length = (8 + datagram.len()) as u16;
        bytes.extend_from_slice(&h.to_bytes());
        if nexthdr == 50 {
            bytes.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // SPI, sequence
        } else {
            bytes.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]); // next: UDP, len 0
        }
        bytes.extend_from_slice(datagram);
    } else {
        let src_port = u16::from_be_bytes([datagram[0], datagram[1]]);
        let dst_port = u16::from_be_bytes([datagram[2], datagram[3]]);
        PacketBuilder::ip(IpHeaders::Ipv6(hdr, exts))
            .udp(src_port, dst_port)
            .write(&mut bytes, &datagram[8..])
            .unwrap();
    }
    assert_eq!(bytes[l3 + 6], nexthdr, "test bug: wrong next header");
    Frame {
        bytes,
        l3,
        l4: None,
        ipv6: true,
    }
}

fn plain_addr(f: &Frame, source: bool) -> IpAddr {
    let b = &f.bytes[f.l3..];
    if f.ipv6 {
        let r = if source { 8..24 } else { 24..40 };
        IpAddr::from(<[u8; 16]>::try_from(&b[r]).unwrap())
    } else {
        let r = if source { 12..16 } else { 16..20 };
        IpAddr::from(<[u8; 4]>::try_from(&b[r]).unwrap())
    }
}

// ---------------------------------------------------------------------------
// Editing and expectations.

impl Frame {
    fn l4(&self) -> usize {
        self.l4.expect("test bug: not a UDP frame")
    }

    fn get16(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn udp_check(&self) -> u16 {
        self.get16(self.l4() + 6)
    }

    /// Recomputes the IPv4 header checksum when the header is sane enough to
    /// have one. The datapath never reads it (the stack checks it later), but
    /// a frame that is only meant to break one rule should break only that.
    fn refresh_ipv4_header_checksum(&mut self) {
        if self.ipv6 || self.bytes.len() < self.l3 + 20 {
            return;
        }
        let hlen = usize::from(self.bytes[self.l3] & 0x0f) * 4;
        if self.bytes[self.l3] >> 4 != 4 || hlen < 20 || self.l3 + hlen > self.bytes.len() {
            return;
        }
        self.set16(self.l3 + 10, 0);
        let c = !ones_complement_sum(&self.bytes[self.l3..self.l3 + hlen]);
        self.set16(self.l3 + 10, c);
    }

    /// Recomputes the UDP checksum from scratch (after editing a field it
    /// covers, for a case that must still be balanced).
    pub fn refresh_udp_checksum(mut self) -> Self {
        let c = udp_checksum(&self.bytes, self.l3, self.l4(), self.ipv6);
        self.set16(self.l4() + 6, c);
        self
    }

    pub fn udp_checksum_field(mut self, v: u16) -> Self {
        let off = self.l4() + 6;
        self.set16(off, v);
        self
    }

    pub fn ip_version(mut self, v: u8) -> Self {
        self.bytes[self.l3] = (v << 4) | (self.bytes[self.l3] & 0x0f);
        self.refresh_ipv4_header_checksum();
        self
    }

    pub fn ipv4_ihl_field(mut self, ihl: u8) -> Self {
        self.bytes[self.l3] = (self.bytes[self.l3] & 0xf0) | ihl;
        self.refresh_ipv4_header_checksum();
        self
    }

    pub fn ipv4_tot_len(mut self, n: u16) -> Self {
        self.set16(self.l3 + 2, n);
        self.refresh_ipv4_header_checksum();
        self
    }

    /// Flags and fragment offset (in 8-byte units).
    pub fn ipv4_frag(mut self, more_fragments: bool, offset: u16) -> Self {
        let df = self.get16(self.l3 + 6) & 0x4000;
        let mf = if more_fragments { 0x2000 } else { 0 };
        self.set16(self.l3 + 6, df | mf | offset);
        self.refresh_ipv4_header_checksum();
        self
    }

    pub fn ipv4_dont_fragment(mut self) -> Self {
        let v = self.get16(self.l3 + 6) | 0x4000;
        self.set16(self.l3 + 6, v);
        self.refresh_ipv4_header_checksum();
        self
    }

    pub fn ipv6_payload_len(mut self, n: u16) -> Self {
        self.set16(self.l3 + 4, n);
        self
    }

    pub fn ipv6_next_header(mut self, n: u8) -> Self {
        self.bytes[self.l3 + 6] = n;
        self
    }

    pub fn udp_len(mut self, n: u16) -> Self {
        let off = self.l4() + 4;
        self.set16(off, n);
        self
    }

    /// Trailing bytes after the IP packet (Ethernet padding).
    pub fn pad_to(mut self, len: usize) -> Self {
        assert!(len >= self.bytes.len());
        self.bytes.resize(len, 0);
        self
    }

    pub fn truncated(&self, len: usize) -> Vec<u8> {
        self.bytes[..len].to_vec()
    }

    /// The frame with one UDP port set to `port` and the checksum recomputed
    /// from scratch, as the datapath must leave it. An IPv4 checksum of 0
    /// ("none") stays 0.
    pub fn rewritten(&self, which: Port, port: u16) -> Vec<u8> {
        let l4 = self.l4();
        let check = self.udp_check();
        if check != 0 || self.ipv6 {
            assert_eq!(
                check,
                udp_checksum(&self.bytes, self.l3, l4, self.ipv6),
                "test bug: the input's UDP checksum is not valid"
            );
        }
        let mut out = self.clone();
        let off = match which {
            Port::Source => l4,
            Port::Destination => l4 + 2,
        };
        out.set16(off, port);
        if check != 0 || self.ipv6 {
            let c = udp_checksum(&out.bytes, self.l3, l4, self.ipv6);
            assert_eq!(
                c,
                udp_checksum_etherparse(&out.bytes, self.l3, l4, self.ipv6),
                "test bug: the two from-scratch checksums disagree"
            );
            out.set16(l4 + 6, c);
        }
        out.bytes
    }

    /// The first fragment of this IPv4 datagram: the UDP header and the
    /// first `ip_payload` - 8 bytes of UDP payload, MF set, offset 0. Applied
    /// to the input and to the expected output alike, since the checksum
    /// covers the whole datagram and cannot be computed from the fragment.
    pub fn first_fragment_of(bytes: &[u8], l3: usize, ip_payload: usize) -> Vec<u8> {
        let mut f = Frame {
            bytes: bytes.to_vec(),
            l3,
            l4: None,
            ipv6: false,
        };
        assert_eq!(ip_payload % 8, 0, "non-last fragments carry 8n bytes");
        let hlen = usize::from(f.bytes[l3] & 0x0f) * 4;
        f.bytes.truncate(l3 + hlen + ip_payload);
        f.ipv4_tot_len((hlen + ip_payload) as u16)
            .ipv4_frag(true, 0)
            .bytes
    }
}
