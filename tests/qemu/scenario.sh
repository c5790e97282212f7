# Guest test scenario (busybox ash), sourced by tests/qemu/init after the machine is set up
# (modules loaded, /certs and /srv/nexa mounted). Uses init's helpers check, check_rc, metric,
# uptime_s, elapsed, wait_until, show and its variables BOOT, RUN_ID, SCENARIO.
#
# Boot 1: a gateway (nexa-server) in its own network namespace, joined to the device by a veth
# pair; the device enrolls with nexa-agent and brings the WireGuard tunnel up. Boot 2, same disks:
# the enrollment survived, no second one happens, the tunnel comes back, and revoking the device
# at the bridge cuts it. SCENARIO=smoke stops after the harness checks (network, disks, binaries).
# shellcheck shell=sh

DEVICE_ID=dev-qemu-1
GW_ADDR=192.168.77.1
DEV_ADDR=192.168.77.2
TUNNEL_GW=10.77.0.1
BRIDGE_URL="https://$GW_ADDR:8443"
SRV_DIR=/srv/nexa/server
SRV_LOG=/tmp/server.log

# gw CMD...: runs CMD in the gateway's network namespace.
gw() { nsenter -t "$GW_NS" -n "$@"; }

# srv ARGS...: the nexa-server CLI on the gateway's data directory, in the gateway namespace
# (bounded, so that a hanging command shows up as a failed check, not a stuck boot).
srv() { timeout 60 nsenter -t "$GW_NS" -n nexa-server --data-dir "$SRV_DIR" "$@"; }

# agent ARGS...: nexa-agent configured for this device and bridge.
agent() {
    timeout 90 nexa-agent --bridge-url "$BRIDGE_URL" --root-fingerprint "$ROOT_FP" \
        --device-id "$DEVICE_ID" --certs-dir /certs "$@"
}

# --- harness checks ----------------------------------------------------------------------------

gw_ns_ready() { [ "$(readlink "/proc/$GW_NS/ns/net")" != "$(readlink /proc/self/ns/net)" ]; }

# The gateway namespace is held by a sleeping process; the veth peer moves into it.
net_setup() {
    unshare -n sleep 100000 &
    GW_NS=$!
    if ! wait_until 5 gw_ns_ready; then
        check netns fail "unshare -n did not give pid $GW_NS a network namespace of its own"
        return 1
    fi
    # busybox ip ignores "peer name": the peer gets a kernel-chosen name (veth0); find it.
    before=" dev0 "
    for n in /sys/class/net/*; do before="$before${n##*/} "; done
    ip link add name dev0 type veth
    peer=""
    for n in /sys/class/net/*; do
        case "$before" in *" ${n##*/} "*) ;; *) peer="${n##*/}" ;; esac
    done
    if [ -z "$peer" ]; then
        check netns fail "no veth pair created"
        return 1
    fi
    ip link set "$peer" netns "$GW_NS" &&
        gw ip link set "$peer" name gw0 &&
        gw ip addr add "$GW_ADDR/24" dev gw0 &&
        gw ip link set gw0 up &&
        gw ip link set lo up &&
        ip addr add "$DEV_ADDR/24" dev dev0 &&
        ip link set dev0 up &&
        wait_until 5 ping -c1 -W1 "$GW_ADDR"
    check_rc netns $? "veth dev0 $DEV_ADDR <-> gw0 $GW_ADDR in namespace of pid $GW_NS"
}

binaries_check() {
    a="$(nexa-agent --version 2>&1)" && s="$(nexa-server --version 2>&1)"
    check_rc binaries $? "$a, $s"
}

# A marker with this run's token on each disk in boot 1; boot 2 must find it on both.
persistence_check() {
    if [ "$BOOT" -eq 1 ]; then
        echo "$RUN_ID" >/certs/.qemu-run && echo "$RUN_ID" >/srv/nexa/.qemu-run && sync
        check_rc disks-writable $? "run $RUN_ID"
    else
        c="$(cat /certs/.qemu-run 2>/dev/null)" s="$(cat /srv/nexa/.qemu-run 2>/dev/null)"
        if [ "$c" = "$RUN_ID" ] && [ "$s" = "$RUN_ID" ]; then
            check disks-persist pass "run $RUN_ID found on both disks"
        else
            check disks-persist fail "expected $RUN_ID, found '$c' on vda, '$s' on vdb"
        fi
    fi
}

# --- gateway -----------------------------------------------------------------------------------

gateway_iface_ready() { gw ip -4 addr show nexa0 2>/dev/null | grep -q "inet $TUNNEL_GW/24 "; }

