//! IPv6 replies larger than the MTU (hardening item 4): a local backend's
//! 3,000-byte reply leaves the balancer's veth in fragments, and the first
//! fragment, which holds the UDP header, must be rewritten by the TC egress
//! program so that the reassembled datagram reaches a connected client from
//! the frontend port. With tx checksum offload on and off; UDP checksum
//! errors must stay 0 on both sides.
//!
//! Client namespace (veth-a, 2001:2::1) -- balancer namespace (veth-b,
//! 2001:2::2, udplb on veth-b, backend socket on [::]:9876). Both are
//! created and removed by the test; nothing leaves them.

use udplb_testkit as support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::netns::{set_tx_csum, veth_pair, Netns};
use support::process::Udplb;
use support::sockets::resolve_neighbour;

fn big_ipv6_reply(tx_csum: bool) {
    const REPLY_LEN: usize = 3000;
    let client = Netns::new("fcli");
    let lbns = Netns::new("flb");
    veth_pair(&client, &lbns);
    set_tx_csum(&client, "veth-a", tx_csum);
    set_tx_csum(&lbns, "veth-b", tx_csum);
    resolve_neighbour(&client, "2001:2::2");

    let lb = Udplb::start(&lbns, &["veth-b", "9875=9876"]);
    let backend = lbns.udp_bind("[::]:9876");
    let sock = client.udp_bind("[::]:0");
    sock.connect("[2001:2::2]:9875")
        .expect("connect to the frontend");

    let reply: Vec<u8> = (0..REPLY_LEN).map(|i| (i % 251) as u8).collect();
    for round in 0..3u8 {
        sock.send(&[b'q', round]).expect("send the request");
        let mut buf = [0u8; 64];
        let (n, from) = backend.recv_from(&mut buf).expect("request at the backend");
        assert_eq!(&buf[..n], &[b'q', round]);
        let sent = backend.send_to(&reply, from).expect("send the big reply");
        assert_eq!(sent, REPLY_LEN);

        // A connected socket only takes datagrams from the frontend: one from
        // the backend port would be dropped and this would time out.
        let mut got = vec![0u8; 65536];
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = sock.recv(&mut got).unwrap_or_else(|e| {
            panic!(
                "round {round}, tx csum {tx_csum}: no reply from [2001:2::2]:9875 ({e}); \
                 client Udp6InErrors {}, Ip6ReasmOKs {}",
                client.snmp6("Udp6InErrors"),
                client.snmp6("Ip6ReasmOKs")
            )
        });
        assert_eq!(n, REPLY_LEN, "round {round}: reply length");
        assert!(got[..n] == reply[..], "round {round}: reply bytes differ");
    }
    assert!(
        client.snmp6("Ip6ReasmOKs") >= 3,
        "the replies were not fragmented: the test tests nothing"
    );
    assert_eq!(
        client.snmp6("Udp6InCsumErrors"),
        0,
        "client checksum errors"
    );
    assert_eq!(
        lbns.snmp6("Udp6InCsumErrors"),
        0,
        "balancer checksum errors"
    );

    let (status, out) = lb.stop(Signal::SIGINT);
    assert!(status.success(), "{out}");
}

#[test]
fn big_ipv6_reply_tx_checksum_offload_on() {
    big_ipv6_reply(true);
}

#[test]
fn big_ipv6_reply_tx_checksum_offload_off() {
    big_ipv6_reply(false);
}
