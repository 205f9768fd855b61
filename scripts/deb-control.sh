#!/usr/bin/env bash
# Writes DEBIAN/ (control, postinst, postrm) into ROOT, a tree `make install`
# filled with PREFIX=/usr, for `make deb`. The version is Cargo.toml's; the
# dependencies are the shared libraries the binary links (ldd: libelf and
# zlib, libbpf being linked in statically).
set -euo pipefail
root=$1
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: udplb
Version: $version
Architecture: $arch
Maintainer: udplb developers <udplb@localhost>
Installed-Size: $size
Depends: libc6, libelf1, zlib1g
Section: net
Priority: optional
Description: UDP load balancer for Linux with an XDP datapath
 Balances UDP datagrams (DNS, syslog, QUIC, ...) across backends in XDP.
 Runs as the systemd service udplb.service (Type=notify) reading
 /etc/udplb/lb.toml; see /usr/share/doc/udplb/README.md.
CONTROL
# Tell a running systemd about the unit; enabling it is the admin's choice
# (the service needs /etc/udplb/lb.toml first).
for script in postinst postrm; do
    printf '#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n' \
        > "$root/DEBIAN/$script"
    chmod 755 "$root/DEBIAN/$script"
done
