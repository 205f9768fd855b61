#!/usr/bin/env bash
# `make test-kernels`: runs udplb's kernel-facing test binaries on other
# kernels, each booted in a qemu VM by virtme-ng over the host's own
# filesystem (read-only; the guest writes only its results directory), and
# prints the matrix kernel × test binary (also target/kernels/matrix.md).
# Exits non-zero when any test failed, died or timed out.
#
#   scripts/kernels/run.sh [KERNEL...]      KERNEL: 5.10 6.1 6.12 host
#   TESTS="netns flows_datapath"  only these binaries (default: all below)
#   TIMEOUT=900                   seconds per binary before it is killed
#   THREADS=2                     --test-threads inside the VM
#
# `host` runs the same binaries on the running kernel, without a VM: this
# machine kind has no image of its own kernel to boot.
#
# Not run: the library's unit tests, tests/model.rs and tests/bench_units.rs
# are pure logic (no BPF, no namespaces) and say nothing about a kernel.
set -euo pipefail
cd "$(dirname "$0")/../.."
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(5.10 6.1 6.12 host)
limit=${TIMEOUT:-900} threads=${THREADS:-2}

# Build once on the host; the guest runs the same executables.
mkdir -p target/kernels
cargo test --release --no-run --message-format=json 2>/dev/null > target/kernels/build.json
mapfile -t bins < <(python3 - "${TESTS:-}" <<'PY'
import json, sys
want = sys.argv[1].split()
pure = {"model", "bench_units"}
for line in open("target/kernels/build.json"):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    if t["kind"] != ["test"] or t["name"] in pure:
        continue
    if not want or t["name"] in want:
        print(f'{t["name"]}={m["executable"]}')
PY
)
[ ${#bins[@]} -gt 0 ] || { echo "test-kernels: no test binary matches TESTS=${TESTS:-}" >&2; exit 2; }

# The guest's PATH is a default one; the tests need the host's, with the
# python3 that install-deps.sh gave its PyPI packages (a pyenv shim resolves
# to it here) first.
path=$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH
# vng too is a script of that python3's: on PATH even where pyenv has no
# shim for it yet (pip run as `python3 -m pip` does not make one).
export PATH=$path

for k in "${kernels[@]}"; do
    res=$PWD/target/kernels/results/$k
    rm -rf "$res" && mkdir -p "$res"
    # The list goes through a file: --exec travels on the kernel command
    # line, which has room for about 2 KiB.
    printf '%s\n' "${bins[@]}" > "$res/binaries"
    start=$(date +%s)
    if [ "$k" = host ]; then
        scripts/kernels/guest.sh "$res" - "$limit" "$threads" "${bins[@]}" || true
    else
        scripts/kernels/fetch.sh "$k"
        kdir=$PWD/target/kernels/$k
        # TCG only: nested KVM hangs the guest on this machine kind. The
        # whole run is bounded: every binary's limit plus boot time.
        # Four virtio_net NICs for tests/virtio_nic.rs, in two pairs: each
        # pair a bridge of two tap devices in a namespace of the host's
        # made here (nothing else in it, no address, no route), qemu run in
        # it. Taps with several queues: virtio_net before 5.12 refuses
        # native XDP without a spare transmit queue per CPU.
        # A random source from the start (trust the emulated CPU's RDRAND,
        # and a virtio-rng device): on 5.10 python's getrandom() can otherwise
        # wait minutes for the pool (the likely reason why no QUIC server
        # of tests/quic.rs said ready there).
        net=udplbk-$$-${k//./_}
        ip netns add "$net"
        nics=()
        for i in 0 1 2 3; do
            br=br$((i % 2))
            ip -n "$net" link show "$br" >/dev/null 2>&1 ||
                { ip -n "$net" link add "$br" type bridge && ip -n "$net" link set "$br" up; }
            ip -n "$net" tuntap add "tap$i" mode tap multi_queue
            ip -n "$net" link set "tap$i" master "$br" up
            nics+=(-netdev "tap,id=t$i,ifname=tap$i,script=no,downscript=no,queues=4"
                   -device "virtio-net-pci,netdev=t$i,mq=on,vectors=10,mac=52:54:00:00:00:1$i")
        done
        timeout -k 30 $(( (limit + 30) * ${#bins[@]} + 300 )) \
            ip netns exec "$net" vng --disable-kvm --force-9p --run "$kdir/vmlinuz" --cpus 2 --memory 4G \
                --qemu-opts="${nics[*]} -device virtio-rng-pci" --append random.trust_cpu=on \
                --rwdir "$res" --exec "PATH=$path scripts/kernels/guest.sh $res $kdir $limit $threads @$res/binaries" \
                > "$res/console.log" 2>&1 || true
        ip netns del "$net"
        # vng's own exit status is 255 here whatever the guest did (its
        # virtio-serial return channel needs a module these kernels lack at
        # boot); the guest's `finished` file says whether it ran to the end.
        [ -f "$res/finished" ] || echo "test-kernels: the VM for $k stopped early (see $res/console.log)" >&2
    fi
    echo $(($(date +%s) - start)) > "$res/total.secs"
done
# matrix.py exits 1 when anything failed; pipefail passes that on.
python3 scripts/kernels/matrix.py "${kernels[@]}" -- "${bins[@]%%=*}" | tee target/kernels/matrix.md
