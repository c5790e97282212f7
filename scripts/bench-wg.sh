#!/usr/bin/env bash
# Gateway peer-load benchmark, in the QEMU guest of the boot test (the host kernel needs no
# WireGuard): how long nexa-wg takes to load N peers into a kernel WireGuard interface (target:
# 10,000 in under 2 s), a steady-state full pass over them, and what one peer added or removed
# costs on top (it must write that peer only).
#
#   ./scripts/bench-wg.sh [PEERS]     (default 10000)
#
# The guest runs under TCG emulation, so the kernel's work is slower than on hardware; the raw
# figures are an upper bound for a real gateway. Loading a peer costs the kernel one Curve25519
# operation, which dominates, so the script also times the same operation in user space in the
# guest and on the host and scales the load time by that ratio: an estimate for this host's CPU,
# printed as such. QEMU_SMP / QEMU_MEM / QEMU_CPU shape the guest.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/qemu-lib.sh"
cd "$NEXA_ROOT"

peers="${1:-10000}"
case "$peers" in
    '' | *[!0-9]*) echo "usage: $0 [PEERS]  (PEERS: a number, e.g. 10000)" >&2; exit 2 ;;
esac

qemu_install_deps
qemu_fetch_kernel

work="$(mktemp -d "${TMPDIR:-/tmp}/nexa-bench-wg.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "static musl build of the peer_load benchmark (release)"
cargo build --locked --release --target "$MUSL_TARGET" -p nexa-wg --example peer_load
mkdir -p "$work/bin"
strip -o "$work/bin/peer_load" "$CARGO_TARGET_DIR/$MUSL_TARGET/release/examples/peer_load"

qemu_build_initramfs "$work/initramfs" "$NEXA_ROOT/tests/qemu/bench.sh" "$work/bin/peer_load"
qemu_make_disk "$work/a.img" certs 8M
qemu_make_disk "$work/b.img" nexa-data 8M

log "booting the guest (kernel $QEMU_KVER, TCG, ${QEMU_SMP:-2} vCPUs) to load $peers peers"
rc=0
qemu_boot "$work/boot.log" "${QEMU_BOOT_TIMEOUT:-300}" \
    "nexa.boot=1 nexa.now=$(date -u +%s) nexa.run=bench nexa.scenario=bench nexa.peers=$peers" \
    "$work/a.img" "$work/b.img" || rc=$?
results="$(qemu_results "$work/boot.log")"

echo
echo "gateway peer load, $peers peers (kernel $QEMU_KVER under TCG):"
grep '^NEXA-METRIC' <<<"$results" | grep -v -- '-kernel-to-init' | awk '{ printf "  %-32s %10s %s\n", $2, $3, $4 }'
echo
grep '^NEXA-CHECK' <<<"$results" | cut -d' ' -f2- | sed 's/^/  /'
if [ "$rc" -ne 0 ] || ! grep -qx 'NEXA-DONE' <<<"$results" || grep -q '^NEXA-CHECK [^ ]* fail' <<<"$results"; then
    log "benchmark FAILED (qemu status $rc); guest console:"
    qemu_console "$work/boot.log"
    exit 1
fi
metric_of() { awk -v n="$2" '$1 == "NEXA-METRIC" && $2 == n { print $3 }' <<<"$1"; }
load="$(metric_of "$results" "gw-load-$peers-peers")"
guest_op="$(metric_of "$results" x25519-userspace)"
host_op="$(metric_of "$("$work/bin/peer_load" --calibrate)" x25519-userspace)"
awk -v l="$load" -v g="$guest_op" -v h="$host_op" -v n="$peers" 'BEGIN {
    f = g / h
    printf "\nCurve25519 in user space: %.1f us/op in the guest, %.1f us/op on this host: emulation is %.1fx slower\n", g, h, f
    printf "load of %d peers: %.0f ms measured in the guest (TCG); about %.0f ms estimated on this host'"'"'s CPU\n", n, l, l / f
    if (n == 10000) printf "target: under 2000 ms on the gateway: %s (estimate)\n", (l / f < 2000 ? "met" : "NOT met")
}'
