#!/usr/bin/env bash
# Installs the system packages udplb needs to build and test, on Debian or
# Ubuntu, as root. Quick and silent when everything is already there.
#
#   build: clang (compiles bpf/*.bpf.c), make, pkg-config, gcc, libelf-dev and
#          zlib1g-dev (libbpf, vendored and linked statically by libbpf-sys)
#   tests: iproute2 (ip netns, veth), ethtool (checksum offload on/off),
#          util-linux (setpriv, taskset), bpftool (map dumps), and a real DNS
#          server and client (dnsmasq-base, bind9-dnsutils for dig), procps
#          (sysctl, for forwarding in the test balancers), bird2 (real BGP
#          sessions between test balancers and a test router), prometheus (a
#          real Prometheus server scraping udplb, and promtool, in
#          tests/metrics_agree.rs; the service the package enables is
#          disabled again); python3 and
#          pip, for the real Prometheus parser (prometheus-client, PyPI) that
#          reads /metrics in the tests, and a real QUIC stack (aioquic, PyPI,
#          pinned) for the QUIC clients and servers of tests/quic.rs;
#          systemd (only for systemd-analyze: verify and security of the
#          unit; systemd need not be running) and strace (the system calls
#          the unit's filter must allow), for tests/install.rs; chromium,
#          the real browser that loads the status page in
#          tests/status_page.rs, driven by Playwright (PyPI, pinned; it uses
#          Debian's /usr/bin/chromium and never downloads a browser)
#   make test-kernels: qemu-system-x86 (no recommends), busybox-static and
#          kmod (the guest's init and modprobe), and virtme-ng (PyPI, pinned),
#          which boots another kernel over this filesystem; apt-get and dpkg
#          (already there) fetch Debian's kernels (scripts/kernels/fetch.sh)
set -euo pipefail

packages=(clang make pkg-config gcc libelf-dev zlib1g-dev iproute2 ethtool util-linux bpftool
          dnsmasq-base bind9-dnsutils procps bird2 prometheus python3 systemd strace
          chromium qemu-system-x86 busybox-static kmod)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages: ${missing[*]}; run as root (sudo $0)" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's package enables a Prometheus service listening on every
    # address; the tests start their own, in their namespaces.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        echo "install-deps: disabling the prometheus service the package enabled"
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# Test dependencies from PyPI, for whichever python3 comes first on PATH.
# aioquic: the newest release pip could install when this was pinned (1.9.1
# needs pylsqpack >= 1.1.1, which pip found no release of); the README's
# QUIC-LB lines, which tests/quic.rs runs, touch its private attributes, so
# a new version is tried with `cargo test --release --test quic` before it
# is pinned here.
aioquic=1.7.2
pypi=(prometheus-client "aioquic==$aioquic" virtme-ng==1.42 playwright==1.65.3)
if ! python3 -c "import prometheus_client, aioquic, importlib.metadata as m
assert aioquic.__version__ == '$aioquic' and m.version('virtme-ng') == '1.42'
assert m.version('playwright') == '1.65.3'" 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "install-deps: installing python3-pip"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip >/dev/null
    fi
    echo "install-deps: installing ${pypi[*]} (PyPI)"
    # Debian's python3 is "externally managed"; these are test tools only.
    python3 -m pip install -q --break-system-packages "${pypi[@]}" 2>/dev/null ||
        python3 -m pip install -q "${pypi[@]}"
fi

# libbpf-rs 0.27 needs Rust 1.82 or newer; distribution cargo is often older.
if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found; install Rust 1.82+ with rustup (https://rustup.rs)" >&2
    exit 1
fi
ver=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n1.82.0\n' "$ver" | sort -V | head -1)" != "1.82.0" ]; then
    echo "install-deps: rustc $ver is too old; udplb needs 1.82 or newer (rustup update)" >&2
    exit 1
fi
