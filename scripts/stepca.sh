#!/usr/bin/env bash
# Builds a real smallstep step-ca (and our offline init tool) from Debian's Go sources, for
# integration tests. Idempotent and offline once the Debian packages are installed:
#
#   1. installs golang-go and golang-github-smallstep-certificates-dev if missing
#      (apt-get, non-interactive; through sudo when not root);
#   2. builds scripts/stepca/step-ca (upstream's cmd/step-ca, which Debian dropped) and
#      scripts/stepca/step-ca-init (`step ca init` through the pki package) in GOPATH mode,
#      static (CGO_ENABLED=0), nothing fetched;
#   3. prints the directory holding both binaries as the last line of stdout.
#
# The build is skipped while both binaries are newer than their sources and were built by the
# same Go and certificates-dev versions. Everything lands in the cache directory
# ${NEXA_STEPCA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nexa/stepca}: bin/, the Go build cache,
# the GOPATH copy of our sources and Go's temporary build directories.
#
# Usage: bash scripts/stepca.sh [--force]    (--force rebuilds even when up to date)
# A cold build takes about 2 minutes on 2 cores; a warm run well under a second.
set -euo pipefail

force=0
for arg in "$@"; do
    case "$arg" in
    --force) force=1 ;;
    -h | --help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "stepca.sh: unknown argument: $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
src_dir="$NEXA_ROOT/scripts/stepca"
cache="${NEXA_STEPCA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nexa/stepca}"
bin="$cache/bin"
tools=(step-ca step-ca-init)
packages=(golang-go golang-github-smallstep-certificates-dev)
gocode=/usr/share/gocode
# Debian's Go (from golang-go), whatever else is first in PATH: the sources match it.
go=/usr/lib/go/bin/go

for t in "${tools[@]}"; do
    [[ -f "$src_dir/$t/main.go" ]] || {
        echo "stepca.sh: missing $src_dir/$t/main.go" >&2
        exit 1
    }
done

# --- 1. Debian packages -------------------------------------------------------------------
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    apt=(as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q
        -o DPkg::Lock::Timeout=600 --no-install-recommends)
    log "installing Debian packages: ${missing[*]}"
    # Try the package lists at hand first (works offline with a local mirror or cache); a
    # fresh machine may have none yet: update once and retry.
    "${apt[@]}" install "${missing[@]}" >&2 ||
        { "${apt[@]}" update >&2 && "${apt[@]}" install "${missing[@]}" >&2; }
fi

# --- 2. Build -----------------------------------------------------------------------------
mkdir -p "$cache"
# One build at a time (parallel test processes may all call this script).
exec 9>"$cache/.lock"
flock 9

export GO111MODULE=off GOFLAGS='' GOPROXY=off GOTOOLCHAIN=local GOENV=off CGO_ENABLED=0
export GOPATH="$cache/gopath:$gocode" GOCACHE="$cache/gocache" GOTMPDIR="$cache/tmp"
key="$("$go" version) | certificates-dev $(dpkg-query -W -f='${Version}' golang-github-smallstep-certificates-dev)"

up_to_date() {
    ((force == 0)) || return 1
    [[ -f "$bin/.key" && "$(cat "$bin/.key")" == "$key" ]] || return 1
    local t
    for t in "${tools[@]}"; do
        [[ -x "$bin/$t" && "$bin/$t" -nt "$src_dir/$t/main.go" ]] || return 1
    done
}

if ! up_to_date; then
    mkdir -p "$bin" "$GOCACHE" "$GOTMPDIR"
    rm -f "$bin/.key"
    trap 'rm -rf "$GOTMPDIR"' EXIT
    for t in "${tools[@]}"; do
        pkg="nexa-stepca/cmd/$t"
        mkdir -p "$cache/gopath/src/$pkg"
        cp "$src_dir/$t/main.go" "$cache/gopath/src/$pkg/main.go"
        log "building $t (cold: about 2 minutes for step-ca)"
        start=$SECONDS
        "$go" build -trimpath -o "$bin/$t.tmp" "$pkg" >&2
        mv -f "$bin/$t.tmp" "$bin/$t"
        log "built $bin/$t in $((SECONDS - start)) s"
    done
    echo "$key" >"$bin/.key"
fi

echo "$bin"
