//! The one packet builder of the tests: UDP frames built with etherparse
//! (or serialised by hand where etherparse cannot express the case), with
//! every field the fixtures need settable or breakable (VLAN tags, IPv4
//! options and fragment field, checksum field, bytes beyond udp.len, a
//! datagram cut short as in a first fragment, Ethernet padding), edited
//! field by field for the malformed cases, and checked against the one
//! reference checksum ([`super::checksum`]).
//!
//! A [`Frame`] records where its IP and UDP headers start when it is built,
//! so the expected output of a case is computed without parsing the packet:
//! parsing is the datapath's job, and that is what is under test.

use std::net::{IpAddr, SocketAddr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, IpAuthHeader, IpFragOffset,
    IpHeaders, IpNumber, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6FlowLabel,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
    SingleVlanHeader, VlanId, VlanPcp,
};

use super::checksum::udp_checksum;

pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
/// The IPv4 flag More Fragments.
pub const IP_MF: u16 = 0x2000;

pub use super::frame::{Frame, Port};

// ---------------------------------------------------------------------------
// Building.

/// Ethernet header plus one 4-byte tag per TPID in `tpids` (outermost
/// first, VLAN ids 100, 101, ...), ending in `ethertype`.
pub fn link_layer(tpids: &[u16], ethertype: u16) -> Vec<u8> {
    let vlans: Vec<(u16, u16)> = (0..).zip(tpids).map(|(i, &t)| (t, 100 + i)).collect();
    ethernet(&vlans, ethertype, &[])
}

/// Ethernet (from [`MAC_SRC`] to [`MAC_DST`]) with VLAN tags given as
/// (TPID, TCI), outermost first, ending in `ethertype`, around `body`.
/// Serialised by hand from etherparse's header types because PacketBuilder
/// stops at two tags.
pub fn ethernet(vlans: &[(u16, u16)], ethertype: u16, body: &[u8]) -> Vec<u8> {
    ethernet_between(MAC_SRC, MAC_DST, vlans, ethertype, body)
}

fn ethernet_between(
    src: [u8; 6],
    dst: [u8; 6],
    vlans: &[(u16, u16)],
    ethertype: u16,
    body: &[u8],
) -> Vec<u8> {
    let mut types: Vec<u16> = vlans.iter().map(|v| v.0).collect();
    types.push(ethertype);
    let mut out = Ethernet2Header {
        source: src,
        destination: dst,
        ether_type: EtherType(types[0]),
    }
    .to_bytes()
    .to_vec();
    for (&(_, tci), next) in vlans.iter().zip(&types[1..]) {
        let tag = SingleVlanHeader {
            pcp: VlanPcp::try_new((tci >> 13) as u8).unwrap(),
            drop_eligible_indicator: tci & 0x1000 != 0,
            vlan_id: VlanId::try_new(tci & 0x0fff).unwrap(),
            ether_type: EtherType(*next),
        };
        out.extend_from_slice(&tag.to_bytes());
    }
    out.extend_from_slice(body);
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

/// What the UDP checksum field of a built frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Csum {
    /// Computed from scratch over the whole datagram (as transmitted).
    Computed,
    /// This exact value (0: "no checksum" for IPv4).
    Fixed(u16),
}

/// A UDP frame under construction: `udp(src, dst)` then optional tags,
/// IPv4 options, payload, checksum, trailers, and `build()`.
#[derive(Clone, Debug)]
pub struct Udp {
    src: SocketAddr,
    dst: SocketAddr,
    macs: ([u8; 6], [u8; 6]),
    vlans: Vec<(u16, u16)>,
    options: Vec<u8>,
    payload: Vec<u8>,
    csum: Csum,
    /// The IPv4 flags and fragment offset field, when set.
    frag_field: Option<u16>,
    /// IP payload bytes after the UDP datagram (udp.len < IP payload length).
    ip_trailer: Vec<u8>,
    /// Bytes after the IP packet (Ethernet padding).
    eth_trailer: Vec<u8>,
    /// Keep only this many bytes of the UDP datagram in the IP packet (a
    /// first fragment); the checksum still covers the whole datagram.
    keep_l4: Option<usize>,
    /// IPv6: a Fragment header in front of UDP (offset in 8-byte units, M).
    frag6: Option<(u16, bool)>,
    /// Write 0 in the UDP length field (the IPv6 jumbogram form).
    udp_len_zero: bool,
}

