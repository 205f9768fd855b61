//! The command line as a user meets it: every bad input exits 2 with one
//! clear line on stderr, and leaves nothing attached.

use udplb_testkit as support;

use std::process::{Command, Output};

use support::netns::*;
use support::process::*;

/// Runs udplb in `ns`; one that is still running after 20 s (longer on a
/// slow machine: support::slow) has accepted input it should have refused,
/// and is killed and fails the test.
fn run_in(ns: &Netns, args: &[&str]) -> Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run udplb");
    let limit = support::slow(std::time::Duration::from_secs(20));
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{args:?}: still running after {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// Runs udplb in a fresh namespace with `args`; it must exit 2 with one
/// line on stderr containing `message`, print nothing on stdout, and leave
/// no XDP program on lo.
fn rejects(args: &[&str], message: &str) {
    let ns = Netns::new("cli");
    let out = run_in(&ns, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: exit {:?}, stderr: {stderr}",
        out.status
    );
    assert!(
        stderr.contains(message),
        "{args:?}: stderr lacks {message:?}: {stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?}: printed on stdout");
    assert_eq!(ns.xdp_on("lo"), "", "{args:?}: left XDP attached");
}

#[test]
fn bad_ports() {
    rejects(
        &["lo", "0=9876"],
        "frontend port 0 is out of range: ports are 1-65535",
    );
    rejects(&["lo", "65536=9876"], "out of range");
    rejects(&["lo", "9875=0"], "backend 0 is out of range");
    rejects(&["lo", "9875=65536"], "out of range");
    rejects(&["lo", "9875=http"], "'http' is not a port number");
}

#[test]
fn bad_backend_lists() {
    rejects(&["lo", "9875"], "expected FRONTEND=BACKENDS");
    rejects(&["lo", "9875="], "no backends given");
    rejects(
        &["lo", "9875=9876,,9877"],
        "empty entry in the backend list",
    );
    rejects(&["lo", "9875=9876,9876"], "backend 9876 is listed twice");
    rejects(
        &["lo", "9875=198.18.0.2:53"],
        "so the frontend needs an address (IPv4:PORT or [IPv6]:PORT)",
    );
    rejects(
        &["lo", "198.18.0.1:53=[2001:2::2]:53"],
        "is of another address family",
    );
    rejects(
        &["lo", "198.18.0.1:53=198.18.0.2"],
        "needs a port: ADDRESS:PORT",
    );
    rejects(&["lo,lo", "9875=9876"], "interface lo is listed twice");
    rejects(&["lo,", "9875=9876"], "empty interface name");
}

#[test]
fn duplicates_loops_and_shared_backends() {
    rejects(&["lo", "9875=9876", "9875=9877"], "duplicates frontend");
    rejects(&["lo", "9875=9875"], "datagrams would loop");
    rejects(&["lo", "9875=9876", "9876=9877"], "datagrams would loop");
    rejects(&["lo", "9875=9876", "9000=9876"], "serves both");
}

#[test]
fn bad_addresses() {
    rejects(&["lo", "198.18.0.300:53=9876"], "is not an IPv4 address");
    rejects(&["lo", "[2001:2::g]:53=9876"], "is not an IPv6 address");
    rejects(&["lo", "2001:2::1:53=9876"], "[ADDRESS]:PORT");
}

#[test]
fn limits() {
    let backends: Vec<String> = (20000..21025).map(|p| p.to_string()).collect();
    rejects(
        &["lo", &format!("9875={}", backends.join(","))],
        "1025 backends given; the limit is 1024",
    );
    let fronts: Vec<String> = (0..257)
        .map(|i| format!("{}={}", 1000 + i, 30000 + i))
        .collect();
    let mut args = vec!["lo"];
    args.extend(fronts.iter().map(String::as_str));
    rejects(&args, "257 frontends given; the limit is 256");
}

#[test]
fn bad_quic_server_ids() {
    let quic = ["--sched", "quic", "lo"];
    let run = |spec: &str, message: &str| rejects(&[&quic[..], &[spec]].concat(), message);
    run(
        "443=9876#0a01,9877",
        "backend 9877 needs a server ID on a quic frontend",
    );
    run(
        "443=9876#0a01,9877#0a01",
        "backends 9876 and 9877 have the same server ID 0a01",
    );
    run(
        "443=9876#0a01,9877#0a0102",
        "server ID 0a0102 is 3 bytes long, not 2",
    );
    run(
        "443=9876#xyz",
        "server ID 'xyz' is not 1 to 15 bytes in hex",
    );
    rejects(&["lo", "443=9876#0a01"], "only a quic frontend uses");
    rejects(
        &[
            "--sched",
            "quic",
            "--quic-cid-len",
            "6",
            "lo",
            "443=9876#0a01",
        ],
        "use 7 to 20",
    );
}

#[test]
fn unknown_interface() {
    rejects(&["nosuchif0", "9875=9876"], "unknown interface 'nosuchif0'");
}

#[test]
fn native_mode_on_lo() {
    rejects(
        &["--xdp-mode", "native", "lo", "9875=9876"],
        "lo has no native XDP support",
    );
}

#[test]
fn no_privileges() {
    let ns = Netns::new("nopriv");
    // setpriv: run as nobody with every capability dropped.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args([
            "--inh-caps=-all",
            "--bounding-set=-all",
            BIN,
            "lo",
            "9875=9876",
        ])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "udplb needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (missing: CAP_BPF, \
             CAP_NET_ADMIN, CAP_PERFMON); run as root"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_eq!(ns.xdp_on("lo"), "");
}

