//! udplb tells a veth from other interfaces: on kernels before 5.13 a veth
//! among the interfaces decides the XDP mode (`host::mode_for_veths`,
//! whose decision is unit-tested in the library), so the detection itself
//! is shown here on real devices.

use udplb_testkit as support;

use support::netns::{veth_pair, Netns};
use udplb::datapath::host;

#[test]
fn a_veth_is_told_from_lo_a_bridge_and_a_missing_interface() {
    let (a, b) = (Netns::new("vetha"), Netns::new("vethb"));
    veth_pair(&a, &b);
    a.ip(&["link", "add", "br-t", "type", "bridge"]);
    a.enter(|| {
        assert!(host::is_veth("veth-a"));
        assert!(!host::is_veth("lo"));
        assert!(!host::is_veth("br-t"));
        assert!(!host::is_veth("nosuch0"));
    });
}