/// A UDP datagram from `src` to `dst` ("a.b.c.d:port" or "[v6]:port").
pub fn udp(src: &str, dst: &str) -> Udp {
    Udp {
        src: src.parse().expect("source address:port"),
        dst: dst.parse().expect("destination address:port"),
        macs: (MAC_SRC, MAC_DST),
        vlans: Vec::new(),
        options: Vec::new(),
        payload: b"udplb test payload".to_vec(),
        csum: Csum::Computed,
        frag_field: None,
        ip_trailer: Vec::new(),
        eth_trailer: Vec::new(),
        keep_l4: None,
        frag6: None,
        udp_len_zero: false,
    }
}

/// The identification field of the IPv6 Fragment headers the builder writes.
pub const FRAG6_ID: u32 = 0x0bad_cafe;

impl Udp {
    /// VLAN tags, outermost first (802.1ad 0x88A8 or 802.1Q 0x8100), with
    /// VLAN ids 100, 101, ...
    pub fn tags(mut self, tpids: &[u16]) -> Self {
        self.vlans = (0..).zip(tpids).map(|(i, &t)| (t, 100 + i)).collect();
        self
    }

    /// VLAN tags as (TPID, TCI), outermost first.
    pub fn vlans(mut self, v: &[(u16, u16)]) -> Self {
        self.vlans = v.to_vec();
        self
    }

    /// Source and destination Ethernet addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.macs = (src, dst);
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

    /// IPv4 options, exactly these bytes (0..=40, a multiple of 4).
    pub fn ipv4_options(mut self, o: &[u8]) -> Self {
        assert!(self.src.is_ipv4(), "test bug: IPv4 options on IPv6");
        self.options = o.to_vec();
        self
    }

