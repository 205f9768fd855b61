#!/usr/bin/env bash
# Fetches a Debian kernel into target/kernels/SERIES/ (unpacked .deb: boot/
# and lib/modules/), for `make test-kernels`. Cached: nothing is downloaded
# when the directory is already there.
#
#   scripts/kernels/fetch.sh 5.10|6.1|6.12
#
# apt runs on a private sources.list, lists and cache under target/kernels/apt,
# so the system's apt configuration and state stay as they are. The
# non-cloud flavour is taken because the cloud one has no 9p, which the VM's
# root filesystem needs.
set -euo pipefail
cd "$(dirname "$0")/../.."
series=${1:?usage: $0 5.10|6.1|6.12}
case $series in
    5.10) suite=bullseye ;;
    6.1) suite=bookworm ;;
    6.12) suite=bookworm-backports ;;
    *) echo "fetch: unknown kernel series $series (known: 5.10 6.1 6.12)" >&2; exit 2 ;;
esac
dest=target/kernels/$series
if [ -f "$dest/vmlinuz" ]; then exit 0; fi

apt=$PWD/target/kernels/apt/$suite
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
echo "deb http://deb.debian.org/debian $suite main" > "$apt/sources.list"
opts=(-o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts=-
      -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache"
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root -q)
apt-get "${opts[@]}" update >/dev/null
# The newest build of this series: linux-image-6.1.0-NN-amd64-unsigned,
# linux-image-6.12.NN+deb12-amd64-unsigned in backports.
pkg=$(apt-cache "${opts[@]}" search --names-only "^linux-image-${series//./\\.}\.[0-9]+[-+][a-z0-9]+-amd64-unsigned\$" |
      awk '{print $1}' | sort -V | tail -1)
[ -n "$pkg" ] || { echo "fetch: no linux-image-$series.*-amd64-unsigned in $suite" >&2; exit 1; }
echo "fetch: $pkg from $suite"
(cd "$apt/debs" && apt-get "${opts[@]}" download "$pkg:amd64" >/dev/null)
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
dpkg -x "$apt/debs/${pkg}"_*.deb "$dest.tmp"
# bookworm ships /lib/modules, trixie-era packages /usr/lib/modules; virtme-ng
# finds lib/modules next to the image's tree either way (it walks up from it).
ver=$(ls "$dest.tmp"/boot/vmlinuz-* | sed 's|.*/vmlinuz-||')
ln -s "boot/vmlinuz-$ver" "$dest.tmp/vmlinuz"
base=$dest.tmp
[ -d "$base/lib/modules/$ver" ] || base=$dest.tmp/usr
depmod -b "$base" "$ver"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
