//! The datapath's flow hash (bpf/flow_hash.h `flow_hash`), for tests and
//! the reference model: MurmurHash3 (x86_32) over the 32-bit words of source
//! address, destination address and ports as they sit in the packet.

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
