//! Frames: a description of a valid frame, mutations, and the bytes.

use super::*;

// ===========================================================================
// Frames: a description of a valid frame, mutations, and the bytes.

pub(crate) const TPIDS: [u16; 2] = [0x8100, 0x88a8];
pub(crate) const EXT_HEADERS: [u8; 11] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];
/// Values worth writing into header fields besides random ones.
pub(crate) const INTERESTING: [u16; 20] = [
    0x0800, 0x86dd, 0x8100, 0x88a8, 0x9100, 0, 1, 4, 5, 6, 7, 8, 15, 17, 44, 59, 0x2000, 0x4000,
    0x1fff, 0xffff,
];

#[derive(Clone, Debug)]
pub(crate) enum Frag {
    Whole,
    /// MF set, offset 0; the IP payload is cut (udp.len stays the whole's).
    First(Index),
    /// A later fragment: offset 1..=0x1fff, MF or not.
    Later(bool, u16),
}

#[derive(Clone, Debug)]
pub(crate) enum Ip {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        /// IHL 5..=15: 0..=40 option bytes.
        options: Vec<u8>,
        tos: u8,
        id: u16,
        df: bool,
        frag: Frag,
        ttl: u8,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        class_flow: u32,
        hop_limit: u8,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum Csum {
    Valid,
    Zero,
    Raw(u16),
    /// A value that an RFC 1624 update for the given port change (source or
    /// destination port to `new`) turns into 0, which must go out as 0xFFFF.
    ZeroAfter {
        source: bool,
        new: u16,
    },
}

/// `len` pseudo-random bytes from `seed` (xorshift): cheaper to shrink than
/// a vector of arbitrary bytes, where each shrink step loads a datapath.
pub(crate) fn filler(len: usize, seed: u32) -> Vec<u8> {
    let mut x = u64::from(seed) | 1 << 40;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Bytes of a length from `len`, cheap to shrink.
pub(crate) fn bytes(len: impl Strategy<Value = usize>) -> impl Strategy<Value = Vec<u8>> {
    (len, any::<u32>()).prop_map(|(n, seed)| filler(n, seed))
}

#[derive(Clone, Debug)]
pub(crate) struct FrameDesc {
    pub(crate) macs: [u8; 12],
    /// (TPID, TCI), outermost first.
    pub(crate) tags: Vec<(u16, u16)>,
    pub(crate) ip: Ip,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) payload: Vec<u8>,
    /// `Some`: udp.len shorter than the datagram (8 + index into payload).
    pub(crate) short_udp_len: Option<Index>,
    pub(crate) csum: Csum,
    /// Bytes after the IP packet (Ethernet padding or trailer).
    pub(crate) trailer: Vec<u8>,
    /// `Some`: the datagram is not sent but quoted, cut short, in an ICMP
    /// message (bpf/icmp.h) from its destination back to its source.
    pub(crate) icmp: Option<IcmpWrap>,
}

/// An ICMP message quoting the frame's IP packet.
#[derive(Clone, Debug)]
pub(crate) struct IcmpWrap {
    /// (type, code): ICMPv4 for IPv4, ICMPv6 for IPv6.
    pub(crate) kind: (u8, u8),
    /// How much of the IP packet is quoted (0..=all of it); `None`: all.
    pub(crate) quote: Option<Index>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Field {
    /// The EtherType/TPID field of one link-layer level.
    EtherType(Index),
    Version,
    Ihl,
    TotLen,
    PayloadLen,
    /// IPv4 protocol or IPv6 next header.
    Protocol,
    FragOff,
    UdpLen,
    UdpCheck,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Value {
    Random(u16),
    Near(i8),
    Pick(u16),
}

#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    /// Cut the frame to 14.. bytes.
    Truncate(Index),
    /// (within the first 96 bytes?, position, bit).
    FlipBits(Vec<(bool, Index, u8)>),
    Set(Field, Value),
    /// Extra outermost tag.
    PushVlan(u16, u16),
    /// Extension headers (type, length unit, filler) between the IPv6
    /// header and the UDP header, payload_len updated.
    InsertExt(Vec<(u8, u8, u8)>),
}

#[derive(Clone, Copy)]
pub(crate) enum Width {
    U16,
    U8,
    High4,
    Low4,
}

/// A frame's bytes and where its headers are (as built, then as moved).
pub(crate) struct Built {
    pub(crate) bytes: Vec<u8>,
    /// Offsets of the EtherType/TPID fields, outermost first.
    pub(crate) types: Vec<usize>,
    pub(crate) l3: usize,
    pub(crate) l4: usize,
    pub(crate) ipv6: bool,
}

impl Built {
    pub(crate) fn get16(&self, at: usize) -> Option<u16> {
        (at + 2 <= self.bytes.len())
            .then(|| u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]]))
    }

    pub(crate) fn set16(&mut self, at: usize, v: u16) {
        if at + 2 <= self.bytes.len() {
            self.bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
}

pub(crate) fn build(d: &FrameDesc) -> Built {
    let mut bytes = d.macs.to_vec();
    let mut types = vec![];
    for &(tpid, tci) in &d.tags {
        types.push(bytes.len());
        bytes.extend_from_slice(&tpid.to_be_bytes());
        bytes.extend_from_slice(&tci.to_be_bytes());
    }
    types.push(bytes.len());
    let ipv6 = matches!(d.ip, Ip::V6 { .. });
    bytes.extend_from_slice(&if ipv6 { 0x86ddu16 } else { 0x0800 }.to_be_bytes());
    let l3 = bytes.len();

    // The UDP datagram, checksum over udp.len bytes.
    let mut udp = Vec::with_capacity(8 + d.payload.len());
    udp.extend_from_slice(&d.sport.to_be_bytes());
    udp.extend_from_slice(&d.dport.to_be_bytes());
    let ulen = match &d.short_udp_len {
        None => 8 + d.payload.len(),
        Some(i) => 8 + i.index(d.payload.len() + 1),
    };
    udp.extend_from_slice(&(ulen as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&d.payload);
    let addrs: Vec<u8> = match &d.ip {
        Ip::V4 { src, dst, .. } => [src.octets(), dst.octets()].concat(),
        Ip::V6 { src, dst, .. } => [src.octets(), dst.octets()].concat(),
    };
    let check = match d.csum {
        Csum::Valid => checksum::udp(&addrs, &udp[..ulen], ipv6),
        Csum::Zero => 0,
        Csum::Raw(v) => v,
        Csum::ZeroAfter { source, new } => {
            let old = if source { d.sport } else { d.dport };
            // !(!hc + !old + new) = 0 when hc = !old + new (one's complement).
            let (sum, carry) = (!old).overflowing_add(new);
            sum + u16::from(carry)
        }
    };
    udp[6..8].copy_from_slice(&check.to_be_bytes());

    let l4;
    match &d.ip {
        Ip::V4 {
            options,
            tos,
            id,
            df,
            frag,
            ttl,
            ..
        } => {
            let (data, frag_field) = match frag {
                Frag::Whole => (&udp[..], 0),
                Frag::First(i) => (&udp[..8 + i.index(udp.len() - 8 + 1)], 0x2000),
                Frag::Later(mf, off) => (&udp[..], off & 0x1fff | if *mf { 0x2000 } else { 0 }),
            };
            let hlen = 20 + options.len();
            let mut h = vec![0x40 | (hlen / 4) as u8, *tos];
            h.extend_from_slice(&((hlen + data.len()) as u16).to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&(frag_field | if *df { 0x4000 } else { 0 }).to_be_bytes());
            h.extend_from_slice(&[*ttl, 17, 0, 0]);
            h.extend_from_slice(&addrs);
            h.extend_from_slice(options);
            let hc = !checksum::sum(&h);
            h[10..12].copy_from_slice(&hc.to_be_bytes());
            bytes.extend_from_slice(&h);
            l4 = bytes.len();
            bytes.extend_from_slice(data);
        }
        Ip::V6 {
            class_flow,
            hop_limit,
            ..
        } => {
            bytes.extend_from_slice(&(0x6000_0000 | (class_flow & 0x0fff_ffff)).to_be_bytes());
            bytes.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&[17, *hop_limit]);
            bytes.extend_from_slice(&addrs);
            l4 = bytes.len();
            bytes.extend_from_slice(&udp);
        }
    }
    let l4 = match &d.icmp {
        None => l4,
        Some(w) => wrap_in_icmp(&mut bytes, l3, ipv6, w),
    };
    bytes.extend_from_slice(&d.trailer);
    Built {
        bytes,
        types,
        l3,
        l4,
        ipv6,
    }
}

/// Replaces the IP packet at l3 (to the end of `bytes`) by an ICMP error
/// from its destination to its source quoting part of it; returns where
/// the ICMP message starts.
fn wrap_in_icmp(bytes: &mut Vec<u8>, l3: usize, ipv6: bool, w: &IcmpWrap) -> usize {
    let packet = bytes.split_off(l3);
    let n = w
        .quote
        .as_ref()
        .map_or(packet.len(), |i| i.index(packet.len() + 1));
    let quote = &packet[..n];
    let mut m = vec![w.kind.0, w.kind.1, 0, 0, 0, 0, 0x05, 0x00];
    m.extend_from_slice(quote);
    let mut h;
    if ipv6 {
        let (src, dst) = (&packet[24..40], &packet[8..24]);
        let mut pseudo = [src, dst].concat();
        pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        let c = !checksum::add(checksum::sum(&pseudo), checksum::sum(&m));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        h = packet[..8].to_vec();
        h[4..6].copy_from_slice(&(m.len() as u16).to_be_bytes());
        h[6] = 58;
        h.extend_from_slice(src);
        h.extend_from_slice(dst);
    } else {
        let c = !checksum::sum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        h = vec![0x45, 0xc0];
        h.extend_from_slice(&((20 + m.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
        h.extend_from_slice(&packet[16..20]);
        h.extend_from_slice(&packet[12..16]);
        let hc = !checksum::sum(&h);
        h[10..12].copy_from_slice(&hc.to_be_bytes());
    }
    bytes.extend_from_slice(&h);
    let at = bytes.len();
    bytes.extend_from_slice(&m);
    at
}

pub(crate) fn mutate(b: &mut Built, m: &Mutation) {
    match m {
        Mutation::Truncate(i) => {
            if b.bytes.len() > 14 {
                let len = 14 + i.index(b.bytes.len() - 14);
                b.bytes.truncate(len);
            }
        }
        Mutation::FlipBits(flips) => {
            for (head, i, bit) in flips {
                let span = if *head {
                    b.bytes.len().min(96)
                } else {
                    b.bytes.len()
                };
                let at = i.index(span);
                b.bytes[at] ^= 1 << (bit % 8);
            }
        }
        Mutation::Set(field, value) => {
            use Width::*;
            let (at, width) = match *field {
                Field::EtherType(i) => (b.types[i.index(b.types.len())], U16),
                Field::Version => (b.l3, High4),
                Field::Ihl if !b.ipv6 => (b.l3, Low4),
                Field::TotLen if !b.ipv6 => (b.l3 + 2, U16),
                Field::PayloadLen if b.ipv6 => (b.l3 + 4, U16),
                Field::Protocol => (b.l3 + if b.ipv6 { 6 } else { 9 }, U8),
                Field::FragOff if !b.ipv6 => (b.l3 + 6, U16),
                Field::UdpLen => (b.l4 + 4, U16),
                Field::UdpCheck => (b.l4 + 6, U16),
                // A field the other family has: what sits there in this one.
                Field::Ihl => (b.l3, Low4),
                Field::TotLen | Field::FragOff => (b.l3 + 4, U16),
                Field::PayloadLen => (b.l3 + 2, U16),
            };
            let byte = b.bytes.get(at).copied().map(u16::from);
            let current = match width {
                U16 => b.get16(at),
                U8 => byte,
                High4 => byte.map(|v| v >> 4),
                Low4 => byte.map(|v| v & 0xf),
            };
            let Some(current) = current else {
                return; // cut off by an earlier truncation
            };
            let v = match *value {
                Value::Random(v) | Value::Pick(v) => v,
                Value::Near(d) => current.wrapping_add_signed(i16::from(d)),
            };
            match width {
                U16 => b.set16(at, v),
                U8 => b.bytes[at] = v as u8,
                High4 => b.bytes[at] = (b.bytes[at] & 0x0f) | ((v as u8 & 0xf) << 4),
                Low4 => b.bytes[at] = (b.bytes[at] & 0xf0) | (v as u8 & 0xf),
            }
        }
        Mutation::PushVlan(tpid, tci) => {
            let tag: Vec<u8> = [tpid.to_be_bytes(), tci.to_be_bytes()].concat();
            b.bytes.splice(12..12, tag);
            b.types = std::iter::once(12)
                .chain(b.types.iter().map(|t| t + 4))
                .collect();
            b.l3 += 4;
            b.l4 += 4;
        }
        Mutation::InsertExt(exts) => {
            let at = b.l3 + 40;
            if !b.ipv6 || b.bytes.len() < at || exts.is_empty() {
                return;
            }
            let mut next_after = b.bytes[b.l3 + 6];
            let mut chain: Vec<u8> = vec![];
            for &(kind, unit, fill) in exts.iter().rev() {
                let mut h = match kind {
                    // Fragment: offset and M from the filler.
                    44 => vec![next_after, 0, fill, fill & 0xf9, 0, 0, 0, 7],
                    // AH: 16 bytes, payload length in 4-octet units minus 2.
                    51 => {
                        let mut h = vec![next_after, 2, 0, 0];
                        h.extend_from_slice(&[fill; 12]);
                        h
                    }
                    // ESP: SPI and sequence number, then the (null-cipher) rest.
                    50 => vec![0, 0, 1, fill, 0, 0, 0, 1],
                    // The generic form: next header, length in 8-octet units - 1.
                    _ => {
                        let n = usize::from(unit % 3);
                        let mut h = vec![next_after, n as u8];
                        h.resize(8 * (n + 1), fill);
                        h
                    }
                };
                h.append(&mut chain);
                chain = h;
                next_after = kind;
            }
            let n = chain.len();
            b.bytes[b.l3 + 6] = next_after;
            b.bytes.splice(at..at, chain);
            let plen = b.get16(b.l3 + 4).unwrap_or(0);
            b.set16(b.l3 + 4, plen.wrapping_add(n as u16));
            b.l4 += n;
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Shot {
    pub(crate) ingress: Ingress,
    pub(crate) desc: FrameDesc,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) frame: Vec<u8>,
}

impl Shot {
    pub(crate) fn new(ingress: Ingress, desc: FrameDesc, mutations: Vec<Mutation>) -> Shot {
        let mut b = build(&desc);
        for m in &mutations {
            mutate(&mut b, m);
        }
        Shot {
            ingress,
            desc,
            mutations,
            frame: b.bytes,
        }
    }

    /// One line on how the frame was made.
    pub(crate) fn recipe(&self) -> String {
        let d = &self.desc;
        let mut s = match &d.ip {
            Ip::V4 {
                src,
                dst,
                options,
                frag,
                ..
            } => {
                let f = match frag {
                    Frag::Whole => String::new(),
                    Frag::First(_) => " first fragment".into(),
                    Frag::Later(mf, off) => format!(" fragment MF={} offset {off}", *mf as u8),
                };
                format!(
                    "IPv4 IHL {}{f} {src}:{} -> {dst}:{}",
                    5 + options.len() / 4,
                    d.sport,
                    d.dport
                )
            }
            Ip::V6 { src, dst, .. } => format!("IPv6 [{src}]:{} -> [{dst}]:{}", d.sport, d.dport),
        };
        if !d.tags.is_empty() {
            let t: Vec<String> = d.tags.iter().map(|(p, _)| format!("{p:#06x}")).collect();
            s = format!("{} tags, {s}", t.join("+"));
        }
        let _ = write!(
            s,
            ", {} payload bytes, checksum {:?}",
            d.payload.len(),
            d.csum
        );
        if d.short_udp_len.is_some() {
            s += ", short udp.len";
        }
        if !d.trailer.is_empty() {
            let _ = write!(s, ", {}-byte trailer", d.trailer.len());
        }
        for m in &self.mutations {
            let _ = write!(s, "; then {}", describe(m));
        }
        s
    }
}

pub(crate) fn describe(m: &Mutation) -> String {
    match m {
        Mutation::Truncate(_) => "truncate".into(),
        Mutation::FlipBits(f) => format!("flip {} bit(s)", f.len()),
        Mutation::Set(field, v) => format!("set {field:?} to {v:?}"),
        Mutation::PushVlan(t, _) => format!("push tag {t:#06x}"),
        Mutation::InsertExt(e) => {
            let k: Vec<String> = e.iter().map(|x| x.0.to_string()).collect();
            format!("insert IPv6 extension header(s) {}", k.join(","))
        }
    }
}