gateway_start() {
    mkdir -p "$SRV_DIR"
    t0=$(uptime_s)
    gw nexa-server --data-dir "$SRV_DIR" serve --listen "$GW_ADDR:8443" --tls-san "$GW_ADDR" \
        --wg-subnet 10.77.0.0/24 --wg-endpoint "$GW_ADDR:51820" --wg-interface nexa0 \
        >"$SRV_LOG" 2>&1 &
    SRV_PID=$!
    if wait_until 90 grep -q 'listening on https://' "$SRV_LOG"; then
        check gateway-up pass "after $(elapsed "$t0") s"
        metric gateway-start "$(elapsed "$t0")" s
    else
        check gateway-up fail "no 'listening' line within 90 s"
        show "$SRV_LOG" "nexa-server log"
        return 1
    fi
    # The server may announce itself before nexa0 is fully configured: wait for the address.
    if wait_until 10 gateway_iface_ready; then
        check gateway-iface pass "nexa0 $TUNNEL_GW/24 after $(elapsed "$t0") s"
    elif gw ip link show nexa0 >/dev/null 2>&1; then
        addr="$(gw ip -4 addr show nexa0 | awk '$1 == "inet" { print $2 }' | tr '\n' ' ')"
        check gateway-iface fail "nexa0 has address(es) '${addr:-none}', expected $TUNNEL_GW/24"
    else
        check gateway-iface fail "no interface nexa0 in the gateway namespace"
    fi
    ROOT_FP="$(srv ca fingerprint 2>/dev/null)"
}

# gateway_stopped: the server exited (a zombie until it is waited for counts as exited).
gateway_stopped() { [ "$(awk '{ print $3 }' "/proc/$SRV_PID/stat" 2>/dev/null)" = Z ] || ! kill -0 "$SRV_PID"; }

gateway_stop() {
    [ -n "${SRV_PID:-}" ] || return 0
    kill "$SRV_PID" 2>/dev/null
    wait_until 15 gateway_stopped || kill -9 "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
}

# device_wg_key: the device's WireGuard public key, from the bridge's audit trail.
device_wg_key() {
    srv audit --device "$DEVICE_ID" | sed -n 's/.*"wg_public_key":"\([^"]*\)".*/\1/p' | tail -n1
}

# enrollments: the bridge's enrollment events for the device (not the operator's permissions).
enrollments() {
    srv audit --device "$DEVICE_ID" --limit 1000 | awk '$2 ~ /enroll/ && $2 !~ /allowed/ { print $2 }'
}

# --- device ------------------------------------------------------------------------------------

# tunnel_ping SECONDS: pings the gateway's tunnel address until it answers.
tunnel_ping() { wait_until "$1" ping -c1 -W1 "$TUNNEL_GW"; }

# tunnel_down_for N: the tunnel address did not answer N pings in a row.
tunnel_down_for() {
    i=0
    while [ "$i" -lt "$1" ]; do
        ping -c1 -W1 "$TUNNEL_GW" >/dev/null 2>&1 && return 1
        i=$((i + 1))
    done
}

