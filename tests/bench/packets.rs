//! The frames the datapath cost is measured on: small UDP datagrams as a
//! client in 198.18.0.0/15 (2001:2::/48) would send them, and one TCP
//! segment for the non-UDP path. Built with the test kit's packet builder
//! (tests/support/packets.rs), so their checksums are valid and the
//! datapath takes its normal path (no malformed branch).

use std::net::Ipv4Addr;

use super::support::packets::{non_udp_with, udp, Transport, MAC_DST, MAC_SRC};

const MAC_CLIENT: [u8; 6] = MAC_SRC;
const MAC_BALANCER: [u8; 6] = MAC_DST;
const V4_CLIENT: &str = "198.18.0.1";
const V4_BALANCER: &str = "198.18.0.2";
const V6_CLIENT: &str = "2001:2::1";
const V6_BALANCER: &str = "2001:2::2";

/// UDP payload of every measured datagram: a small one, so the figures are
/// per-packet costs (the end-to-end sender uses the same size).
pub const PAYLOAD: usize = 64;

/// The client port of requests (and the destination of replies).
pub const CLIENT_PORT: u16 = 40000;

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| i as u8).collect()
}

/// IPv4 UDP from the client's port `sport` to the balancer's port `dport`.
pub fn udp4(sport: u16, dport: u16) -> Vec<u8> {
    udp(
        &format!("{V4_CLIENT}:{sport}"),
        &format!("{V4_BALANCER}:{dport}"),
    )
    .payload(&payload())
    .frame()
}

/// IPv4 UDP from the client's port `sport` to `dst`:`dport`, framed for the
/// balancer (its Ethernet address): to the balancer itself, or through it
/// when `dst` is on another host.
pub fn udp4_to(dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let dst = Ipv4Addr::from(dst);
    udp(&format!("{V4_CLIENT}:{sport}"), &format!("{dst}:{dport}"))
        .payload(&payload())
        .frame()
}

/// IPv6 UDP from the client's port `sport` to the balancer's port `dport`.
pub fn udp6(sport: u16, dport: u16) -> Vec<u8> {
    udp(
        &format!("[{V6_CLIENT}]:{sport}"),
        &format!("[{V6_BALANCER}]:{dport}"),
    )
    .payload(&payload())
    .frame()
}

/// A reply: IPv4 UDP from the balancer's backend port `sport` to the client.
pub fn reply4(sport: u16) -> Vec<u8> {
    udp(
        &format!("{V4_BALANCER}:{sport}"),
        &format!("{V4_CLIENT}:{CLIENT_PORT}"),
    )
    .macs(MAC_BALANCER, MAC_CLIENT)
    .payload(&payload())
    .frame()
}

/// IPv4 TCP to `dport` (not UDP: counted and passed untouched).
pub fn tcp4(dport: u16) -> Vec<u8> {
    non_udp_with(
        &format!("{V4_CLIENT}:{CLIENT_PORT}"),
        &format!("{V4_BALANCER}:{dport}"),
        Transport::Tcp,
        &payload(),
    )
    .bytes
}

/// The UDP destination port of an untagged IPv4 or IPv6 frame.
pub fn udp_dport(frame: &[u8]) -> u16 {
    let l4 = if frame[12..14] == [0x86, 0xdd] {
        14 + 40
    } else {
        14 + 20
    };
    u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]])
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_have_the_expected_shape() {
        assert_eq!(
            super::udp4(super::CLIENT_PORT, 9875).len(),
            14 + 20 + 8 + super::PAYLOAD
        );
        assert_eq!(
            super::udp6(super::CLIENT_PORT, 9875).len(),
            14 + 40 + 8 + super::PAYLOAD
        );
        assert_eq!(
            super::udp_dport(&super::udp4(super::CLIENT_PORT, 9875)),
            9875
        );
        assert_eq!(
            super::udp_dport(&super::udp6(super::CLIENT_PORT, 9876)),
            9876
        );
        assert_eq!(super::udp_dport(&super::reply4(9876)), super::CLIENT_PORT);
        assert_eq!(super::tcp4(9875)[23], 6, "IP protocol TCP");
        let routed = super::udp4_to([198, 18, 1, 2], 10000, 5353);
        assert_eq!(routed[30..34], [198, 18, 1, 2], "destination address");
        assert_eq!(super::udp_dport(&routed), 5353);
        assert_eq!(routed[..6], super::MAC_BALANCER, "framed for the balancer");
    }
}
