#!/usr/bin/env bash
# The whole test suite: formatting, lints, the systemd units, the Yocto toolchain (Rust 1.94.1)
# build check, the static musl release build (sizes of each agent configuration), the meta-nexa
# layer checks (oelint), every unit and integration test against real processes, and the QEMU
# boot test (kernel WireGuard between a device and a gateway in a Debian guest, release binaries).
#
#   ./scripts/test.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$NEXA_ROOT"

install_debs build-essential musl-tools openssl curl ca-certificates file binutils util-linux mosquitto mosquitto-clients rauc dbus squashfs-tools systemd
ensure_rust musl msrv
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "systemd units: verify, exposure scores, D-Bus policy, polkit rule, sysusers/tmpfiles"
"$NEXA_ROOT/scripts/check-units.sh"

log "cargo +$MSRV_TOOLCHAIN check (the toolchain Yocto 6.0 ships)"
cargo "+$MSRV_TOOLCHAIN" check --workspace --all-targets --locked

log "release build: static musl agent (each feature configuration) and server, sizes, feature matrix"
"$NEXA_ROOT/scripts/release.sh"

log "meta-nexa layer: layout, crates.inc drift, oelint-adv --release wrynose"
"$NEXA_ROOT/scripts/check-layer.sh"

log "tests"
cargo build --workspace --bins --locked
cargo test --workspace --locked

log "QEMU boot test: kernel WireGuard, two boots, revocation"
"$NEXA_ROOT/scripts/qemu-test.sh"