/// The usage lines that follow `Usage:` in `text` (help or an error).
fn usage_lines(text: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Usage: "));
    let first = lines.next().unwrap_or_else(|| panic!("no usage in {text}"));
    std::iter::once(&first["Usage: ".len()..])
        .chain(lines.take_while(|l| l.starts_with("       udplb ")))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn clap_errors_exit_2() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "FRONTEND=BACKENDS",
        "--xdp-mode",
        "--force",
        "--stats",
        "[2001:2::1]:53",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    let usage = usage_lines(&text);
    assert_eq!(
        usage,
        [
            "udplb [OPTIONS] <IFACE> <FRONTEND=BACKENDS>...",
            "udplb [OPTIONS] --config <FILE>",
            "udplb --unpin <IFACE>",
            "udplb status [IFACE] [--json]",
            "udplb reload [IFACE]",
        ]
    );
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        "udplb 0.1.0"
    );

    for args in [
        &[][..],
        &["lo"][..],
        &["--xdp-mode", "fast", "lo", "1=2"][..],
        &["--stats", "0", "lo", "1=2"][..],
        &["--config", "lb.toml", "lo", "9875=9876"][..],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        // The prefix of every other error, and no second `error:`.
        assert!(stderr.starts_with("udplb: error: "), "{args:?}: {stderr}");
        assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
        if stderr.contains("Usage:") {
            assert_eq!(usage_lines(&stderr), usage, "{args:?}: {stderr}");
        }
    }
    // The conflict names what is wrong, and the usage it shows does not
    // offer --config with an interface (clap's own usage line did).
    let out = Command::new(BIN)
        .args(["--config", "lb.toml", "lo", "9875=9876"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("udplb: error: the argument '--config <FILE>' cannot be used with"),
        "{stderr}"
    );
    assert!(!stderr.contains("--config <FILE> [IFACE]"), "{stderr}");
    assert!(stderr.contains("Usage:"), "{stderr}");
}

/// The README's "Command line" block is the usage --help prints.
#[test]
fn readme_usage_is_the_help_usage() {
    let readme = include_str!("../README.md");
    let block: Vec<String> = readme
        .split("## Command line\n\n")
        .nth(1)
        .expect("a Command line section")
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .collect();
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(block, usage_lines(&String::from_utf8_lossy(&help.stdout)));
    let sub = Command::new(BIN)
        .args(["status", "--help"])
        .output()
        .unwrap();
    assert_eq!(
        usage_lines(&String::from_utf8_lossy(&sub.stdout)),
        [block[3].clone()]
    );
}

#[test]
fn refuses_to_replace_another_program_without_force() {
    let ns = Netns::new("force");
    let first = Udplb::start(&ns, &["lo", "9875=9876"]);
    let before = ns.xdp_on("lo");
    let out = run_in(&ns, &["lo", "9875=9877"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("lo already has XDP program id"), "{stderr}");
    assert!(
        stderr.contains("name udplb_xdp") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        ns.xdp_on("lo"),
        before,
        "the existing program was disturbed"
    );

    // With --force the second instance takes over; the first one's link is gone.
    let second = Udplb::start(&ns, &["--force", "lo", "9875=9877"]);
    assert_ne!(ns.xdp_on("lo"), before);
    let (status, _) = second.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success());
    assert_eq!(ns.xdp_on("lo"), "");
    let (status, out) = first.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "{out}");
}

/// Every test runs the kit's `process::BIN`, which tests/support/build.rs
/// works out from cargo's layout of target/: it must be the udplb cargo
/// built for these tests, not a stale or missing one.
#[test]
fn the_kit_runs_the_udplb_of_this_build() {
    assert_eq!(BIN, env!("CARGO_BIN_EXE_udplb"));
}
