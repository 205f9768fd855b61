#!/usr/bin/env bash
# Installs the system packages udplb needs to build and test, on Debian or
# Ubuntu, as root. Quick and silent when everything is already there.
#
#   build: clang (compiles bpf/*.bpf.c), make, pkg-config, gcc, libelf-dev and
#          zlib1g-dev (libbpf, vendored and linked statically by libbpf-sys)
#   tests: iproute2 (ip netns, veth), ethtool (checksum offload on/off),
#          util-linux (setpriv, taskset), bpftool (map dumps), and a real DNS
#          server and client (dnsmasq-base, bind9-dnsutils for dig), procps
#          (sysctl, for forwarding in the test balancers)
set -euo pipefail

packages=(clang make pkg-config gcc libelf-dev zlib1g-dev iproute2 ethtool util-linux bpftool
          dnsmasq-base bind9-dnsutils procps)

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
