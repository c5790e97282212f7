#!/usr/bin/env bash
# Boot test in QEMU (TCG, no KVM needed): a Debian kernel with WireGuard, the static musl
# release nexa-agent and nexa-server (built by scripts/release.sh), two boots on the same two
# ext4 disks (the device's /certs and the gateway's data directory). The guest scenario is
# tests/qemu/scenario.sh; see its header.
#
#   ./scripts/qemu-test.sh            the whole scenario: enroll, tunnel, reboot, revoke
#   ./scripts/qemu-test.sh --smoke    only the harness: modules, netns + veth, disks, binaries
#
# Environment: QEMU_BOOT_TIMEOUT (seconds per boot, default 150), QEMU_INITRD_GZIP=1 (compress
# the initramfs), NEXA_QEMU_KEEP=1 (keep the work directory). Exits non-zero when a check fails
# or is missing; then the guest console logs are printed and the work directory is kept.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/qemu-lib.sh"
cd "$NEXA_ROOT"

scenario=full
case "${1:-}" in
    "") ;;
    --smoke) scenario=smoke ;;
    *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac

now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
started=$(now_ms)

# Checks every boot must report (the guest prefixes them with bootN-).
common=(clock modules disks binaries netns)
expected_1=("${common[@]}" disks-writable)
expected_2=("${common[@]}" disks-persist)
if [ "$scenario" = full ]; then
    expected_1+=(gateway-up gateway-iface device-add enroll certs-files wg0-after-enroll
        tunnel-ping wg-up wg-up-idempotent wg-show wg0-owned foreign-iface-refused gateway-peer)
    expected_2+=(certs-persist gateway-up gateway-iface enroll-already wg0-after-enroll
        tunnel-ping wg-up wg-up-idempotent wg-show wg0-owned foreign-iface-refused single-enrollment gateway-peer
        revoke revoke-cuts-tunnel gateway-peer-removed)
fi

qemu_install_deps
qemu_fetch_kernel
echo "kernel $QEMU_KVER, booting ${QEMU_KERNEL##*/}"

work="$(mktemp -d "${TMPDIR:-/tmp}/nexa-qemu.XXXXXX")"
keep="${NEXA_QEMU_KEEP:-0}"
cleanup() { if [ "$keep" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

qemu_build_musl "$work/bin"
t=$(now_ms)
qemu_build_initramfs "$work/initramfs" "$NEXA_ROOT/tests/qemu/scenario.sh" \
    "$work/bin/nexa-agent" "$work/bin/nexa-server"
echo "initramfs: $(du -h --apparent-size "$QEMU_INITRD" | cut -f1)," \
    "$QEMU_INITRD_MODULES modules, built in $(secs_since "$t") s"
qemu_make_disk "$work/certs.img" certs
qemu_make_disk "$work/server.img" nexa-data

run_id="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
failed=0
declare -A boot_secs=()
for boot in 1 2; do
    log "boot $boot ($scenario scenario)"
    t=$(now_ms)
    rc=0
    qemu_boot "$work/boot$boot.log" "${QEMU_BOOT_TIMEOUT:-150}" \
        "nexa.boot=$boot nexa.now=$(date -u +%s) nexa.run=$run_id nexa.scenario=$scenario" \
        "$work/certs.img" "$work/server.img" || rc=$?
    boot_secs[$boot]="$(secs_since "$t")"
    results="$(qemu_results "$work/boot$boot.log")"
    grep '^NEXA-CHECK' <<<"$results" | cut -d' ' -f2- || true

    problems=()
    if [ "$rc" -eq 124 ]; then
        problems+=("timed out after ${QEMU_BOOT_TIMEOUT:-150} s")
    elif [ "$rc" -ne 0 ]; then
        problems+=("qemu exited with status $rc")
    fi
    grep -qx 'NEXA-DONE' <<<"$results" || problems+=("no NEXA-DONE")
    while read -r _ name status _; do
        [ "$status" = pass ] || problems+=("check $name: $status")
    done < <(grep '^NEXA-CHECK' <<<"$results" || true)
    declare -n expected="expected_$boot"
    for name in "${expected[@]}"; do
        grep -q "^NEXA-CHECK boot$boot-$name " <<<"$results" || problems+=("check boot$boot-$name missing")
    done
    unset -n expected

    if [ "${#problems[@]}" -gt 0 ]; then
        failed=1
        printf 'boot %s FAILED (%s s):\n' "$boot" "${boot_secs[$boot]}"
        printf '  - %s\n' "${problems[@]}"
        [ "$rc" -ne 124 ] || break
    else
        printf 'boot %s ok (%s s)\n' "$boot" "${boot_secs[$boot]}"
    fi
done

if [ "$failed" -ne 0 ]; then
    keep=1
    for boot in 1 2; do
        [ -f "$work/boot$boot.log" ] || continue
        log "guest console, boot $boot"
        qemu_console "$work/boot$boot.log"
    done
    log "QEMU boot test FAILED after $(secs_since "$started") s"
    exit 1
fi

log "summary"
for boot in 1 2; do
    metrics="$(qemu_results "$work/boot$boot.log" | awk '$1 == "NEXA-METRIC" {
        sub(/^boot[0-9]+-/, "", $2); printf "%s%s %s %s", sep, $2, $3, $4; sep = ", " }')"
    checks="$(qemu_results "$work/boot$boot.log" | grep -c '^NEXA-CHECK')"
    printf 'boot %s: %s s wall, %s checks passed; %s\n' "$boot" "${boot_secs[$boot]}" "$checks" "$metrics"
done
log "QEMU boot test passed in $(secs_since "$started") s"
