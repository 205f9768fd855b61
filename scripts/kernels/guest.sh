#!/usr/bin/env bash
# Runs test binaries on the kernel it finds itself on, one after another,
# into OUT/NAME.{log,rc,secs}. Inside a virtme-ng guest (scripts/kernels/run.sh)
# or, for the kernel `host`, on the host itself.
#
#   scripts/kernels/guest.sh OUT KERNEL_DIR|- TIMEOUT THREADS NAME=PATH...|@FILE
#   (@FILE: one NAME=PATH a line)
set -euo pipefail
out=$1 kdir=$2 limit=$3 threads=$4
shift 4
if [ "$kdir" != - ]; then
    # The VM's console is not kept; its own messages go with the results.
    exec 2>> "$out/guest.log"
    # The guest sees the host's /boot; libbpf and the tests look for
    # /boot/config-$(uname -r) there. The bind mount lives in the guest only.
    mount --bind "$kdir/boot" /boot
    # Debian builds veth, bridge and the clsact qdisc as modules. The
    # kernel would load them on first use; loading them here puts a module
    # that cannot load in guest.log instead of in some test's failure.
    for m in veth bridge sch_ingress cls_bpf dummy virtio_net virtio_rng; do
        modprobe "$m" || echo "guest: modprobe $m failed" >&2
    done
    # Whether getrandom() would block: before 5.18 the kernel's random pool
    # may take minutes to fill in a fresh VM, and python (the QUIC and
    # HTTP servers of the tests) waits for it at start. run.sh boots with
    # random.trust_cpu=on and a virtio-rng device so that it is ready.
    python3 -c 'import os; os.getrandom(1, os.GRND_NONBLOCK)' 2>/dev/null &&
        echo "guest: the random pool is ready" >&2 ||
        echo "guest: the random pool is not ready: getrandom() blocks" >&2
    # The tests' own waits for things to happen, ten times longer: here
    # everything runs 10-30 times slower (tests/support/mod.rs, slow).
    export UDPLB_TEST_SLOWDOWN=10
    # run.sh's four virtio_net NICs, in PCI order: the balancer's client
    # side and server side, the client's, the server's.
    udevadm settle 2>/dev/null || sleep 2
    export UDPLB_VIRTIO_NICS=eth0,eth1,eth2,eth3
fi
if [ "${1:-}" != "${1#@}" ]; then mapfile -t specs < "${1#@}"; else specs=("$@"); fi
uname -r > "$out/uname"
for spec in "${specs[@]}"; do
    name=${spec%%=*} bin=${spec#*=}
    start=$(date +%s)
    rc=0
    # timeout runs the binary in a process group of its own and signals the
    # whole group: a hung test's udplb children go with it.
    args=(--test-threads="$threads")
    # Ignored by cargo test for want of the NICs, which the VM has.
    if [ "$name" = virtio_nic ] && [ -n "${UDPLB_VIRTIO_NICS:-}" ]; then args+=(--ignored); fi
    # Ignored by cargo test for want of the tunnel modules: a Debian
    # kernel in the VM has them (a kernel without fails them by name).
    if [ "$name" = dsr_tunnels ] && [ "$kdir" != - ]; then args+=(--ignored); fi
    timeout -k 20 "$limit" "$bin" "${args[@]}" > "$out/$name.log" 2>&1 || rc=$?
    echo "$rc" > "$out/$name.rc"
    echo $(($(date +%s) - start)) > "$out/$name.secs"
done
echo done > "$out/finished"
