# Guest scenario of scripts/bench-wg.sh (busybox ash), sourced by tests/qemu/init: loads N peers
# into a kernel WireGuard interface with the same code the gateway manager uses (nexa-wg's
# reconcile) and times it, then one peer change. peer_load prints NEXA-METRIC / NEXA-CHECK lines.
# shellcheck shell=sh

PEERS="${BENCH_PEERS:-10000}"
for arg in $cmdline; do
    case "$arg" in
        nexa.peers=*) PEERS="${arg#*=}" ;;
    esac
done
echo "nexa guest: loading $PEERS peers"
if /bin/peer_load "$PEERS"; then
    check peer-load pass "$PEERS peers"
else
    check peer-load fail "exit $?"
fi
