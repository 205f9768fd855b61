//! udplb where a fresh VM or a container leaves it: nothing mounted on
//! /sys/fs/bpf (no systemd), no kernel configuration file (no /boot, a
//! kernel without IKCONFIG). The host is never touched: each test changes
//! mounts only in a private mount namespace of its own, where a shell
//! (udplb's parent, as a login shell or systemd would be) stays for the
//! whole run.

use udplb_testkit as support;

use std::process::Command;

use support::netns::*;
use support::process::BIN;
use support::require_root;
use support::servers::Echo;

/// Runs the shell `script` in a private mount namespace of its own, with
/// $NS the test namespace's name and $BIN udplb: whether it succeeded, and
/// what it printed (stdout, then stderr).
fn in_a_private_mount_namespace(ns: &Netns, script: &str) -> (bool, String) {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("NS", &ns.name)
        .env("BIN", BIN)
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `--pin` mounts a BPF filesystem itself, says so, and its pins outlive
/// udplb.
#[test]
fn pin_mounts_a_bpf_filesystem_where_none_is() {
    require_root();
    let ns = Netns::new("pinfresh");
    // Every wait is bounded; udplb is stopped by the PID the shell got.
    let script = r#"
        set -u
        umount -l /sys/fs/bpf 2>/dev/null
        if [ "$(stat -f -c %T /sys/fs/bpf)" = bpf_fs ]; then echo "still mounted"; exit 1; fi
        nsenter --net="/run/netns/$NS" "$BIN" --pin lo 9875=9876 &
        pid=$!
        i=0
        while [ ! -e /sys/fs/bpf/udplb/lo/xdp_link ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
        kill -TERM $pid
        wait $pid
        echo "exit $?"
        echo "fs $(stat -f -c %T /sys/fs/bpf)"
        echo "left: $(ls /sys/fs/bpf/udplb/lo | tr '\n' ' ')"
        nsenter --net="/run/netns/$NS" ip -d link show lo | grep -o 'prog/xdp id [0-9]*' | sed 's/^/attached: /'
        nsenter --net="/run/netns/$NS" "$BIN" --unpin lo
    "#;
    let (ok, text) = in_a_private_mount_namespace(&ns, script);
    assert!(ok, "{text}");
    for want in [
        "udplb: nothing was mounted on /sys/fs/bpf: mounted a BPF filesystem there",
        "pinned under /sys/fs/bpf/udplb/lo",
        "exit 0",
        "fs bpf_fs",
        "attached: prog/xdp id",
        "udplb: unpinned lo",
    ] {
        assert!(text.contains(want), "no '{want}' in:\n{text}");
    }
    let left = text.lines().find(|l| l.starts_with("left:")).unwrap_or("");
    assert!(left.contains("xdp_link"), "pins gone with udplb: {text}");
    assert!(
        !text.contains("mount namespace of its own"),
        "refused as private: {text}"
    );
    assert_eq!(ns.xdp_on("lo"), "", "--unpin detached it");
}

/// With no /boot/config-* and no /proc/config.gz, udplb loads with its
/// flow table (Maglev: on by default) and pins a flow that was answered.
#[test]
fn loads_without_a_kernel_configuration() {
    require_root();
    let ns = Netns::new("nokconf");
    let _echoes = [9876, 9877].map(|p| Echo::named(&ns, &format!("127.0.0.1:{p}"), "b"));
    let script = r#"
        set -u
        mount -t tmpfs none /boot
        [ -e /proc/config.gz ] && mount --bind /dev/null /proc/config.gz
        [ -z "$(ls /boot)" ] && ! zcat /proc/config.gz >/dev/null 2>&1 && echo "no kernel config"
        nsenter --net="/run/netns/$NS" "$BIN" --sched maglev lo 9875=9876,9877 &
        pid=$!
        i=0
        while ! nsenter --net="/run/netns/$NS" "$BIN" status >/dev/null 2>&1 && [ $i -lt 100 ]; do
            kill -0 $pid 2>/dev/null || break
            sleep 0.1; i=$((i+1))
        done
        nsenter --net="/run/netns/$NS" python3 -c '
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.connect(("127.0.0.1", 9875)); s.send(b"x"); print("answer", s.recv(100))'
        kill -TERM $pid
        wait $pid
        echo "exit $?"
    "#;
    let (_, text) = in_a_private_mount_namespace(&ns, script);
    let want = [
        "no kernel config",
        "attached to lo",
        "answer b'b x'",
        "pin_created 1",
        "exit 0",
    ];
    for want in want {
        assert!(text.contains(want), "no '{want}' in:\n{text}");
    }
    assert!(!text.contains("Kconfig"), "{text}");
}
