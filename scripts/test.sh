#!/usr/bin/env bash
# The whole test suite: formatting, lints, the Yocto toolchain (Rust 1.94.1) build check, the
# static musl agent build, every unit and integration test against real processes, and the
# QEMU boot test (kernel WireGuard between a device and a gateway in a Debian guest).
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

log "static musl build of nexa-agent and nexa-server"
cargo build --locked -p nexa-agent -p nexa-server --target "$MUSL_TARGET"
for bin in nexa-agent nexa-server; do
    assert_static "$CARGO_TARGET_DIR/$MUSL_TARGET/debug/$bin"
    echo "$bin ($MUSL_TARGET) is statically linked"
done

log "tests"
cargo build --workspace --bins --locked
cargo test --workspace --locked

log "QEMU boot test: kernel WireGuard, two boots, revocation"
"$NEXA_ROOT/scripts/qemu-test.sh"
