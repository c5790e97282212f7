#!/usr/bin/env bash
# Static and semantic checks of systemd/: the units, the D-Bus policy, the polkit rule and the
# sysusers/tmpfiles snippets. Quiet on success but for a summary; exits non-zero naming what
# failed. Takes seconds (the first run installs Debian packages and fetches one tool).
#
#   ./scripts/check-units.sh
#
# Environment: NEXA_MAX_EXPOSURE (default 3.0): the highest `systemd-analyze security` exposure
# any of the services may have.
#
# What is checked:
# - `systemd-analyze verify` of every unit, failing on any output. verify insists that the
#   Exec*= binaries exist, and /usr/bin/nexa-agent and /usr/bin/nexa-server are not installed
#   on this host: the units are verified as copies whose only difference is those two paths,
#   pointing at placeholder executables in a temporary directory. (`--root=` would need a
#   complete unit tree under the root, since it moves the whole unit search path there.) Every
#   other binary the units name (/bin/sh, /bin/kill, systemd-tmpfiles) must exist for real.
# - `systemd-analyze security --offline=true` of each service: the exposure is printed, and
#   one above NEXA_MAX_EXPOSURE fails.
# - The daemons' units (nexa-agent, nexa-server) are Type=notify with a WatchdogSec=: the
#   binaries' READY=1 and watchdog pings are tested in tests/ (agent_run, server_service).
# - The D-Bus policy: well-formed XML (xmllint), then on a private dbus-daemon whose default
#   policy is the system bus's (every method call denied), with well-known names owned by
#   dbus-test-tool (which answers every call): the calls the agent makes get through for its
#   user and nothing else does, for it or for another user. The policy's user is swapped for
#   `nobody`, a user this host has; the file is otherwise loaded as shipped.
# - The polkit rule, run by duktape (the engine of Debian's polkit) against a stand-in of
#   polkit's API: which actions it grants to whom.
# - sysusers and tmpfiles, applied by systemd-sysusers and systemd-tmpfiles to a temporary
#   root: the users exist, /certs is 0700 nexa:nexa, files a root-run command left there go
#   back to nexa with their modes kept, a stale reboot request goes at boot (only), and the
#   units' User= names the snippets' users.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$NEXA_ROOT"

# The D-Bus and tmpfiles checks switch users and change owners.
if [ "$(id -u)" -ne 0 ]; then
    exec sudo --preserve-env=NEXA_MAX_EXPOSURE,XDG_CACHE_HOME "$0" "$@"
fi

max_exposure="${NEXA_MAX_EXPOSURE:-3.0}"
units_dir="$NEXA_ROOT/systemd"
services=(nexa-agent nexa-server nexa-enroll nexa-cert-renew nexa-reboot)

install_debs systemd dbus dbus-bin libxml2-utils duktape util-linux procps

