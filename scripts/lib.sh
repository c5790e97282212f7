# Shared helpers for the project's scripts. Source it; do not run it.
# shellcheck shell=bash

# shellcheck disable=SC2034 # used by the scripts that source this file
NEXA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUSL_TARGET=x86_64-unknown-linux-musl
MSRV_TOOLCHAIN=1.94.1

# Builds go to a target directory outside the clone, reused between runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nexa/target}"

log() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# install_debs PKG...: installs the Debian packages that are missing.
install_debs() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# ensure_rust [musl] [msrv]: makes sure cargo exists, plus the musl target and/or MSRV toolchain.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "cargo not found: install Rust with rustup (https://rustup.rs) and run this again" >&2
            exit 2
        fi
    fi
    for want in "$@"; do
        case "$want" in
            musl)
                rustup target list --installed | grep -qx "$MUSL_TARGET" || {
                    log "adding Rust target $MUSL_TARGET"
                    rustup target add "$MUSL_TARGET"
                }
                ;;
            msrv)
                rustup toolchain list | grep -q "^$MSRV_TOOLCHAIN" || {
                    log "installing Rust $MSRV_TOOLCHAIN (the Yocto toolchain)"
                    rustup toolchain install "$MSRV_TOOLCHAIN" --profile minimal
                }
                ;;
        esac
    done
}

# assert_static FILE: fails unless FILE is a statically linked executable.
assert_static() {
    local f="$1"
    if readelf -d "$f" 2>/dev/null | grep -q NEEDED; then
        echo "$f has dynamic dependencies:" >&2
        readelf -d "$f" | grep NEEDED >&2
        exit 1
    fi
    if readelf -l "$f" 2>/dev/null | grep -q INTERP; then
        echo "$f requests a dynamic loader" >&2
        exit 1
    fi
}
