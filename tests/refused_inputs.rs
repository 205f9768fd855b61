//! Hardening: inputs that must be refused before anything is loaded,
//! attached or deleted (interface names that are paths, missing
//! capabilities, unusable addresses). Each refusal is one line and exit 2.

use udplb_testkit as support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::netns::*;
use support::operate::udplb_command;
use support::process::*;
use support::require_root;

/// Runs `cmd` (already pointed at udplb) and checks it exits 2 with one
/// line on stderr containing `message` and nothing on stdout.
fn refused(mut cmd: Command, message: &str) -> Output {
    let out = cmd.output().expect("run udplb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{cmd:?}: stderr: {stderr}");
    assert!(
        stderr.contains(message),
        "{cmd:?}: stderr lacks {message:?}: {stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{cmd:?}: printed on stdout");
    out
}

/// A directory of the test's own with a few files in it; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("udplbt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a", "b", "keep-me"] {
            std::fs::write(dir.join(f), f).unwrap();
        }
        Scratch(dir)
    }

    fn files(&self) -> usize {
        std::fs::read_dir(&self.0).map(|d| d.count()).unwrap_or(0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// udplb with `args` in a private mount namespace with a BPF filesystem of
/// its own, where /sys/fs/bpf/udplb exists: whatever a bad `--unpin` does,
/// the host's /sys/fs/bpf is never at stake.
fn udplb_on_private_bpffs(args: &[&str]) -> Command {
    let script = r#"mount -t bpf bpf /sys/fs/bpf && mkdir -p /sys/fs/bpf/udplb && exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        BIN,
    ])
    .args(args);
    cmd
}

/// `--unpin` with a name that is a path must delete nothing:
/// /sys/fs/bpf/udplb/../../../../<scratch> is the scratch directory.
#[test]
fn unpin_refuses_a_path() {
    require_root();
    let scratch = Scratch::new("unpin-path");
    let rel = format!("../../../..{}", scratch.0.display());
    refused(
        udplb_on_private_bpffs(&["--unpin", &rel]),
        "is not an interface name",
    );
    assert_eq!(
        scratch.files(),
        3,
        "--unpin deleted files of {:?}",
        scratch.0
    );

    for name in ["..", ".", "a/b", "eth 0", "sixteen-bytes-xx", ""] {
        refused(
            udplb_on_private_bpffs(&["--unpin", name]),
            "is not an interface name",
        );
    }
}

/// The same rule for the interface list and the config file's `interface`.
#[test]
fn interface_names_are_checked_everywhere() {
    let ns = Netns::new("ifname");
    for list in ["..", "lo,..", "lo,a/b", "sixteen-bytes-xx"] {
        refused(
            udplb_command(&ns, &[], &[list, "9875=9876"]),
            "is not an interface name",
        );
    }
    let file = TempFile::new(
        "ifname.toml",
        "interface = \"lo,..\"\n[[frontend]]\nlisten = 9875\nbackends = [9876]\n",
    );
    let out = refused(
        udplb_command(&ns, &[], &["--config", file.path()]),
        "is not an interface name",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":1: interface: "), "{stderr}");
    assert_eq!(ns.xdp_on("lo"), "");
}

/// udplb in `ns` as root with only the capabilities `caps` (setpriv: the
/// bounding set limits what exec grants; nothing inherited or ambient).
fn udplb_with_caps(ns: &Netns, caps: &str, args: &[&str]) -> Command {
    let bounding = format!("--bounding-set=-all{caps}");
    let setpriv = [
        "setpriv",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        &bounding,
    ];
    udplb_command(ns, &setpriv, args)
}

/// CAP_BPF and CAP_NET_ADMIN do not suffice: the verifier refuses udplb's
/// program without CAP_PERFMON. Say so in one line before loading.
#[test]
fn missing_capabilities_are_named() {
    let ns = Netns::new("caps");
    refused(
        udplb_with_caps(&ns, ",+bpf,+net_admin", &["lo", "9875=9876"]),
        "udplb needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (missing: CAP_PERFMON); run as root",
    );
    refused(
        udplb_with_caps(&ns, ",+perfmon", &["lo", "9875=9876"]),
        "(missing: CAP_BPF, CAP_NET_ADMIN)",
    );
    // --force walks the ids of other programs' links: CAP_SYS_ADMIN.
    refused(
        udplb_with_caps(
            &ns,
            ",+bpf,+net_admin,+perfmon",
            &["--force", "lo", "9875=9876"],
        ),
        "udplb --force needs CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN \
         (missing: CAP_SYS_ADMIN); run as root",
    );
    assert_eq!(ns.xdp_on("lo"), "");
}

/// `ip netns exec` mounts /sys afresh for its command: a BPF filesystem
/// there is private to that command, and pins in it vanish when udplb exits.
/// `--pin` must be refused there, not claimed.
#[test]
fn pin_under_ip_netns_exec_is_refused() {
    let ns = Netns::new("pinexec");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN, "--pin", "lo", "9875=9876"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let out = child.wait_with_output().unwrap();
            panic!(
                "udplb --pin ran under ip netns exec: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mount namespace of its own") && stderr.contains("ip netns exec"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(ns.xdp_on("lo"), "");
}

#[test]
fn announcing_what_cannot_be_announced() {
    let ns = Netns::new("ann");
    refused(
        udplb_command(
            &ns,
            &[],
            &["--announce", "udplb9", "lo", "198.18.100.1:53=5301"],
        ),
        "announce interface udplb9: no such interface; create it first",
    );
    refused(
        udplb_command(&ns, &[], &["--announce", "lo", "lo", "53=5301"]),
        "--announce: frontend *:53 has no address to announce",
    );
    // Addresses no router carries to this host: refused, not announced
    // (and not logged as failing many times a second).
    for (frontend, kind) in [
        ("224.0.0.1:53=5301", "224.0.0.1 is a multicast address"),
        (
            "255.255.255.255:53=5301",
            "255.255.255.255 is the broadcast address",
        ),
        (
            "240.0.0.1:53=5301",
            "240.0.0.1 is a reserved (class E) address",
        ),
        ("0.0.0.1:53=5301", "0.0.0.1 is in 0.0.0.0/8"),
        ("127.0.0.2:53=5301", "127.0.0.2 is a loopback address"),
        ("[fe80::1]:53=5301", "fe80::1 is a link-local address"),
        ("[ff02::1]:53=5301", "ff02::1 is a multicast address"),
        (
            "[::2]:53=5301",
            "::2 is not a global or unique local unicast address",
        ),
    ] {
        refused(
            udplb_command(&ns, &[], &["--announce", "lo", "lo", frontend]),
            &format!(
                "--announce: frontend {}: {kind}",
                &frontend[..frontend.len() - 5]
            ),
        );
    }
    let conf = TempFile::new(
        "lb.toml",
        "interface = \"lo\"\nannounce_interface = \"lo\"\n[[frontend]]\n\
         listen = \"198.18.100.1:53\"\nbackends = [5301]\n[[frontend]]\n\
         listen = \"[ff02::1]:53\"\nbackends = [5302]\n",
    );
    refused(
        udplb_command(&ns, &[], &["--config", conf.path()]),
        ":7: announce: frontend [ff02::1]:53: ff02::1 is a multicast address",
    );
    assert_eq!(ns.xdp_on("lo"), "", "nothing attached");
}