    /// The IPv4 flags and fragment offset field, raw (DF is set unless
    /// this says otherwise).
    pub fn frag_field(mut self, f: u16) -> Self {
        assert!(self.src.is_ipv4(), "test bug: IPv4 fragment field on IPv6");
        self.frag_field = Some(f);
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    pub fn csum(mut self, c: Csum) -> Self {
        self.csum = c;
        self
    }

    pub fn ip_trailer(mut self, t: &[u8]) -> Self {
        self.ip_trailer = t.to_vec();
        self
    }

    pub fn eth_trailer(mut self, t: &[u8]) -> Self {
        self.eth_trailer = t.to_vec();
        self
    }

    pub fn keep_l4(mut self, n: usize) -> Self {
        self.keep_l4 = Some(n);
        self
    }

    /// IPv6: a Fragment header (identification [`FRAG6_ID`]) between the
    /// IPv6 header and UDP, `offset` in 8-byte units, `more` the M flag.
    /// With [`Udp::keep_l4`] it makes a first fragment.
    pub fn frag6(mut self, offset: u16, more: bool) -> Self {
        assert!(self.src.is_ipv6(), "test bug: IPv6 Fragment header on IPv4");
        self.frag6 = Some((offset, more));
        self
    }

    /// 0 in the UDP length field, as Linux accepts for IPv6 (the jumbogram
    /// form: the datagram is the rest of the IP payload); the checksum
    /// covers the real length.
    pub fn udp_len_zero(mut self) -> Self {
        self.udp_len_zero = true;
        self
    }

    /// The same datagram from another source ("address:port").
    pub fn with_src(&self, src: &str) -> Self {
        let mut u = self.clone();
        u.src = src.parse().expect("source address:port");
        u
    }

    /// The same datagram to another destination ("address:port").
    pub fn with_dst(&self, dst: &str) -> Self {
        let mut u = self.clone();
        u.dst = dst.parse().expect("destination address:port");
        u
    }

    /// The same datagram from another source port.
    pub fn with_sport(&self, sport: u16) -> Self {
        let mut u = self.clone();
        u.src.set_port(sport);
        u
    }

    /// The built frame's bytes.
    pub fn frame(&self) -> Vec<u8> {
        self.build().bytes
    }

    /// The UDP datagram (header and payload) with its checksum field.
    pub fn datagram(&self) -> Vec<u8> {
        let f = self.plain();
        f.bytes[f.l4.unwrap()..].to_vec()
    }

    /// The UDP checksum field of the datagram.
    pub fn checksum(&self) -> u16 {
        self.plain().udp_check()
    }

    /// The frame without fragment field, trailers or cut: etherparse's
    /// packet, its checksum cross-checked, then the checksum field set.
    fn plain(&self) -> Frame {
        let ipv6 = self.src.is_ipv6();
        let (net, ethertype, ip_len) = if ipv6 {
            let h = ipv6_header(self.src.ip(), self.dst.ip());
            let exts = fragment_extension(self.frag6);
            let len = 40 + exts.header_len();
            (IpHeaders::Ipv6(h, exts), ETH_P_IPV6, len)
        } else {
            let h = ipv4_header(self.src.ip(), self.dst.ip(), &self.options);
            let len = h.header_len();
            (IpHeaders::Ipv4(h, Default::default()), ETH_P_IP, len)
        };
        let mut bytes = ethernet_between(self.macs.0, self.macs.1, &self.vlans, ethertype, &[]);
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
        let frame = if self.udp_len_zero {
            frame.udp_len_zero()
        } else {
            frame
        };
        match self.csum {
            Csum::Computed => frame,
            Csum::Fixed(c) => frame.udp_checksum_field(c),
        }
    }

    pub fn build(&self) -> Frame {
        let mut f = self.plain();
        let l4 = f.l4();
        let cut = match self.keep_l4 {
            Some(n) => f.bytes.len() - l4 - n,
            None => 0,
        };
        f.bytes.truncate(f.bytes.len() - cut);
        f.bytes.extend_from_slice(&self.ip_trailer);
        let grow = self.ip_trailer.len() as i64 - cut as i64;
        if grow != 0 {
            let at = if f.ipv6 { f.l3 + 4 } else { f.l3 + 2 };
            let n = (i64::from(f.get16(at)) + grow) as u16;
            f.set16(at, n);
        }
        if let Some(v) = self.frag_field {
            f.set16(f.l3 + 6, v);
        }
        f.refresh_ipv4_header_checksum();
        f.bytes.extend_from_slice(&self.eth_trailer);
        f
    }
}

/// The IPv6 extension headers of a datagram: a Fragment header (offset in
/// 8-byte units, M flag, identification [`FRAG6_ID`]) or none.
fn fragment_extension(frag6: Option<(u16, bool)>) -> Ipv6Extensions {
    let mut exts = Ipv6Extensions::default();
    if let Some((offset, more)) = frag6 {
        let offset = IpFragOffset::try_new(offset).expect("fragment offset < 8192");
        exts.fragment = Some(Ipv6FragmentHeader::new(
            IpNumber::UDP,
            offset,
            more,
            FRAG6_ID,
        ));
    }
    exts
}

/// An IP packet of protocol `proto` whose payload (first transport bytes
/// and on) is `l4`, from `src` to `dst` (addresses without ports), in an
/// Ethernet frame with `vlans`.
pub fn ip_frame(vlans: &[(u16, u16)], src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    let src: IpAddr = src.parse().expect("source address");
    let dst: IpAddr = dst.parse().expect("destination address");
    let (ethertype, mut ip) = match (src, dst) {
        (IpAddr::V4(_), _) => {
            let mut h = ipv4_header(src, dst, &[]);
            h.protocol = IpNumber(proto);
            h.set_payload_len(l4.len()).unwrap();
            h.header_checksum = h.calc_header_checksum();
            (ETH_P_IP, h.to_bytes().to_vec())
        }
        (IpAddr::V6(_), _) => {
            let mut h = ipv6_header(src, dst);
            h.next_header = IpNumber(proto);
            h.payload_length = l4.len() as u16;
            (ETH_P_IPV6, h.to_bytes().to_vec())
        }
    };
    ip.extend_from_slice(l4);
    ethernet(vlans, ethertype, &ip)
}

/// A TCP segment (SYN-ACK) from `src` to `dst`, checksum left zero: the
/// datapath must not look at it at all.
pub fn tcp_frame(src: &str, dst: &str) -> Vec<u8> {
    let s: SocketAddr = src.parse().unwrap();
    let d: SocketAddr = dst.parse().unwrap();
    let mut t = Vec::new();
    t.extend_from_slice(&s.port().to_be_bytes());
    t.extend_from_slice(&d.port().to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes()); // seq
    t.extend_from_slice(&1u32.to_be_bytes()); // ack
    t.extend_from_slice(&[0x50, 0x12, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(b"tcp data");
    ip_frame(
        &[],
        &s.ip().to_string(),
        &d.ip().to_string(),
        IPPROTO_TCP,
        &t,
    )
}

/// An ICMP message whose type/code bytes read as port 9876 (0x2694) and
/// whose next two bytes read as port 9875 to anything that mistook it for
/// UDP.
pub fn icmp_like_port(src: &str, dst: &str, proto: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&9876u16.to_be_bytes());
    t.extend_from_slice(&9875u16.to_be_bytes());
    t.extend_from_slice(&[0, 16, 0, 0]);
    t.extend_from_slice(b"icmp  payload");
    ip_frame(&[], src, dst, proto, &t)
}

/// `frame` with `bytes` written at `offset`.
pub fn patched(mut frame: Vec<u8>, offset: usize, bytes: &[u8]) -> Vec<u8> {
    frame[offset..offset + bytes.len()].copy_from_slice(bytes);
    frame
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
    non_udp_with(src, dst, t, b"not udp")
}

/// [`non_udp`] carrying `payload`.
pub fn non_udp_with(src: &str, dst: &str, t: Transport, payload: &[u8]) -> Frame {
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

/// An ICMP error from `src` to `dst` (addresses without ports): ICMPv4 or,
/// for IPv6 addresses, ICMPv6, of `kind` (type, code), with `rest` in the
/// four bytes after the checksum (unused, or the MTU), quoting the first
/// `quote` bytes of `quoted`'s IP packet (IP header and on), as a kernel
/// quotes the datagram that caused it. Lengths and every checksum (outer
/// IPv4 header, ICMP, with ICMPv6's pseudo-header) computed from scratch.
pub fn icmp_error(
    src: &str,
    dst: &str,
    kind: (u8, u8),
    rest: u32,
    quoted: &Frame,
    quote: usize,
) -> Vec<u8> {
    let ip = &quoted.bytes[quoted.l3..];
    let mut m = vec![kind.0, kind.1, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(&ip[..quote.min(ip.len())]);
    icmp_message(src, dst, m, None)
}

/// An ICMP message `m` (its checksum field computed here) from `src` to
/// `dst`, cut to its first `keep` bytes (the IP length saying so) when set.
pub fn icmp_message(src: &str, dst: &str, mut m: Vec<u8>, keep: Option<usize>) -> Vec<u8> {
    let s: IpAddr = src.parse().expect("source address");
    let d: IpAddr = dst.parse().expect("destination address");
    let (proto, pseudo) = match (s, d) {
        (IpAddr::V6(s6), IpAddr::V6(d6)) => {
            let mut p = Vec::new();
            p.extend_from_slice(&s6.octets());
            p.extend_from_slice(&d6.octets());
            p.extend_from_slice(&(m.len() as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
            (IPPROTO_ICMPV6, super::checksum::sum(&p))
        }
        _ => (IPPROTO_ICMP, 0),
    };
    m[2..4].copy_from_slice(&[0, 0]);
    let c = !super::checksum::add(super::checksum::sum(&m), pseudo);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    if let Some(k) = keep {
        m.truncate(k);
    }
    ip_frame(&[], src, dst, proto, &m)
}
