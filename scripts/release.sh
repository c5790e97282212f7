#!/usr/bin/env bash
# Release build: static musl nexa-agent and nexa-server, stripped, with their sizes.
#
#   ./scripts/release.sh [--target TRIPLE] [--out DIR] [--configs LIST] [--no-server] [--no-checks]
#
# The agent uses [profile.embedded] (root Cargo.toml: opt-level "z", fat LTO, one codegen
# unit, panic = abort, stripped) in each feature configuration:
#   full      default features (mqtt, ota)         -> nexa-agent
#   no-ota    --no-default-features -F mqtt         -> nexa-agent-no-ota
#   no-mqtt   --no-default-features -F ota          -> nexa-agent-no-mqtt
#   minimal   --no-default-features                 -> nexa-agent-minimal
# The server uses [profile.embedded-server] (opt-level "s", fat LTO, one codegen unit,
# unwinding kept) -> nexa-server. Every binary must be a
# static executable (no INTERP, no NEEDED, per readelf and file) and stripped, and every agent
# at most NEXA_AGENT_MAX_BYTES (default 6 MiB); otherwise the script fails. First, unless
# --no-checks, each configuration must pass `cargo clippy -p nexa-agent ... --all-targets
# -D warnings` and the unit tests must pass without default features.
#
# Options (and environment):
#   --target TRIPLE  (NEXA_RELEASE_TARGET) x86_64-unknown-linux-musl (default),
#                    aarch64-unknown-linux-musl or armv7-unknown-linux-musleabihf
#   --out DIR        (NEXA_RELEASE_OUT) where the binaries go;
#                    default $CARGO_TARGET_DIR/nexa-release/TRIPLE
#   --configs LIST   (NEXA_RELEASE_CONFIGS) agent configurations, comma-separated;
#                    default full,no-ota,no-mqtt,minimal; "none" builds only the server
#   --no-server      do not build nexa-server
#   --no-checks      (NEXA_RELEASE_CHECKS=0) skip the clippy/unit-test matrix
#   NEXA_AGENT_MAX_BYTES  the agent's size limit in bytes (default 6291456)
#
# Cross builds (aarch64, armv7): the script adds the Rust target with rustup and needs a C
# cross compiler, since ring (both binaries) and the server's bundled SQLite compile C code.
# It uses, in this order: CARGO_TARGET_<TRIPLE>_LINKER (and CC_<triple>) if set, e.g.
#   CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-musl-gcc
#   CC_aarch64_unknown_linux_musl=aarch64-linux-musl-gcc
# a musl cross gcc on PATH (aarch64-linux-musl-gcc, arm-linux-musleabihf-gcc, e.g. from
# musl.cc), else Debian's glibc cross gcc (gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf,
# installed if missing), which links Rust's self-contained musl (crt objects and libc.a ship
# with the Rust target). A glibc cross gcc is enough for the agent (its only C is ring's, which
# uses no libc types) but not for the server's SQLite (glibc's pread64/mmap64/lstat64 and, on
# armv7, glibc's 32-bit off_t/time_t do not match musl): the script then refuses to build the
# server and asks for --no-server or a musl cross gcc. The binaries are checked the same way.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/release-lib.sh"

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

die_usage() {
    echo "release.sh: $*" >&2
    echo "usage: $0 [--target TRIPLE] [--out DIR] [--configs LIST] [--no-server] [--no-checks] (-h for help)" >&2
    exit 2
}

target="${NEXA_RELEASE_TARGET:-$MUSL_TARGET}"
out="${NEXA_RELEASE_OUT:-}"
configs="${NEXA_RELEASE_CONFIGS:-$(IFS=,; echo "${RELEASE_AGENT_CONFIGS[*]}")}"
checks="${NEXA_RELEASE_CHECKS:-1}"
server=1
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --target) [ $# -ge 2 ] || die_usage "--target needs a target triple"; target="$2"; shift 2 ;;
        --target=*) target="${1#*=}"; shift ;;
        --out) [ $# -ge 2 ] || die_usage "--out needs a directory"; out="$2"; shift 2 ;;
        --out=*) out="${1#*=}"; shift ;;
        --configs) [ $# -ge 2 ] || die_usage "--configs needs a list"; configs="$2"; shift 2 ;;
        --configs=*) configs="${1#*=}"; shift ;;
        --no-server) server=0; shift ;;
        --no-checks) checks=0; shift ;;
        *) die_usage "unknown argument $1" ;;
    esac
done
[ -n "$target" ] || die_usage "--target is empty"
out="${out:-$CARGO_TARGET_DIR/nexa-release/$target}"
agents=()
if [ "$configs" != none ]; then
    IFS=, read -r -a agents <<<"$configs"
    for c in "${agents[@]}"; do
        release_agent_file "$c" >/dev/null ||
            die_usage "unknown agent configuration '$c' in --configs (use ${RELEASE_AGENT_CONFIGS[*]} or none)"
    done
fi
case "$RELEASE_AGENT_MAX_BYTES" in
    '' | *[!0-9]*) die_usage "NEXA_AGENT_MAX_BYTES must be a number of bytes, not '$RELEASE_AGENT_MAX_BYTES'" ;;
esac

now() { date +%s; }
started=$(now)
declare -A took=()

release_setup "$target"
if [ "$server" = 1 ] && [ "$RELEASE_CROSS_GLIBC" = 1 ]; then
    cc_var="CC_${target//-/_}"
    echo "release: nexa-server for $target needs a musl cross C compiler for its bundled SQLite;" \
        "${!cc_var} is a glibc one, which builds only the agent. Pass --no-server, or set" \
        "CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER and $cc_var to a musl cross gcc" \
        "(e.g. aarch64-linux-musl-gcc)" >&2
    exit 2
fi
if [ "$checks" = 1 ]; then
    t=$(now)
    release_check_features
    took[checks]=$(($(now) - t))
fi
for c in "${agents[@]}"; do
    t=$(now)
    release_build_agent "$target" "$c" "$out"
    took[$c]=$(($(now) - t))
done
if [ "$server" = 1 ]; then
    t=$(now)
    release_build_server "$target" "$out"
    took[server]=$(($(now) - t))
fi

log "release binaries for $target in $out (static, stripped)"
for c in "${agents[@]}"; do
    f="$out/$(release_agent_file "$c")"
    printf '%-20s %-32s %-20s built in %ss\n' "${f##*/}" "$(release_size "$f")" \
        "[$(release_agent_describe "$c")]" "${took[$c]}"
done
if [ "$server" = 1 ]; then
    printf '%-20s %-32s %-20s built in %ss\n' nexa-server "$(release_size "$out/nexa-server")" \
        "[embedded-server]" "${took[server]}"
fi
[ "$checks" != 1 ] || echo "feature matrix (clippy x${#RELEASE_AGENT_CONFIGS[@]}, unit tests): ${took[checks]}s"
echo "agent limit: $RELEASE_AGENT_MAX_BYTES bytes; total $(($(now) - started))s"
