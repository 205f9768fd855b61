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
#          sessions between test balancers and a test router); python3 and
#          pip, for the real Prometheus parser (prometheus-client, PyPI) that
#          reads /metrics in the tests, and a real QUIC stack (aioquic, PyPI,
#          pinned) for the QUIC clients and servers of tests/quic.rs;
#          chromium, the real browser that loads the status page in
#          tests/status_page.rs, driven by Playwright (PyPI, pinned; it uses
#          Debian's /usr/bin/chromium and never downloads a browser)
set -euo pipefail

packages=(clang make pkg-config gcc libelf-dev zlib1g-dev iproute2 ethtool util-linux bpftool
          dnsmasq-base bind9-dnsutils procps bird2 python3 chromium)

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
fi

# Test dependencies from PyPI, for whichever python3 comes first on PATH.
pypi=(prometheus-client aioquic==1.2.0 playwright==1.65.3)
if ! python3 -c 'import prometheus_client, aioquic, importlib.metadata as m
assert aioquic.__version__ == "1.2.0" and m.version("playwright") == "1.65.3"' 2>/dev/null; then
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
