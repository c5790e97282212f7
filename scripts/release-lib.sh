# Release builds of nexa-agent and nexa-server: static musl executables, stripped, checked.
# Used by scripts/release.sh (and through it by the QEMU boot test). Source it after lib.sh;
# do not run it.
#
# The agent is built with [profile.embedded] (root Cargo.toml: opt-level "z", fat LTO, one
# codegen unit, panic = abort, stripped) in one of four feature configurations; the server
# with [profile.embedded-server] (opt-level "s", fat LTO, one codegen unit, stripped; it
# keeps unwinding, right for a server), also static.
# shellcheck shell=bash

# Set by release_setup: 1 when the C cross compiler is a glibc one (agent only).
# shellcheck disable=SC2034 # read by release.sh
RELEASE_CROSS_GLIBC=0

# Agent configurations: name, output file, cargo feature flags.
RELEASE_AGENT_CONFIGS=(full no-ota no-mqtt minimal)
# The agent's size limit in bytes (stripped); the build fails above it.
RELEASE_AGENT_MAX_BYTES="${NEXA_AGENT_MAX_BYTES:-6291456}"

# release_agent_file CONFIG: the output file name of an agent configuration.
release_agent_file() {
    case "$1" in
        full) echo nexa-agent ;;
        no-ota | no-mqtt | minimal) echo "nexa-agent-$1" ;;
        *) return 1 ;;
    esac
}

# release_agent_features CONFIG: the cargo flags selecting its features (one per line).
release_agent_features() {
    case "$1" in
        full) ;;
        no-ota) printf '%s\n' --no-default-features --features mqtt ;;
        no-mqtt) printf '%s\n' --no-default-features --features ota ;;
        minimal) printf '%s\n' --no-default-features ;;
        *) return 1 ;;
    esac
}

# release_agent_describe CONFIG: which features it has, for people.
release_agent_describe() {
    case "$1" in
        full) echo "mqtt, ota (default)" ;;
        no-ota) echo "mqtt" ;;
        no-mqtt) echo "ota" ;;
        minimal) echo "none" ;;
    esac
}

# release_setup TRIPLE: host packages, the Rust target and, for a cross target, the C cross
# compiler and linker (ring, and the server's bundled SQLite, compile C). Exits with a message
# naming what is missing.
release_setup() {
    local triple="$1" var cc_var candidates=() debian=()
    case "$triple" in
        x86_64-unknown-linux-musl) ;;
        aarch64-unknown-linux-musl)
            candidates=(aarch64-linux-musl-gcc aarch64-linux-gnu-gcc)
            debian=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
            ;;
        armv7-unknown-linux-musleabihf)
            candidates=(arm-linux-musleabihf-gcc armv7l-linux-musleabihf-gcc arm-linux-gnueabihf-gcc)
            debian=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
            ;;
        *)
            echo "release: unsupported target $triple (use x86_64-unknown-linux-musl," \
                "aarch64-unknown-linux-musl or armv7-unknown-linux-musleabihf)" >&2
            exit 2
            ;;
    esac
    install_debs build-essential musl-tools binutils file
    ensure_rust
    rustup target list --installed | grep -qx "$triple" || {
        log "adding Rust target $triple"
        rustup target add "$triple" || {
            echo "release: cannot add the Rust target $triple: run \`rustup target add $triple\`" >&2
            exit 2
        }
    }
    [ "${#candidates[@]}" -gt 0 ] || return 0

    # Cross: CARGO_TARGET_<TRIPLE>_LINKER and CC_<triple> win when set; else a musl cross gcc
    # on PATH; else Debian's glibc cross gcc (installed if missing), which links Rust's
    # self-contained musl (the Rust target ships musl's crt objects and libc.a).
    var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER"
    cc_var="CC_${triple//-/_}"
    if [ -z "${!var:-}" ]; then
        local gcc="" candidate
        for candidate in "${candidates[@]}"; do
            if command -v "$candidate" >/dev/null 2>&1; then gcc="$candidate"; break; fi
        done
        if [ -z "$gcc" ] || [ "$gcc" = "${candidates[-1]}" ]; then
            # Debian's cross gcc needs its libc headers too (a Recommends, not a Depends).
            install_debs "${debian[@]}"
            gcc="${candidates[-1]}"
        fi
        command -v "$gcc" >/dev/null 2>&1 || {
            echo "release: no C cross compiler for $triple: install a musl cross toolchain" \
                "(${candidates[0]}) or Debian's ${debian[*]}, or set $var and $cc_var" >&2
            exit 2
        }
        export "$var=$gcc"
        log "cross linker for $triple: $gcc ($var)"
    fi
    if [ -z "${!cc_var:-}" ]; then
        export "$cc_var=${!var}"
    fi
    # A glibc cross gcc compiles C against glibc's headers: fine for ring (it uses no libc
    # types), not for SQLite, which the server bundles (glibc's LFS64 names such as pread64,
    # and on 32-bit targets glibc's off_t and time_t, do not match musl).
    # shellcheck disable=SC2034 # read by release.sh
    case "${!cc_var}" in
        *-gnu-gcc | *-gnueabihf-gcc | *-gnu-gcc-[0-9]* | *-gnueabihf-gcc-[0-9]*) RELEASE_CROSS_GLIBC=1 ;;
        *) RELEASE_CROSS_GLIBC=0 ;;
    esac
    # Static archives of the C parts, made by the same toolchain.
    local ar_var="AR_${triple//-/_}" ar
    ar="${!cc_var%gcc}ar"
    if [ -z "${!ar_var:-}" ] && command -v "$ar" >/dev/null 2>&1; then
        export "$ar_var=$ar"
    fi
}

