//! The test kit, a library crate of its own (`udplb-testkit`, a
//! dev-dependency of udplb) compiled once for every test binary, the bench
//! and the differential test, which each name it `use udplb_testkit as
//! support;`. It links the same udplb library as they do.
//!
//! - [`packets`]: the one packet builder ([`packets::udp`] and friends);
//! - [`frame`]: a built frame, its field editors and the expected output of
//!   a port rewrite;
//! - [`checksum`]: the one reference checksum (RFC 1071/1624/768), from
//!   scratch, independent of the datapath's own code;
//! - [`runner`]: the one BPF_PROG_TEST_RUN runner for XDP and TC, in the
//!   shape of Katran's `BpfTester` (case tables, byte-for-byte comparison,
//!   counter deltas, failure on any mismatch);
//! - [`configs`]: the configurations the XDP and egress fixtures share;
//! - [`forwarding`]: the remote-backend fixture (a private routing topology
//!   and the expected output of a forwarded frame);
//! - [`netns`]: namespaces and veths the test creates and removes;
//! - [`bgp`]: BIRD 2 daemons and the BGP topology;
//! - [`servers`]: [`servers::Echo`], the one UDP echo backend, and real
//!   servers (dnsmasq, http.server) in a namespace;
//! - [`process`]: a udplb started in a namespace and stopped by PID;
//! - [`operate`]: `udplb status --json` and /metrics (parsed by
//!   Prometheus's own Python parser) of a running udplb;
//! - [`prometheus`]: a real Prometheus server scraping udplb in a test
//!   namespace, PromQL through its HTTP API, `promtool check metrics`;
//! - [`browser`]: a real headless Chromium (Debian's, driven by
//!   Playwright) in a namespace, for the status page;
//! - [`sockets`]: real datagrams, bounded in count and time;
//! - [`quic`]: real QUIC (aioquic servers issuing QUIC-LB CIDs, clients
//!   that rebind or migrate), bounded in count and time;
//! - [`cpu`]: CPU pinning;
//! - [`dsr`]: the expected frames of direct server return (ipip, gue, l2);
//! - [`model`]: the reference model of the datapath (differential test);
//! - [`hex`]: dumps and diffs for failure messages.
//!
//! Not every test file uses every helper.

pub mod bgp;
pub mod browser;
pub mod checksum;
pub mod configs;
pub mod cpu;
pub mod dsr;
pub mod forwarding;
pub mod frame;
pub mod hex;
pub mod model;
pub mod netns;
pub mod operate;
pub mod packets;
pub mod process;
pub mod prometheus;
pub mod quic;
pub mod runner;
pub mod servers;
pub mod sockets;
pub mod topology;

/// `d` stretched for a slow machine: times UDPLB_TEST_SLOWDOWN (an integer,
/// default 1), which `make test-kernels` sets in its emulated VMs, where
/// everything runs 10-30 times slower. Only for waits that bound how long
/// a test waits for something to happen, never for what must not.
pub fn slow(d: std::time::Duration) -> std::time::Duration {
    let factor = std::env::var("UDPLB_TEST_SLOWDOWN")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    d * factor
}

/// Whether the running kernel is `major.minor` or newer.
/// (udplb's own reading of the release, which decides its veth mode.)
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let version = udplb::datapath::host::kernel_version();
    assert_ne!(version, (0, 0), "the kernel's release is unreadable");
    version >= (major, minor)
}

/// Fails the test, with the reason, unless we are root: a test that passes
/// because it did not run would be a lie.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (BPF programs, XDP, network namespaces): run `sudo make test`"
        );
    }
}
