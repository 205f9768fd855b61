//! ICMP errors about balanced datagrams (bpf/icmp.h's contract, in its
//! parse order). The model's backends are local: only ports change, and a
//! remote backend's error (icmp_to_egress: IPv4, off lo, its frontend with
//! an address) never arises here; tests/icmp_datapath.rs has those.

use super::*;

/// Sets the 16-bit word at `at` and returns the old value.
pub(super) fn put16(frame: &mut [u8], at: usize, v: u16) -> u16 {
    let old = be16(frame, at);
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
    old
}

/// Rewrites the quoted datagram's port at `field` (0 source, 2
/// destination) to `port`: the quoted UDP checksum as for any port change
/// (IPv4 0 stays 0), and the ICMP checksum for both changed words.
pub(super) fn icmp_set_port(frame: &mut [u8], m: Icmp, quoted: &Datagram, field: usize, port: u16) {
    let at = quoted.udp + field;
    let check_at = quoted.udp + 6;
    let old_port = be16(frame, at);
    let old_check = be16(frame, check_at);
    set_port(frame, quoted, field, port);
    let new_check = be16(frame, check_at);
    let mut c = be16(frame, m.at + 2);
    c = checksum::update(c, old_port, port);
    if new_check != old_check {
        c = checksum::update(c, old_check, new_check);
    }
    put16(frame, m.at + 2, c);
}

pub(super) fn icmp(
    out: &mut Outcome,
    m: Icmp,
    config: &ModelConfig,
    state: &ModelState,
    on_loopback: bool,
) -> Stop {
    let f = out.output.clone();
    let end = m.at + m.len;
    if m.len < 8 {
        return (reason::MALFORMED, "ICMP: header not within the message");
    }
    let (typ, code) = (f[m.at], f[m.at + 1]);
    let translated = if m.ipv6 {
        matches!(typ, 1..=3)
    } else {
        matches!(typ, 3 | 11)
    };
    if !translated {
        return (reason::NOT_UDP, "ICMP: not an error udplb translates");
    }
    let too_big = if m.ipv6 {
        typ == 2
    } else {
        typ == 3 && code == 4
    };
    let unreachable = if m.ipv6 {
        typ == 1
    } else {
        typ == 3 && code != 4
    };
    let off = m.at + 8;
    let (udp, src, dst) = if m.ipv6 {
        if off + IPV6_HLEN > end {
            return (reason::MALFORMED, "ICMP: quoted IPv6 header cut");
        }
        if f[off] >> 4 != 6 {
            return (reason::MALFORMED, "ICMP: quoted version is not 6");
        }
        if f[off + 6] != IPPROTO_UDP {
            return (reason::NOT_UDP, "ICMP: quoted next header is not UDP");
        }
        let a = |at: usize| {
            let o: [u8; 16] = f[at..at + 16].try_into().unwrap();
            IpAddr::V6(Ipv6Addr::from(o))
        };
        (off + IPV6_HLEN, a(off + 8), a(off + 24))
    } else {
        if off + IPV4_MIN_HLEN > end {
            return (reason::MALFORMED, "ICMP: quoted IPv4 header cut");
        }
        if f[off] >> 4 != 4 {
            return (reason::MALFORMED, "ICMP: quoted version is not 4");
        }
        let hlen = usize::from(f[off] & 0x0f) * 4;
        if hlen < IPV4_MIN_HLEN {
            return (reason::MALFORMED, "ICMP: quoted IHL < 5");
        }
        if off + hlen > end {
            return (reason::MALFORMED, "ICMP: quoted IPv4 options cut");
        }
        if f[off + 9] != IPPROTO_UDP {
            return (reason::NOT_UDP, "ICMP: quoted protocol is not UDP");
        }
        if be16(&f, off + 6) & 0x1fff != 0 {
            return (reason::NOT_UDP, "ICMP: quoted later fragment");
        }
        let a = |at: usize| IpAddr::V4(Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]));
        (off + hlen, a(off + 12), a(off + 16))
    };
    if udp + UDP_HLEN > end {
        return (reason::MALFORMED, "ICMP: quoted UDP header cut");
    }
    let quoted = Datagram {
        udp,
        ipv6: m.ipv6,
        src,
        dst,
    };
    let (sport, dport) = (be16(&f, udp), be16(&f, udp + 2));
    // Toward the client: the quoted destination is a backend (matched as a
    // reply's source is).
    if let Some(fe) = config.reply_for(dst, dport, on_loopback) {
        // Off lo, an error about a backend must come from where the route
        // to that backend leads (README "ICMP errors"). The model's
        // backends are local: their errors come from this host and leave
        // through egress, so one arriving from the wire is forged.
        if !on_loopback {
            out.verdict = XDP_DROP;
            return (
                reason::SPOOFED_REPLY,
                "ICMP error about a local backend arriving from the wire",
            );
        }
        icmp_set_port(&mut out.output, m, &quoted, 2, config.frontends[fe].port);
        if unreachable {
            let b = config.frontends[fe]
                .backends
                .iter()
                .position(|&p| p == dport);
            out.icmp_error = b.map(|b| (fe, b));
        }
        return (
            reason::ICMP_TRANSLATED,
            "ICMP error about a datagram to a backend",
        );
    }
    // Packet too big about a reply from a frontend: to the backend whose
    // reply pinned that flow for that frontend (the client is the quote's
    // destination, the frontend its source); without such a pin (none,
    // another frontend's, no flow table), to the ring's backend for the
    // flow (or its client), for the model's backends are all local (the program drops it
    // for a remote one); with no ring, dropped.
    if too_big {
        if let Some(fe) = config.frontend_for(src, sport) {
            let fr = &config.frontends[fe];
            let pin = match fr.pins {
                true => state
                    .flows
                    .get(&super::pin_key(dst, dport, src, sport, fr.client_bits)),
                false => None,
            };
            let pinned = pin.filter(|&&(pf, _)| pf == fe).map(|&(_, b)| b);
            let request = Flow {
                src: dst,
                dst: src,
                sport: dport,
                dport: sport,
            };
            let ring = (!fr.ring.is_empty())
                .then(|| fr.ring[request.hash_for(fr.client_bits) as usize % fr.ring.len()]);
            let Some(b) = pinned.or(ring) else {
                out.verdict = XDP_DROP;
                return (
                    reason::ICMP_NO_FLOW,
                    "packet too big about a reply of a frontend without backends",
                );
            };
            icmp_set_port(
                &mut out.output,
                m,
                &quoted,
                0,
                config.frontends[fe].backends[b],
            );
            return (
                reason::ICMP_TO_BACKEND,
                "packet too big about a reply, to its backend",
            );
        }
    }
    (reason::NOT_UDP, "ICMP error not about a balanced datagram")
}
