//! The datapath's hashes (bpf/flow_hash.h `flow_hash_dir`, `client_hash`),
//! for tests and the reference model: MurmurHash3 (x86_32) over the 32-bit
//! words of source address, destination address and ports as they sit in
//! the packet, or of the client's address alone.

use crate::abi::UDPLB_HASH_SEED;

fn round(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b873593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe6546b64)
}

fn finish(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85ebca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2ae35);
    h ^ (h >> 16)
}

fn word(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// `src` and `dst` are the raw address bytes (4 or 16), ports the raw
/// network-order bytes of the UDP header.
pub fn flow_hash(src: &[u8], dst: &[u8], sport: [u8; 2], dport: [u8; 2]) -> u32 {
    let ports = u16::from_ne_bytes(sport) as u32 | (u16::from_ne_bytes(dport) as u32) << 16;
    let mut h = UDPLB_HASH_SEED;
    for chunk in src.chunks_exact(4).chain(dst.chunks_exact(4)) {
        h = round(h, word(chunk));
    }
    finish(round(h, ports), (src.len() + dst.len() + 4) as u32)
}

/// The first `bits` bits of an IPv6 address, the rest zero (bpf/flow_hash.h
/// `ipv6_prefix`).
pub fn ipv6_prefix(addr: [u8; 16], bits: u8) -> [u8; 16] {
    let keep = u128::MAX
        .checked_shl(128 - u32::from(bits.min(128)))
        .unwrap_or(0);
    (u128::from_be_bytes(addr) & keep).to_be_bytes()
}

/// The hash of a client's address alone (a frontend with `hash =
/// "client"`): `addr` its raw bytes, 4 (whole) or 16 (cut to `ipv6_prefix`
/// bits).
pub fn client_hash(addr: &[u8], ipv6_prefix_bits: u8) -> u32 {
    let mut h = UDPLB_HASH_SEED;
    if let Ok(v6) = <[u8; 16]>::try_from(addr) {
        for chunk in ipv6_prefix(v6, ipv6_prefix_bits).chunks_exact(4) {
            h = round(h, word(chunk));
        }
        return finish(h, 16);
    }
    finish(round(h, word(addr)), 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MurmurHash3_x86_32 reference vectors for whole-word inputs.
    #[test]
    fn murmur3_reference_values() {
        let hash = |data: &[u8], seed: u32| {
            let mut h = seed;
            for c in data.chunks_exact(4) {
                h = round(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            }
            finish(h, data.len() as u32)
        };
        assert_eq!(hash(b"", 0), 0);
        assert_eq!(hash(b"", 1), 0x514E28B7);
        assert_eq!(hash(&[0, 0, 0, 0], 0), 0x2362F9DE);
        assert_eq!(hash(&[0x21, 0x43, 0x65, 0x87], 0), 0xF55B516B);
        assert_eq!(hash(&[0x21, 0x43, 0x65, 0x87], 0x5082EDEE), 0x2362F9DE);
    }

    #[test]
    fn client_hash_ignores_the_cut_bits() {
        let a: [u8; 16] = "2001:2::a:1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let b: [u8; 16] = "2001:2::b:2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let c: [u8; 16] = "2001:2:0:1::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        assert_eq!(client_hash(&a, 64), client_hash(&b, 64), "one /64");
        assert_ne!(client_hash(&a, 128), client_hash(&b, 128));
        assert_ne!(client_hash(&a, 64), client_hash(&c, 64), "another /64");
        assert_eq!(ipv6_prefix(a, 0), [0; 16]);
        assert_eq!(ipv6_prefix(a, 128), a);
        assert_eq!(ipv6_prefix([0xff; 16], 65)[8], 0x80);
        assert_ne!(
            client_hash(&[198, 18, 0, 1], 64),
            client_hash(&[198, 18, 0, 2], 64)
        );
    }

    #[test]
    fn depends_on_every_field() {
        let (src, dst, sport, dport) =
            ([198, 18, 0, 1], [198, 18, 0, 2], [0x30, 0x39], [0x26, 0x93]);
        let base = flow_hash(&src, &dst, sport, dport);
        let changed = [
            flow_hash(&[198, 18, 0, 3], &dst, sport, dport),
            flow_hash(&src, &[198, 18, 0, 3], sport, dport),
            flow_hash(&src, &dst, [0x30, 0x3a], dport),
            flow_hash(&src, &dst, sport, [0x26, 0x94]),
        ];
        for (field, h) in ["source", "destination", "source port", "destination port"]
            .iter()
            .zip(changed)
        {
            assert_ne!(base, h, "the hash ignores the {field}");
        }
    }
}
