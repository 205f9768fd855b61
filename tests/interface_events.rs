//! Interfaces that come and go under a running udplb: the veth it balances
//! on is deleted and created again with the same name and addresses; udplb
//! says so both times and balances on the new one.

use udplb_testkit as support;

use std::net::UdpSocket;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::netns::*;
use support::process::*;
use support::sockets::*;

/// One datagram from the client to the frontend reaches the backend, and
/// the backend's answer comes back from the frontend.
fn balanced(client_ns: &Netns, backend: &UdpSocket) -> Result<(), String> {
    let client = client_ns.enter(|| {
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.connect("198.18.0.2:9875").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        c
    });
    client.send(b"request").unwrap();
    let mut buf = [0u8; 64];
    backend
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let (n, from) = backend
        .recv_from(&mut buf)
        .map_err(|e| format!("request did not reach the backend: {e}"))?;
    assert_eq!(&buf[..n], b"request");
    backend.send_to(b"reply", from).unwrap();
    let n = client
        .recv(&mut buf)
        .map_err(|e| format!("reply not received from the frontend: {e}"))?;
    assert_eq!(&buf[..n], b"reply");
    Ok(())
}

#[test]
fn an_interface_deleted_and_created_again_is_attached_again() {
    let client = Netns::new("linkc");
    let lbns = Netns::new("linkb");
    veth_pair(&client, &lbns);
    resolve_neighbour(&client, "198.18.0.2");
    let backend = lbns.udp_bind("0.0.0.0:9876");
    let mut lb = Udplb::start(&lbns, &["veth-b", "9875=9876"]);
    balanced(&client, &backend).expect("before");

    // Deleting one end of a veth pair deletes both.
    lbns.ip(&["link", "del", "veth-b"]);
    let gone = lb.wait_for("went away", Duration::from_secs(5));
    assert!(gone.contains("veth-b"), "{gone}");

    veth_pair(&client, &lbns);
    lb.wait_for("veth-b is back", Duration::from_secs(5));
    lb.output.clear();
    lb.wait_for("attached to veth-b", Duration::from_secs(5));
    assert!(
        lbns.xdp_on("veth-b").contains("xdp"),
        "no XDP on the new veth-b"
    );
    resolve_neighbour(&client, "198.18.0.2");
    // The datagram reaches 9876 only through udplb: nothing listens on 9875.
    let no_ports = lbns.snmp("Udp", "NoPorts");
    balanced(&client, &backend).expect("on the new veth");
    assert_eq!(lbns.snmp("Udp", "NoPorts"), no_ports, "unbalanced datagram");

    let (status, out) = lb.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
    assert!(out.contains("backend 9876"), "{out}");
}