fail() {
    printf 'check-units: %s\n' "$1" >&2
    if [ $# -gt 1 ]; then printf '%s\n' "$2" | sed 's/^/    /' >&2; fi
    exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/nexa-check-units.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# --- units: verify --------------------------------------------------------------------------
mkdir -p "$work/bin" "$work/units"
for bin in nexa-agent nexa-server; do
    printf '#!/bin/sh\nexit 0\n' >"$work/bin/$bin"
    chmod 0755 "$work/bin/$bin"
done
shopt -s nullglob
unit_files=("$units_dir"/*.service "$units_dir"/*.timer "$units_dir"/*.path)
shopt -u nullglob
[ "${#unit_files[@]}" -gt 0 ] || fail "no units in $units_dir"
for f in "${unit_files[@]}"; do
    sed -e "s#/usr/bin/nexa-agent#$work/bin/nexa-agent#g" \
        -e "s#/usr/bin/nexa-server#$work/bin/nexa-server#g" "$f" >"$work/units/${f##*/}"
done
if ! out="$(cd "$work/units" && systemd-analyze verify --man=no -- *.service *.timer *.path 2>&1)" || [ -n "$out" ]; then
    fail "systemd-analyze verify reports (paths under $work/bin stand for /usr/bin):" "${out:-exit status non-zero}"
fi
verified="${#unit_files[@]}"

# --- units: security exposure ---------------------------------------------------------------
summary=()
for svc in "${services[@]}"; do
    [ -f "$work/units/$svc.service" ] || fail "systemd/$svc.service is missing"
    out="$(systemd-analyze security --offline=true --no-pager "$work/units/$svc.service" 2>&1)" ||
        fail "systemd-analyze security $svc.service failed" "$out"
    line="$(printf '%s\n' "$out" | grep 'Overall exposure level' | tail -n 1 | sed 's/^[^O]*//')"
    score="$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9][0-9.]*\).*/\1/p')"
    [ -n "$score" ] || fail "no exposure level for $svc.service" "$out"
    summary+=("$line")
    if awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
        fail "$svc.service: exposure $score is above NEXA_MAX_EXPOSURE=$max_exposure" \
            "$(printf '%s\n' "$out" | grep -Ev '^(✓|\+) ')"
    fi
done

# --- the units' users are the sysusers snippets' users --------------------------------------
for f in "${unit_files[@]}"; do
    user="$(sed -n 's/^User=//p' "$f")"
    [ -n "$user" ] || continue
    grep -Eqh "^u[[:space:]]+${user}[[:space:]]" "$units_dir"/*.sysusers.conf ||
        fail "${f##*/} runs as $user, which no systemd/*.sysusers.conf creates"
done

# --- the daemons speak the notify protocol (tests/tests/agent_run.rs, server_service.rs) -----
for svc in nexa-agent nexa-server; do
    f="$units_dir/$svc.service"
    [ "$(sed -n 's/^Type=//p' "$f" | tail -n 1)" = notify ] || fail "$svc.service: Type= must be notify (the daemon sends READY=1)"
    grep -Eq '^WatchdogSec=[1-9]' "$f" || fail "$svc.service: no WatchdogSec= (the daemon feeds the watchdog)"
done

# --- D-Bus policy ---------------------------------------------------------------------------
policy="$units_dir/nexa-agent.dbus.conf"
out="$(xmllint --noout "$policy" 2>&1)" || fail "nexa-agent.dbus.conf is not well-formed XML" "$out"
grep -q 'user="nexa"' "$policy" || fail 'nexa-agent.dbus.conf has no policy for user="nexa"'

# dbus-test-tool (package dbus-tests) claims a name and answers every call. Only that one
# binary is needed; it is taken from the package, downloaded once into the cache.
tools_cache="${XDG_CACHE_HOME:-$HOME/.cache}/nexa/check-units"
test_tool="$tools_cache/dbus-test-tool"
if [ ! -x "$test_tool" ]; then
    mkdir -p "$tools_cache"
    rm -f "$tools_cache"/dbus-tests_*.deb
    # As root, apt-get warns that the _apt user cannot write here and downloads anyway.
    (cd "$tools_cache" && apt-get download -q dbus-tests >/dev/null 2>&1) || true
    debs=("$tools_cache"/dbus-tests_*.deb)
    [ -f "${debs[0]}" ] || fail "apt-get download dbus-tests failed (needed for dbus-test-tool)"
    dpkg-deb --fsys-tarfile "${debs[0]}" | tar -xO ./usr/bin/dbus-test-tool >"$test_tool.tmp"
    chmod 0755 "$test_tool.tmp"
    mv "$test_tool.tmp" "$test_tool"
    rm -f "${debs[@]}"
fi

for u in nobody daemon; do
    id "$u" >/dev/null 2>&1 || fail "the D-Bus check needs the user $u on this host"
done
bus="$work/dbus"
mkdir -p "$bus"
chmod 0755 "$work" "$bus"
sed 's/user="nexa"/user="nobody"/g' "$policy" >"$bus/nexa-agent.conf"
# The system bus's default policy (dbus' system.conf), a name owner for root, and the file.
cat >"$bus/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$bus/socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <policy user="root">
    <allow own="*"/>
  </policy>
  <include>$bus/nexa-agent.conf</include>
</busconfig>
EOF
dbus-daemon --config-file="$bus/bus.conf" --nofork --nopidfile >"$bus/daemon.log" 2>&1 &
pids+=($!)
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$bus/socket"
bus_call() { # USER DEST INTERFACE.MEMBER -> the reply's first line
    setpriv --reuid="$1" --regid="$(id -g "$1")" --clear-groups \
        dbus-send --system --print-reply --reply-timeout=5000 --dest="$2" / "$3" 2>&1 | head -n 1 || true
}
wait_until() { # DESCRIPTION COMMAND...: polls for 5 s
    local _
    for _ in $(seq 50); do
        if "${@:2}" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    fail "$1" "$(cat "$bus/daemon.log" 2>/dev/null)"
}
wait_until "the private dbus-daemon did not start" test -S "$bus/socket"
names=(de.pengutronix.rauc org.freedesktop.login1 org.freedesktop.systemd1)
for name in "${names[@]}"; do
    "$test_tool" echo --system --name="$name" >/dev/null 2>&1 &
    pids+=($!)
    wait_until "dbus-test-tool did not claim $name" \
        dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.GetNameOwner "string:$name"
done
allowed=(
    "nobody de.pengutronix.rauc de.pengutronix.rauc.Installer.InstallBundle"
    "nobody de.pengutronix.rauc de.pengutronix.rauc.Installer.Mark"
    "nobody de.pengutronix.rauc de.pengutronix.rauc.Installer.GetPrimary"
    "nobody de.pengutronix.rauc de.pengutronix.rauc.Installer.GetSlotStatus"
    "nobody de.pengutronix.rauc org.freedesktop.DBus.Properties.Get"
    "nobody org.freedesktop.login1 org.freedesktop.login1.Manager.Reboot"
    "nobody org.freedesktop.systemd1 org.freedesktop.systemd1.Manager.StartUnit"
)
denied=(
    "nobody de.pengutronix.rauc de.pengutronix.rauc.Installer.Install"
    "nobody de.pengutronix.rauc de.pengutronix.rauc.Installer.Info"
    "nobody de.pengutronix.rauc org.freedesktop.DBus.Properties.Set"
    "nobody org.freedesktop.login1 org.freedesktop.login1.Manager.PowerOff"
    "nobody org.freedesktop.login1 org.freedesktop.login1.Manager.Halt"
    "nobody org.freedesktop.systemd1 org.freedesktop.systemd1.Manager.StopUnit"
    "nobody org.freedesktop.systemd1 org.freedesktop.systemd1.Manager.SetEnvironment"
    "daemon de.pengutronix.rauc de.pengutronix.rauc.Installer.InstallBundle"
    "daemon org.freedesktop.login1 org.freedesktop.login1.Manager.Reboot"
)
for c in "${allowed[@]}"; do
    read -r who dest member <<<"$c"
    reply="$(bus_call "$who" "$dest" "$member")"
    case "$reply" in
        "method return"*) ;;
        *) fail "D-Bus policy: $member to $dest should reach it for the agent's user" "$reply" ;;
    esac
done
for c in "${denied[@]}"; do
    read -r who dest member <<<"$c"
    reply="$(bus_call "$who" "$dest" "$member")"
    case "$reply" in
        *org.freedesktop.DBus.Error.AccessDenied*) ;;
        *) fail "D-Bus policy: $member to $dest should be denied for $who" "$reply" ;;
    esac
done
bus_checks=$((${#allowed[@]} + ${#denied[@]}))

# --- polkit rule ----------------------------------------------------------------------------
cat >"$work/polkit-mock.js" <<'EOF'
// The part of polkit's rules API the rule uses (values as in polkit's init.js).
var rules = [];
var polkit = {
    Result: { NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
              AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep", NOT_HANDLED: null },
    addRule: function (f) { rules.push(f); },
    addAdminRule: function () {},
    log: function () {},
    spawn: function () { throw new Error("a rule must not spawn processes"); }
};
EOF
cat >"$work/polkit-test.js" <<'EOF'
function decide(user, id, details) {
    var action = { id: id, lookup: function (k) { return details ? details[k] : undefined; } };
    var subject = { user: user, pid: 1234, groups: [user], local: false, active: false,
                    session: "", isInGroup: function (g) { return g === user; },
                    isInNetGroup: function () { return false; } };
    for (var i = 0; i < rules.length; i++) {
        var r = rules[i](action, subject);
        if (r !== undefined && r !== null) return r;
    }
    return null;
}
var cases = [
    ["nexa", "org.freedesktop.login1.reboot", null, "yes"],
    ["nexa", "org.freedesktop.login1.reboot-multiple-sessions", null, "yes"],
    ["nexa", "org.freedesktop.login1.reboot-ignore-inhibit", null, null],
    ["nexa", "org.freedesktop.login1.power-off", null, null],
    ["nexa", "org.freedesktop.login1.set-wall-message", null, null],
    ["nexa", "org.freedesktop.systemd1.manage-units", { unit: "reboot.target", verb: "start" }, "yes"],
    ["nexa", "org.freedesktop.systemd1.manage-units", { unit: "reboot.target", verb: "stop" }, null],
    ["nexa", "org.freedesktop.systemd1.manage-units", { unit: "poweroff.target", verb: "start" }, null],
    ["nexa", "org.freedesktop.systemd1.manage-unit-files", null, null],
    ["nexa", "de.pengutronix.rauc.install", null, null],
    ["nobody", "org.freedesktop.login1.reboot", null, null],
    ["nexa-server", "org.freedesktop.systemd1.manage-units", { unit: "reboot.target", verb: "start" }, null]
];
if (rules.length === 0) throw new Error("the rule file adds no rule");
for (var i = 0; i < cases.length; i++) {
    var c = cases[i], got = decide(c[0], c[1], c[2]);
    if (got !== c[3]) {
        throw new Error(c[0] + " " + c[1] + " " + JSON.stringify(c[2]) + ": got " + got + ", want " + c[3]);
    }
}
print(cases.length);
EOF
if ! polkit_checks="$(duk "$work/polkit-mock.js" "$units_dir/nexa-agent.polkit.rules" "$work/polkit-test.js" 2>&1)"; then
    fail "nexa-agent.polkit.rules" "$polkit_checks"
fi

# --- sysusers and tmpfiles on a temporary root ----------------------------------------------
root="$work/root"
mkdir -p "$root/etc/nexa" "$root/certs/.staging"
# What a root-run `nexa-agent enroll --force` leaves behind.
printf 'key\n' >"$root/certs/device.key"
printf 'cert\n' >"$root/certs/device.crt"
chmod 0600 "$root/certs/device.key"
chmod 0644 "$root/certs/device.crt"
chmod 0755 "$root/certs"
chmod 0700 "$root/certs/.staging"
printf 'cek_x\n' >"$root/etc/nexa/enrollment.key"
chmod 0644 "$root/etc/nexa/enrollment.key"
out="$(systemd-sysusers --root="$root" "$units_dir"/*.sysusers.conf 2>&1)" || fail "systemd-sysusers failed" "$out"
for u in nexa nexa-server; do
    grep -q "^$u:" "$root/etc/passwd" || fail "systemd-sysusers created no user $u" "$out"
done
nexa_ids="$(awk -F: '$1 == "nexa" { print $3 ":" $4 }' "$root/etc/passwd")"
out="$(systemd-tmpfiles --root="$root" --create "$units_dir/nexa-agent.tmpfiles.conf" 2>&1)" ||
    fail "systemd-tmpfiles --create nexa-agent.tmpfiles.conf failed" "$out"
[ -z "$out" ] || fail "systemd-tmpfiles reports" "$out"
want=(
    "700 $nexa_ids certs"
    "600 $nexa_ids certs/device.key"
    "644 $nexa_ids certs/device.crt"
    "700 $nexa_ids certs/.staging"
    "600 $nexa_ids etc/nexa/enrollment.key"
)
for w in "${want[@]}"; do
    path="${w##* }"
    got="$(cd "$root" && stat -c '%a %u:%g %n' "$path")"
    [ "$got" = "$w" ] || fail "after systemd-tmpfiles: $path is $got, want $w"
done
rm -rf "$root/certs"
systemd-tmpfiles --root="$root" --create "$units_dir/nexa-agent.tmpfiles.conf" >/dev/null 2>&1 ||
    fail "systemd-tmpfiles cannot create a missing /certs"
[ "$(stat -c '%a %u:%g' "$root/certs")" = "700 $nexa_ids" ] || fail "a missing /certs is not created 0700 nexa:nexa"
# A reboot request: kept by the units' --create (a fresh one must reach nexa-reboot.path),
# removed by the boot's --remove (a stale one must never reboot the device again).
mkdir -p "$root/var/lib/nexa"
printf 'requested_at=x\n' >"$root/var/lib/nexa/reboot-request"
systemd-tmpfiles --root="$root" --create "$units_dir/nexa-agent.tmpfiles.conf" >/dev/null 2>&1 || true
[ -f "$root/var/lib/nexa/reboot-request" ] || fail "systemd-tmpfiles --create removed a fresh reboot request"
systemd-tmpfiles --root="$root" --create --remove --boot "$units_dir/nexa-agent.tmpfiles.conf" >/dev/null 2>&1 || true
[ ! -e "$root/var/lib/nexa/reboot-request" ] || fail "systemd-tmpfiles --remove --boot kept a stale reboot request"

printf 'check-units: %s units verified; D-Bus policy (%s calls), polkit rule (%s cases), sysusers and tmpfiles checked\n' \
    "$verified" "$bus_checks" "$polkit_checks"
printf '  %s\n' "${summary[@]}"