# Enroll (boot 1) or find the enrollment in /certs (boot 2); enroll also brings the tunnel up,
# which is timed from the agent's start to the first answer through it.
device_bring_up() {
    t0=$(uptime_s)
    agent enroll --retry-for 60s >/tmp/enroll.log 2>&1
    rc=$?
    metric enroll "$(elapsed "$t0")" s
    if [ "$BOOT" -eq 1 ]; then
        check_rc enroll "$rc" "$(grep -m1 '^address ' /tmp/enroll.log)"
        missing=""
        for f in device.key device.crt ca-chain.crt wg0.conf enrolled; do
            [ -s "/certs/$f" ] || missing="$missing $f"
        done
        if [ -z "$missing" ]; then check certs-files pass; else check certs-files fail "missing:$missing"; fi
    elif [ "$rc" -eq 0 ] && grep -q 'already enrolled' /tmp/enroll.log; then
        check enroll-already pass
    else
        check enroll-already fail "exit $rc, no 'already enrolled' in its output"
    fi
    if ip link show wg0 >/dev/null 2>&1; then
        check wg0-after-enroll pass
    else
        check wg0-after-enroll fail "enroll did not create wg0"
    fi

    if tunnel_ping 30; then
        t1=$(uptime_s)
        check tunnel-ping pass "$TUNNEL_GW answers"
        metric agent-to-tunnel "$(elapsed "$t0" "$t1")" s
        metric boot-to-tunnel "$t1" s
    else
        check tunnel-ping fail "$TUNNEL_GW did not answer within 30 s"
    fi
    show /tmp/enroll.log "nexa-agent enroll"

    # wg up on a matching interface changes nothing; twice in a row, the tunnel stays up.
    agent wg up >/tmp/wg-up.log 2>&1
    check_rc wg-up $? "$(tail -n1 /tmp/wg-up.log)"
    agent wg up >/tmp/wg-up.log 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && ip link show wg0 >/dev/null 2>&1 && tunnel_ping 5; then
        check wg-up-idempotent pass "second wg up: exit 0, tunnel still up"
    else
        check wg-up-idempotent fail "second wg up: exit $rc; wg0 and tunnel after it must still work"
        show /tmp/wg-up.log "nexa-agent wg up"
    fi

    agent wg show >/tmp/wg-show.log 2>&1
    check_rc wg-show $?
    show /tmp/wg-show.log "nexa-agent wg show"

    # The agent marks the links it creates and refuses a WireGuard link it did not create.
    alias="$(cat /sys/class/net/wg0/ifalias 2>/dev/null)"
    if [ "$alias" = "managed by nexa" ]; then
        check wg0-owned pass "ifalias '$alias'"
    else
        check wg0-owned fail "wg0 ifalias is '$alias'"
    fi
    ip link add name wgforeign type wireguard
    agent --wg-interface wgforeign wg up >/tmp/wg-foreign.log 2>&1
    rc=$?
    if [ "$rc" -eq 6 ] && grep -q "not created by Nexa" /tmp/wg-foreign.log; then
        check foreign-iface-refused pass "exit 6: not created by Nexa"
    else
        check foreign-iface-refused fail "exit $rc"
        show /tmp/wg-foreign.log "nexa-agent --wg-interface wgforeign wg up"
    fi
    ip link del wgforeign 2>/dev/null

    if [ "$BOOT" -ne 1 ]; then
        events="$(enrollments | tr '\n' ' ')"
        if [ "$events" = "device.enrolled " ]; then
            check single-enrollment pass "audit: ${events% }"
        else
            check single-enrollment fail "audit enrollment events: ${events:-none}"
        fi
    fi

    # The gateway's own view: the device's key is one of the peers of nexa0.
    key="$(device_wg_key)"
    srv gateway show >/tmp/gateway-show.log 2>&1
    if [ -n "$key" ] && grep -qF "$key" /tmp/gateway-show.log; then
        check gateway-peer pass "$key"
    else
        check gateway-peer fail "device key '${key:-unknown}' not among the gateway's peers"
    fi
    show /tmp/gateway-show.log "nexa-server gateway show"
}

# Boot 2: revoking the device at the bridge removes its peer from the gateway.
revoke_check() {
    key="$(device_wg_key)"
    srv device revoke "$DEVICE_ID" >/tmp/revoke.log 2>&1
    check_rc revoke $? "$(tail -n1 /tmp/revoke.log)"
    # The first failed ping may be a lost packet; then three more in a row must fail.
    t0=$(uptime_s)
    if wait_until 15 tunnel_down_for 1 && t1=$(uptime_s) && tunnel_down_for 3; then
        check revoke-cuts-tunnel pass "no answer from $TUNNEL_GW $(elapsed "$t0" "$t1") s after revoke"
        metric revoke-to-cut "$(elapsed "$t0" "$t1")" s
    else
        check revoke-cuts-tunnel fail "$TUNNEL_GW still answers after revoke"
    fi
    srv gateway show >/tmp/gateway-show.log 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && [ -n "$key" ] && ! grep -qF "$key" /tmp/gateway-show.log; then
        check gateway-peer-removed pass
    else
        check gateway-peer-removed fail "gateway show exit $rc; key '${key:-unknown}' still a peer?"
        show /tmp/gateway-show.log "nexa-server gateway show"
    fi
}

# --- run ---------------------------------------------------------------------------------------

GW_NS="" SRV_PID="" ROOT_FP=""
binaries_check
persistence_check
if net_setup && [ "$SCENARIO" = full ]; then
    if [ "$BOOT" -ne 1 ]; then
        grep -q "$DEVICE_ID" /certs/enrolled
        check_rc certs-persist $? "/certs/enrolled of $DEVICE_ID from boot 1"
    fi
    if gateway_start; then
        if [ "$BOOT" -eq 1 ]; then
            srv device add "$DEVICE_ID" >/tmp/device-add.log 2>&1
            check_rc device-add $? "$(tail -n1 /tmp/device-add.log)"
        fi
        device_bring_up
        [ "$BOOT" -eq 1 ] || revoke_check
    fi
    gateway_stop
    if [ "$FAILED" -gt 0 ]; then
        show "$SRV_LOG" "nexa-server log"
    fi
fi
[ -z "$GW_NS" ] || kill "$GW_NS" 2>/dev/null
