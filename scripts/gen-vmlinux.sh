#!/usr/bin/env bash
# Regenerate include/vmlinux.h from the running kernel's BTF.
# The program is CO-RE: it only needs the types, and libbpf relocates field
# offsets at load time, so the committed header works on other kernels too.
set -euo pipefail
cd "$(dirname "$0")/.."
btf=${1:-/sys/kernel/btf/vmlinux}
[ -r "$btf" ] || { echo "gen-vmlinux: $btf not readable (kernel built without CONFIG_DEBUG_INFO_BTF?)" >&2; exit 1; }
command -v bpftool >/dev/null || { echo "gen-vmlinux: bpftool not found (apt-get install bpftool)" >&2; exit 1; }
bpftool btf dump file "$btf" format c > include/vmlinux.h.tmp
mv include/vmlinux.h.tmp include/vmlinux.h
echo "wrote include/vmlinux.h ($(wc -l < include/vmlinux.h) lines)"
