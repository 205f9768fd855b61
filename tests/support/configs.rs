//! The configurations and addresses the datapath fixtures share, one
//! module per program.

/// The XDP fixtures (tests/datapath_balancing.rs, tests/datapath_parsing.rs).
pub mod xdp {
    use super::super::packets::Frame;

    /// The configuration every test loads. Frontend indices (config order):
    pub const SPECS: &[&str] = &[
        "9875=9876,9877,9878", // RR: port-only, both families, three backends
        "53=5353",             // DNS: port-only
        "198.18.0.1:53=5454",  // DNS_V4: exact IPv4, beats DNS for that address
        "[2001:2::1]:53=6363", // DNS_V6: exact IPv6, beats DNS for that address
    ];
    pub const RR: usize = 0;
    pub const DNS: usize = 1;
    pub const DNS_V4: usize = 2;
    pub const DNS_V6: usize = 3;

    /// Clients, and addresses of this host that no frontend names exactly.
    pub const C4: &str = "192.0.2.10:40000";
    pub const C6: &str = "[2001:db8::10]:40000";
    pub fn h4(port: u16) -> String {
        format!("192.0.2.1:{port}")
    }
    pub fn h6(port: u16) -> String {
        format!("[2001:db8::1]:{port}")
    }
    /// The addresses of the exact frontends.
    pub fn vip4(port: u16) -> String {
        format!("198.18.0.1:{port}")
    }
    pub fn vip6(port: u16) -> String {
        format!("[2001:2::1]:{port}")
    }

    pub fn frame_len(frames: &[&Frame]) -> u64 {
        frames.iter().map(|f| f.len() as u64).sum()
    }
}

/// The TC egress fixtures (tests/egress_replies.rs, tests/egress_untouched.rs).
pub mod egress {
    use super::super::packets::{self, Udp};

    /// The configuration of the brief. Frontend ids follow config order.
    pub const SPECS: &[&str] = &[
        "9875=9876,9877",      // RR: port-only (wildcard, both families)
        "198.18.0.1:53=5353",  // DNS_V4: exact IPv4 frontend
        "[2001:2::1]:53=6363", // DNS_V6: exact IPv6 frontend
    ];
    pub const RR: usize = 0;
    pub const DNS_V4: usize = 1;
    pub const DNS_V6: usize = 2;

    /// Clients the replies go to.
    pub const C4: &str = "192.0.2.10:40000";
    pub const C6: &str = "[2001:db8::10]:40000";
    /// Addresses of this host that no frontend names exactly.
    pub const H4: &str = "192.0.2.1";
    pub const H6: &str = "2001:db8::1";

    pub fn v4(host: &str, port: u16) -> String {
        format!("{host}:{port}")
    }
    pub fn v6(host: &str, port: u16) -> String {
        format!("[{host}]:{port}")
    }

    /// A reply datagram as the egress cases send it: the kit's builder with a
    /// payload of its own and, for IPv4, DF clear (the flags field 0), so that
    /// the DF case differs from the others.
    pub fn udp(src: &str, dst: &str) -> Udp {
        let u = packets::udp(src, dst).payload(b"reply payload");
        if src.starts_with('[') {
            u
        } else {
            u.frag_field(0)
        }
    }
}
