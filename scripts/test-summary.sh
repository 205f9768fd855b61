#!/usr/bin/env bash
# Sums the "test result:" lines of a `cargo test` log into one closing line,
# and names the test binaries that failed (cargo's own list, which also
# names a binary that died without a result line).
#
#   scripts/test-summary.sh LOG
set -euo pipefail
log=${1:?usage: $0 LOG}
awk '
    /^     Running / { bin = $2 }
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) passed += $(i - 1)
            if ($(i) ~ /^failed;?$/) { failed += $(i - 1); if ($(i - 1) > 0) bad[bin] = 1 }
            if ($(i) ~ /^ignored;?$/) ignored += $(i - 1)
        }
        binaries++
    }
    /^error: test failed, to rerun pass/ { died++ }
    END {
        for (b in bad) { printf "failed in %s\n", b; nbad++ }
        # A binary that died without a result line (a crash, a signal)
        # counts as one failed test, so the closing line cannot say 0.
        if (died > nbad) failed += died - nbad
        printf "test binaries: %d ran, %d failed\n", binaries, died
        # Ignored: tests for hardware only a VM has (tests/virtio_nic.rs,
        # run by `make test-kernels`).
        if (ignored > 0) printf "tests: %d passed, %d failed, %d ignored\n", passed, failed, ignored
        else printf "tests: %d passed, %d failed\n", passed, failed
    }
' "$log"
