#!/usr/bin/env bash
# The main job on embedded defaults: a bridge with its built-in CA and SQLite, and the static
# musl agent enrolling a demo device against it. Prints what was written and verified.
#
#   ./scripts/demo.sh
#
# Environment: NEXA_DEMO_DIR (default ./demo, recreated on each run), NEXA_LISTEN
# (default 127.0.0.1:8443), NEXA_DEMO_DEVICE (default demo-device-001).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$NEXA_ROOT"

install_debs build-essential musl-tools openssl ca-certificates file binutils
ensure_rust musl

log "building nexa-server and the static musl nexa-agent (release)"
cargo build --release --locked -p nexa-server
cargo build --release --locked -p nexa-agent --target "$MUSL_TARGET"
SERVER="$CARGO_TARGET_DIR/release/nexa-server"
AGENT="$CARGO_TARGET_DIR/$MUSL_TARGET/release/nexa-agent"
assert_static "$AGENT"
echo "nexa-agent: $(file -b "$AGENT" | cut -d, -f1-5)"
echo "nexa-agent size: $(stat -c %s "$AGENT") bytes"

DEMO_DIR="${NEXA_DEMO_DIR:-./demo}"
DEVICE="${NEXA_DEMO_DEVICE:-demo-device-001}"
LISTEN="${NEXA_LISTEN:-127.0.0.1:8443}"
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
cd "$DEMO_DIR"

log "nexa-server init (embedded defaults: ./nexa-data, built-in CA, SQLite)"
"$SERVER" init
"$SERVER" device add "$DEVICE" --note "demo device"

# Device and gateway on one host would share one subnet, so the demo leaves the host's network
# alone: the bridge runs with an external gateway and the agent does not bring up wg0.
# scripts/qemu-test.sh shows the kernel tunnel between a device and a gateway in a VM.
log "nexa-server serve on $LISTEN"
"$SERVER" serve --listen "$LISTEN" --gateway external > server.out 2> server.log &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q '^root CA fingerprint:' server.out 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat server.log >&2; exit 1; }
    sleep 0.1
done
cat server.out
URL="https://$(head -1 server.out | sed 's|.*https://||')"
FP="$("$SERVER" ca fingerprint)"

log "nexa-agent enroll (the device knows only the bridge URL and the root fingerprint)"
export NEXA_AGENT_CONFIG=/dev/null NEXA_BRIDGE_URL="$URL" NEXA_ROOT_FINGERPRINT="$FP" \
    NEXA_DEVICE_ID="$DEVICE" NEXA_CERTS_DIR="$PWD/certs" NEXA_MANAGE_WIREGUARD=false
"$AGENT" enroll

log "what is in the certs directory"
ls -l certs
echo
cat certs/enrolled

log "independent check with openssl"
openssl verify -CAfile nexa-data/ca/root.crt -untrusted nexa-data/ca/issuing.crt certs/device.crt
openssl x509 -in certs/device.crt -noout -subject -issuer -enddate
cmp <(openssl x509 -in certs/device.crt -noout -pubkey) <(openssl pkey -in certs/device.key -pubout) \
    && echo "certs/device.crt matches certs/device.key"

log "nexa-agent status"
"$AGENT" status

log "running enroll again: idempotent, no request to the bridge"
"$AGENT" enroll

log "the bridge's view"
"$SERVER" device show "$DEVICE"
echo
"$SERVER" audit --device "$DEVICE"
echo
echo "demo finished; files are in $(pwd)"
echo "the WireGuard tunnel itself (kernel interfaces, handshake, revocation) is shown by ./scripts/qemu-test.sh"
