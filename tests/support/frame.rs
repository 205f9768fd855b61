//! A built frame and the offsets of its headers ([`Frame`]), its field
//! editors for the malformed cases, and the expected output of a port
//! rewrite, computed from scratch with the reference checksum.

use super::checksum::{self, udp_checksum, udp_checksum_checked};

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

impl Frame {
    pub fn l4(&self) -> usize {
        self.l4.expect("test bug: not a UDP frame")
    }

    pub fn get16(&self, off: usize) -> u16 {
        u16::from_be_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    pub fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// UDP port `which` of `bytes`, a frame with this one's headers (the
    /// output of a program that rewrote a port of it).
    pub fn port_in(&self, bytes: &[u8], which: Port) -> u16 {
        let off = match which {
            Port::Source => self.l4(),
            Port::Destination => self.l4() + 2,
        };
        u16::from_be_bytes([bytes[off], bytes[off + 1]])
    }

    /// The IP destination address of `bytes`, a frame with this one's
    /// headers (the output of a program that rewrote it).
    pub fn dst_addr_in(&self, bytes: &[u8]) -> std::net::IpAddr {
        let at = |off: usize, n: usize| &bytes[self.l3 + off..self.l3 + off + n];
        match self.ipv6 {
            false => <[u8; 4]>::try_from(at(16, 4)).unwrap().into(),
            true => <[u8; 16]>::try_from(at(24, 16)).unwrap().into(),
        }
    }

    // No is_empty: a built frame has an Ethernet header at least.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn udp_check(&self) -> u16 {
        self.get16(self.l4() + 6)
    }

    /// Recomputes the IPv4 header checksum when the header is sane enough to
    /// have one. The datapath never reads it (the stack checks it later), but
    /// a frame that is only meant to break one rule should break only that.
    pub fn refresh_ipv4_header_checksum(&mut self) {
        if self.ipv6 || self.bytes.len() < self.l3 + 20 {
            return;
        }
        let hlen = usize::from(self.bytes[self.l3] & 0x0f) * 4;
        if self.bytes[self.l3] >> 4 != 4 || hlen < 20 || self.l3 + hlen > self.bytes.len() {
            return;
        }
        self.set16(self.l3 + 10, 0);
        let c = checksum::ipv4_header(&self.bytes[self.l3..self.l3 + hlen]);
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

    /// 0 in the UDP length field and the checksum recomputed from scratch
    /// over the datagram's real length, the rest of the frame (build it
    /// before any trailer).
    pub fn udp_len_zero(mut self) -> Self {
        let l4 = self.l4();
        self.set16(l4 + 4, 0);
        let addrs = checksum::addrs_at(&self.bytes, self.l3, self.ipv6);
        let c = checksum::udp(addrs, &self.bytes[l4..], self.ipv6);
        self.set16(l4 + 6, c);
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
            let c = udp_checksum_checked(&out.bytes, self.l3, l4, self.ipv6);
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