# release_check FILE: fails unless FILE is a static, stripped executable.
release_check() {
    local f="$1" what
    assert_static "$f"
    what="$(file -b "$f")"
    case "$what" in
        *"dynamically linked"*)
            echo "$f is dynamically linked: $what" >&2
            exit 1
            ;;
        *"not stripped"* | *"with debug_info"*)
            echo "$f is not stripped: $what" >&2
            exit 1
            ;;
    esac
}

# release_size FILE: "<bytes> bytes (<MiB> MiB)".
release_size() {
    local bytes
    bytes="$(stat -c %s "$1")"
    printf '%s bytes (%s MiB)' "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')"
}

# release_build_agent TRIPLE CONFIG OUTDIR: builds, checks and copies one agent configuration;
# fails above RELEASE_AGENT_MAX_BYTES.
release_build_agent() {
    local triple="$1" config="$2" out="$3" name src bytes
    local flags=()
    name="$(release_agent_file "$config")" || {
        echo "release: unknown agent configuration $config (one of ${RELEASE_AGENT_CONFIGS[*]})" >&2
        exit 2
    }
    mapfile -t flags < <(release_agent_features "$config")
    log "nexa-agent $config (features: $(release_agent_describe "$config")), $triple, profile embedded"
    (cd "$NEXA_ROOT" && cargo build --locked --target "$triple" --profile embedded -p nexa-agent "${flags[@]}")
    src="$CARGO_TARGET_DIR/$triple/embedded/nexa-agent"
    release_check "$src"
    mkdir -p "$out"
    cp "$src" "$out/$name.tmp"
    mv "$out/$name.tmp" "$out/$name"
    bytes="$(stat -c %s "$out/$name")"
    if [ "$bytes" -gt "$RELEASE_AGENT_MAX_BYTES" ]; then
        echo "release: $name is $(release_size "$out/$name"), above the limit of" \
            "$RELEASE_AGENT_MAX_BYTES bytes (NEXA_AGENT_MAX_BYTES)" >&2
        exit 1
    fi
}

# release_build_server TRIPLE OUTDIR: builds, checks and copies nexa-server (profile
# embedded-server).
release_build_server() {
    local triple="$1" out="$2" src
    log "nexa-server, $triple, profile embedded-server"
    (cd "$NEXA_ROOT" && cargo build --locked --target "$triple" --profile embedded-server -p nexa-server)
    src="$CARGO_TARGET_DIR/$triple/embedded-server/nexa-server"
    release_check "$src"
    mkdir -p "$out"
    cp "$src" "$out/nexa-server.tmp"
    mv "$out/nexa-server.tmp" "$out/nexa-server"
}

# release_check_features: every agent configuration compiles and lints clean (all targets),
# and the unit tests pass without the default features.
release_check_features() {
    local config flags=()
    for config in "${RELEASE_AGENT_CONFIGS[@]}"; do
        mapfile -t flags < <(release_agent_features "$config")
        log "clippy: nexa-agent $config (features: $(release_agent_describe "$config"))"
        (cd "$NEXA_ROOT" && cargo clippy --locked -p nexa-agent "${flags[@]}" --all-targets -- -D warnings)
    done
    log "unit tests: nexa-agent without default features"
    (cd "$NEXA_ROOT" && cargo test --locked -p nexa-agent --no-default-features --lib)
}
