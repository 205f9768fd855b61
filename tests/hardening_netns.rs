//! Hardening, with real sockets in network namespaces the tests make and
//! remove: what `--force` and `--pin` leave behind, jumbo MTUs, output to a
//! closed pipe.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// Pins live under /sys/fs/bpf/udplb/<iface> for the whole host: interface
/// names of the test's own (at most 15 bytes).
fn unique_dev(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 1_000_000)
}

/// Removes the test's pins even when the test fails half-way.
struct Unpin(Vec<String>);

impl Drop for Unpin {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = Command::new(BIN).args(["--unpin", dev]).output();
        }
    }
}

fn pin_dir(dev: &str) -> String {
    format!("/sys/fs/bpf/udplb/{dev}")
}

/// A `--pin` start that fails on its second interface removes the pin
/// directories it made for both.
#[test]
fn failed_pin_start_leaves_no_directories() {
    let ns = Netns::new("pinfail");
    let (a, b) = (unique_dev("upfa"), unique_dev("upfb"));
    ns.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    ns.ip(&["link", "set", &a, "up"]);
    ns.ip(&["link", "set", &b, "up"]);
    let _unpin = Unpin(vec![a.clone(), b.clone()]);
    // Something already on the second interface makes the start fail there.
    let first = Udplb::start(&ns, &[&b, "9875=9876"]);

    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .args([BIN, "--pin", &format!("{a},{b}"), "9875=9876"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already has XDP program"), "{stderr}");
    for dev in [&a, &b] {
        assert!(
            !Path::new(&pin_dir(dev)).exists(),
            "{} left behind",
            pin_dir(dev)
        );
    }
    assert_eq!(ns.xdp_on(&a), "", "XDP left on {a}");
    let (status, out) = first.stop(Signal::SIGTERM);
    assert!(status.success(), "{out}");
}
