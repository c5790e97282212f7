#!/usr/bin/env bash
# Checks the meta-nexa Yocto layer (see meta-nexa/README.md):
#   1. layout: layer.conf, README/SECURITY, recipe names, files the recipes use, licence
#      checksums, inline lint suppressions, the recipes' SRCREV and what it contains;
#   2. crates: each <pn>-crates.inc is what `bitbake -c update_crates` writes for SRCREV
#      (scripts/gen-crates-inc.py --check);
#   3. oelint: oelint-adv --release wrynose on every recipe, append and class; any warning
#      or error fails;
#   4. bitbake: with OE_CORE_DIR pointing at an oe-core wrynose checkout (bitbake 2.18
#      beside it, or BITBAKE_DIR), an offline parse of oe-core + meta-nexa (`bitbake -p`),
#      `bitbake -e` checks of the recipes, `bitbake -c recipe_qa`, oe-core's own
#      update_crates code run against SRCREV, and `bitbake -S none linux-yocto` with and
#      without the layer (its `nexa` feature off): every task signature must match;
#      skipped (with a message) without it.
#
# Usage: scripts/check-layer.sh [--release] [-h]
#   --release   the recipes' SRCREV must hold everything they install (LICENSE, units,
#               Cargo features); without it a gap is reported as a note (a commit that
#               changes the layer can never be its own SRCREV, see README "Releases")
# Environment:
#   OE_CORE_DIR       oe-core checkout (wrynose) for step 4
#   BITBAKE_DIR       bitbake checkout (2.18); default: OE_CORE_DIR/../bitbake
#   CHECK_TCLIBC      glibc (default) or musl
#   CHECK_MACHINE     default qemux86-64
#   CHECK_EXTRA_LAYERS     more layers for the parse, e.g. a meta-rauc wrynose checkout
#   CHECK_DISTRO_FEATURES  added to DISTRO_FEATURES for the parse; default "nexa", plus
#                     "rauc" when CHECK_EXTRA_LAYERS has meta-rauc (the rauc feature makes
#                     nexa-agent's ota RDEPEND on rauc, which only meta-rauc provides)
#   CHECK_BUILDDIR    bitbake build directory (kept: its parse cache makes reruns fast);
#                     default: the cache directory below, per TCLIBC
#   OELINT_VERBOSE=1  also list oelint's info findings
# Caches (outside the clone): ${XDG_CACHE_HOME:-~/.cache}/nexa/{oelint-venv-*,yocto/}.
# Exit status: 0 every step passed or was skipped, 1 a step failed, 2 usage.

# The script matches bitbake text such as ${S} and ${BPN} literally.
# shellcheck disable=SC2016
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

LAYER="$NEXA_ROOT/meta-nexa"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/nexa"

# oelint-adv and its dependencies, pinned (the rules change between releases).
OELINT_VERSION=9.11.2
OELINT_PINS=(
    "oelint-adv==$OELINT_VERSION" oelint-parser==8.13.2 oelint-data==1.5.26
    anytree==2.13.0 argcomplete==3.7.2 colorama==0.4.6 Deprecated==1.3.1
    regex==2026.9.29 urllib3==2.8.0 wrapt==2.5.2
)

# Suppressed oelint findings, each with its reason. Nothing else may be suppressed.
#  - oelint.vars.homepageping (everywhere): it fetches HOMEPAGE, which needs a network
#    this check must not depend on; always a warning offline.
OELINT_SUPPRESS=(oelint.vars.homepageping)
#  - in the generated *-crates.inc only: oelint.vars.inconspaces and .notneededspace flag
#    `SRC_URI += " \`, the exact format oe-core's `bitbake -c update_crates` writes (and
#    python3-bcrypt-crates.inc in oe-core has); the files must stay byte-identical to that
#    output, which step 2 checks. Elsewhere both rules stay on (inconspaces catches the
#    real `:append = "x"` bug).
CRATES_INC_FILTERED='oelint\.vars\.(inconspaces|notneededspace)'
#  - inline `# nooelint:` comments: only these (file:rule), each explained beside it;
#    none at present (the appends to other layers' recipes carry the `nexa` override that
#    oelint.vars.noncoreoverride asks for).
INLINE_ALLOWED=()

RELEASE=0
for arg in "$@"; do
    case "$arg" in
        --release) RELEASE=1 ;;
        -h | --help)
            sed -n '2,/^$/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "check-layer.sh: unknown argument $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

SUMMARY=()
NOTES=()
FAILED=0
fail() { printf 'FAIL: %s\n' "$*" >&2; }
note() { NOTES+=("$*"); }
step_result() { # NAME STATUS SECONDS DETAIL
    SUMMARY+=("$(printf '%-8s %-4s %4ss  %s' "$1" "$2" "$3" "$4")")
    [ "$2" != FAIL ] || FAILED=1
}

# --- recipe facts ---------------------------------------------------------------------

recipes() { find "$LAYER" -path "$LAYER/recipes-*" -name '*.bb' | sort; }
rel() { printf '%s' "${1#"$NEXA_ROOT"/}"; }

# The pinned SRCREV of the source the Nexa recipes build (all share recipes-nexa/nexa.inc).
srcrev() { sed -n 's/^SRCREV = "\([0-9a-f]\{40\}\)"$/\1/p' "$LAYER/recipes-nexa/nexa.inc"; }

# `file://X;md5=Y` pairs of LIC_FILES_CHKSUM in nexa.inc, one "X Y" a line.
lic_files() {
    grep -o 'file://[^;" ]*;md5=[0-9a-f]*' "$LAYER/recipes-nexa/nexa.inc" |
        sed 's,^file://\([^;]*\);md5=\(.*\)$,\1 \2,'
}

# Files a Nexa recipe installs from ${S}: `${S}/<path>` and `${S}/systemd/$unit` loops.
s_files() { # RECIPE
    local f="$1" units
    grep -o '\${S}/[A-Za-z0-9._/-]*' "$f" | sed 's,^\${S}/,,' | grep -v '/$' || true
    units=$(sed -n 's/^NEXA_[A-Z_]*UNITS = "\(.*\)"$/\1/p' "$f")
    for u in $units; do printf 'systemd/%s\n' "$u"; done
}

# --- 1. layout ------------------------------------------------------------------------

check_layout() {
    local problems=() f base pn rev RECIPES=()
    mapfile -t RECIPES < <(recipes)
    for f in conf/layer.conf README.md SECURITY.md recipes-nexa/nexa.inc; do
        [ -f "$LAYER/$f" ] || problems+=("meta-nexa/$f is missing")
    done
    if [ -f "$LAYER/conf/layer.conf" ]; then
        local want
        for want in 'BBFILE_COLLECTIONS += "nexa"' 'BBFILE_PATTERN_nexa = "^${LAYERDIR}/"' \
            'LAYERDEPENDS_nexa = "core"' 'LAYERSERIES_COMPAT_nexa = "wrynose"'; do
            grep -qxF "$want" "$LAYER/conf/layer.conf" || problems+=("conf/layer.conf lacks: $want")
        done
        grep -q '^BBFILE_PRIORITY_nexa = "[0-9]*"$' "$LAYER/conf/layer.conf" ||
            problems+=("conf/layer.conf lacks BBFILE_PRIORITY_nexa")
    fi
    for f in README.md SECURITY.md; do
        [ ! -f "$LAYER/$f" ] || grep -qi 'maintainer\|report' "$LAYER/$f" ||
            problems+=("meta-nexa/$f names no maintainer / reporting address")
    done
    # Recipe names: lower case <pn>_<version>.bb; crates.inc beside cargo recipes.
    while read -r f; do
        base=$(basename "$f")
        [[ "$base" =~ ^[a-z0-9][a-z0-9+.-]*(_[a-z0-9][a-z0-9+.-]*)?\.bb$ ]] ||
            problems+=("$(rel "$f"): recipe file names are <pn>[_<version>].bb in lower case")
        pn=${base%%_*}
        if grep -q 'cargo-update-recipe-crates' "$f"; then
            grep -qxF 'require ${BPN}-crates.inc' "$f" ||
                problems+=("$(rel "$f"): a cargo recipe requires \${BPN}-crates.inc")
            grep -q '^CARGO_BUILD_FLAGS += "-p '"$pn"'[ "]' "$f" ||
                problems+=("$(rel "$f"): CARGO_BUILD_FLAGS += \"-p $pn\" (the workspace has several binaries)")
        fi
        if grep -q 'AUTOREV' "$f"; then problems+=("$(rel "$f"): AUTOREV in a release recipe"); fi
    done < <(printf '%s\n' "${RECIPES[@]}")
    # file:// sources exist in the layer (beside the recipe or in files/); LIC_FILES_CHKSUM
    # entries (;md5=) name files of ${S} instead.
    while read -r f; do
        local name
        while read -r name; do
            [ -n "$name" ] || continue
            [ -e "$(dirname "$f")/files/$name" ] || [ -e "$(dirname "$f")/$name" ] ||
                [ -e "$(dirname "$f")/$(basename "$f" | sed 's/[_.].*//')/$name" ] ||
                problems+=("$(rel "$f"): file://$name not found beside it or in files/")
        done < <(grep -o 'file://[A-Za-z0-9._/-]*[^ "]*' "$f" | grep -v ';md5=' | sed 's,^file://,,; s,;.*,,' | sort -u)
    done < <(find "$LAYER" \( -name '*.bb' -o -name '*.bbappend' -o -name '*.inc' \) ! -name '*-crates.inc' | sort)
    # Inline oelint suppressions: only the listed ones.
    while IFS=: read -r f _ ids; do
        local id
        for id in $(printf '%s' "$ids" | sed 's/^.*nooelint:[[:space:]]*//' | tr ',' ' '); do
            local key="${f#"$LAYER"/}:$id" ok=0 a
            for a in "${INLINE_ALLOWED[@]}"; do [ "$a" != "$key" ] || ok=1; done
            [ "$ok" = 1 ] || problems+=("$(rel "$f"): inline suppression $id is not in check-layer.sh's list (add it there with its reason, or fix the finding)")
        done
    done < <(grep -rn --include='*.bb' --include='*.bbappend' --include='*.inc' --include='*.bbclass' 'nooelint:' "$LAYER" || true)
    # LIC_FILES_CHKSUM matches the working tree's licence files.
    local file sum
    while read -r file sum; do
        if [ ! -f "$NEXA_ROOT/$file" ]; then
            problems+=("LIC_FILES_CHKSUM names $file, which the repository lacks")
        elif [ "$(md5sum <"$NEXA_ROOT/$file" | cut -d' ' -f1)" != "$sum" ]; then
            problems+=("LIC_FILES_CHKSUM md5 of $file is stale: now $(md5sum <"$NEXA_ROOT/$file" | cut -d' ' -f1) (update recipes-nexa/nexa.inc)")
        fi
    done < <(lic_files)
    # What the recipes install from ${S} exists in the working tree.
    local installers=()
    mapfile -t installers < <(grep -l '\${S}/' "${RECIPES[@]}")
    for f in "${installers[@]}"; do
        while read -r file; do
            [ -e "$NEXA_ROOT/$file" ] || problems+=("$(rel "$f") installs \${S}/$file, which the repository lacks")
        done < <(s_files "$f")
    done

    # Each recipe's Cargo profile overrides = the repository's profile for that binary
    # (nexa-agent: [profile.embedded], nexa-server: [profile.embedded-server]); every
    # PACKAGECONFIG feature is a Cargo feature of nexa-agent.
    local agent server drift line
    agent=$(find "$LAYER/recipes-nexa/nexa-agent" -name 'nexa-agent_*.bb' | head -1)
    server=$(find "$LAYER/recipes-nexa/nexa-server" -name 'nexa-server_*.bb' | head -1)
    drift=$(python3 - "$NEXA_ROOT/Cargo.toml" "$NEXA_ROOT/agent/Cargo.toml" "$agent" "$server" <<'PY'
import re, sys, tomllib
ws, agent_toml, agent, server = sys.argv[1:]
profiles = tomllib.load(open(ws, "rb")).get("profile", {})
for recipe, pname in ((agent, "embedded"), (server, "embedded-server")):
    text = open(recipe).read()
    name = recipe.rsplit("/", 1)[1]
    prof = profiles.get(pname)
    if prof is None:
        print(f"Cargo.toml has no [profile.{pname}] for {name} to mirror")
        continue
    for key in ("opt-level", "lto", "codegen-units", "panic"):
        var = "CARGO_PROFILE_RELEASE_" + key.upper().replace("-", "_")
        m = re.search(r'^export %s = "([^"]*)"$' % var, text, re.M)
        want = str(prof.get(key, "unwind" if key == "panic" else "")).lower()
        found = m.group(1).lower() if m else ("unwind" if key == "panic" else None)
        if found != want:
            print(f'{name}: export {var} = "{want}" mirrors [profile.{pname}] {key}; found {found or "nothing"}')
text = open(agent).read()
feats = tomllib.load(open(agent_toml, "rb")).get("features", {})
for feat in re.findall(r'^PACKAGECONFIG\[[^]]+\] = "--features ([A-Za-z0-9_-]+)', text, re.M):
    if feat not in feats:
        print(f"{agent.rsplit('/', 1)[1]}: PACKAGECONFIG maps to Cargo feature {feat}, which agent/Cargo.toml lacks")
PY
    ) || drift="cannot read Cargo.toml, agent/Cargo.toml or the recipes"
    if [ -n "$drift" ]; then
        while IFS= read -r line; do problems+=("$line"); done <<<"$drift"
    fi

    # SRCREV: a commit of this repository holding what the recipes build and install.
    rev=$(srcrev)
    local gaps=()
    if [ -z "$rev" ]; then
        problems+=("recipes-nexa/nexa.inc has no pinned SRCREV (40 hex digits)")
    elif ! git -C "$NEXA_ROOT" cat-file -e "$rev^{commit}" 2>/dev/null; then
        problems+=("SRCREV $rev is not a commit of this clone (shallow clone? git fetch --unshallow)")
    else
        while read -r file sum; do
            if ! git -C "$NEXA_ROOT" cat-file -e "$rev:$file" 2>/dev/null; then
                gaps+=("$file")
            elif [ "$(git -C "$NEXA_ROOT" show "$rev:$file" | md5sum | cut -d' ' -f1)" != "$sum" ]; then
                gaps+=("$file (other md5)")
            fi
        done < <(lic_files)
        for f in "${installers[@]}"; do
            while read -r file; do
                git -C "$NEXA_ROOT" cat-file -e "$rev:$file" 2>/dev/null || gaps+=("$file")
            done < <(s_files "$f")
        done
        local feat
        for feat in mqtt ota; do
            git -C "$NEXA_ROOT" show "$rev:agent/Cargo.toml" 2>/dev/null | grep -q "^$feat = " ||
                gaps+=("agent feature $feat")
        done
        if [ "${#gaps[@]}" -gt 0 ]; then
            local msg
            msg="SRCREV ${rev:0:12} lacks what the recipes use: ${gaps[*]}; bump SRCREV in recipes-nexa/nexa.inc to a commit that has them (README: Releases)"
            if [ "$RELEASE" = 1 ]; then problems+=("$msg"); else note "$msg"; fi
        fi
    fi

    if [ "${#problems[@]}" -gt 0 ]; then
        printf '%s\n' "${problems[@]}" | sed 's/^/FAIL: layout: /' >&2
        return 1
    fi
}

# --- 2. crates.inc --------------------------------------------------------------------

check_crates() {
    python3 "$NEXA_ROOT/scripts/gen-crates-inc.py" --check || return 1
    # The working tree's Cargo.lock may already differ (the next SRCREV bump takes it up).
    if ! python3 "$NEXA_ROOT/scripts/gen-crates-inc.py" --check --src-dir "$NEXA_ROOT" >/dev/null 2>&1; then
        note "the working tree's Cargo.lock lists other crates than SRCREV's: the next SRCREV bump regenerates the crates.inc files (scripts/gen-crates-inc.py)"
    fi
}

# --- 3. oelint ------------------------------------------------------------------------

OELINT_SUMMARY=""
oelint_bin() {
    local venv="$CACHE/oelint-venv-$OELINT_VERSION" py
    if [ ! -x "$venv/bin/oelint-adv" ]; then
        py=$(command -v python3)
        if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c 'import ensurepip' 2>/dev/null; then
            install_debs python3-venv
            py=/usr/bin/python3
        fi
        rm -rf "$venv"
        "$py" -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "${OELINT_PINS[@]}" >&2
    fi
    printf '%s' "$venv/bin/oelint-adv"
}

check_oelint() {
    local bin files out rc=0 errors warnings infos
    bin=$(oelint_bin) || {
        fail "oelint: could not install oelint-adv $OELINT_VERSION from PyPI"
        return 1
    }
    mapfile -t files < <(cd "$LAYER" && find . \( -name '*.bb' -o -name '*.bbappend' -o -name '*.bbclass' \) | sed 's,^\./,,' | sort)
    # From the layer directory, so paths are layer-relative (and a .oelint.cfg there counts).
    local supp=()
    for s in "${OELINT_SUPPRESS[@]}"; do supp+=(--suppress "$s"); done
    out=$(cd "$LAYER" && OELINT_SKIP_CONFIG=1 "$bin" --quiet --relpaths --release wrynose --mode all \
        "${supp[@]}" --messageformat '{path}:{line}:{severity}:{id}:{msg}' "${files[@]}" 2>&1) || rc=$?
    if [ "$rc" -gt 1 ]; then
        printf '%s\n' "$out" >&2
        fail "oelint: oelint-adv crashed (exit $rc)"
        return 1
    fi
    out=$(printf '%s\n' "$out" | grep -Ev "^[^:]*-crates\.inc:[0-9]+:[a-z]+:$CRATES_INC_FILTERED:" | sed '/^$/d' || true)
    errors=$(printf '%s\n' "$out" | grep -c '^[^:]*:[0-9]*:error:' || true)
    warnings=$(printf '%s\n' "$out" | grep -c '^[^:]*:[0-9]*:warning:' || true)
    infos=$(printf '%s\n' "$out" | grep -c '^[^:]*:[0-9]*:info:' || true)
    OELINT_SUMMARY="oelint-adv $OELINT_VERSION, ${#files[@]} files: $errors errors, $warnings warnings, $infos infos"
    if [ "$errors" -gt 0 ] || [ "$warnings" -gt 0 ]; then
        printf '%s\n' "$out" | grep -E '^[^:]*:[0-9]*:(error|warning):' | sed 's,^,FAIL: oelint: meta-nexa/,' >&2
        return 1
    fi
    if [ "${OELINT_VERBOSE:-0}" = 1 ] && [ "$infos" -gt 0 ]; then
        printf '%s\n' "$out" | sed 's,^,info: oelint: meta-nexa/,' >&2
    fi
}

# --- 4. bitbake -----------------------------------------------------------------------

BB_SUMMARY=""
host_prepare() {
    # bitbake's server exits without this locale (bb/utils.py).
    if ! locale -a 2>/dev/null | grep -qix 'en_US.utf-\{0,1\}8'; then
        if [ "$(id -u)" -ne 0 ]; then
            fail "bitbake: the en_US.UTF-8 locale is missing (as root: enable it in /etc/locale.gen, run locale-gen)"
            return 1
        fi
        install_debs locales
        sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
        grep -qx 'en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
        locale-gen >/dev/null
    fi
    # HOSTTOOLS (meta/conf/bitbake.conf) are checked even for a parse.
    local tools missing=() t
    tools=$(sed -n '/^HOSTTOOLS += " \\$/,/^"$/p' "$OE_CORE_DIR/meta/conf/bitbake.conf" | tr -d '\\"' | sed 's/HOSTTOOLS +=//')
    for t in $tools; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        local debs=()
        for t in "${missing[@]}"; do
            case "$t" in
                g++) debs+=(g++) ;;
                pzstd | unzstd | zstd) debs+=(zstd) ;;
                xz) debs+=(xz-utils) ;;
                rpcgen) debs+=(rpcsvc-proto) ;;
                iconv | getconf | ldd) debs+=(libc-bin) ;;
                *) debs+=("$t") ;;
            esac
        done
        install_debs "${debs[@]}" || {
            fail "bitbake: host tools missing: ${missing[*]}"
            return 1
        }
    fi
    # Compressors the parse calls for (not in HOSTTOOLS' list above).
    command -v lz4c >/dev/null 2>&1 || install_debs lz4
}

# bitbake_in DIR ARGS...: bitbake ARGS in the build directory DIR; output to stdout.
bitbake_in() {
    local dir=$1
    shift
    (cd "$dir" && env LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 \
        PATH="$BITBAKE_DIR/bin:$OE_CORE_DIR/scripts:$PATH" BUILDDIR="$dir" bitbake "$@")
}

# bitbake in the build directory; output to LOG (appended).
bb() { bitbake_in "$BUILDDIR" "$@" >>"$LOG" 2>&1; }

# bitbake ARGS... in the build directory with NEXA_WIREGUARD=VALUE from the environment.
bb_wireguard() {
    local value=$1
    shift
    BB_ENV_PASSTHROUGH_ADDITIONS="NEXA_WIREGUARD" NEXA_WIREGUARD="$value" bitbake_in "$BUILDDIR" "$@"
}

# The value of VAR in the `bitbake -e` output FILE.
bbvar() { sed -n "s/^\(export \)\{0,1\}$2=\"\(.*\)\"$/\2/p" "$1" | tail -1; }

stop_server() {
    # bitbake's server normally exits with its client; end ours if it did not.
    local lock="$BUILDDIR/bitbake.lock" pid
    [ -f "$lock" ] || return 0
    pid=$(head -1 "$lock" 2>/dev/null | tr -dc 0-9)
    if [ -n "$pid" ] && ps -p "$pid" -o args= 2>/dev/null | grep -q bitbake; then kill "$pid" 2>/dev/null || true; fi
}

# signature_diff TCLIBC MACHINE FEATURES EXTRA_LAYER...: `bitbake -S none linux-yocto`
# with oe-core (and the extra layers) alone, then with meta-nexa added, both with FEATURES;
# prints how many task signatures matched, or which differ (and returns 1).
signature_diff() {
    local tclibc=$1 machine=$2 features=$3 with dir layers
    shift 3
    for with in 0 1; do
        dir="$CACHE/yocto/build-sig-$tclibc-$with"
        layers="$OE_CORE_DIR/meta $*"
        [ "$with" = 0 ] || layers="$layers $LAYER"
        mkdir -p "$dir/conf"
        printf 'BBPATH = "${TOPDIR}"\nBBFILES ?= ""\nBBLAYERS = "%s"\n' "$layers" >"$dir/conf/bblayers.conf"
        sed "s|^DISTRO_FEATURES:append = .*|DISTRO_FEATURES:append = \" $features\"|" \
            "$BUILDDIR/conf/local.conf" >"$dir/conf/local.conf"
        rm -rf "$dir/tmp/stamps"
        if ! bitbake_in "$dir" -S none linux-yocto >"$dir/signatures.log" 2>&1; then
            echo "bitbake -S none linux-yocto failed (log: $dir/signatures.log)"
            return 1
        fi
        (cd "$dir/tmp/stamps" && find . -name '*.sigdata.*' | sed 's/\.sigdata\./ /' | sort) >"$dir/signatures.txt"
    done
    local base="$CACHE/yocto/build-sig-$tclibc-0/signatures.txt" layer="$CACHE/yocto/build-sig-$tclibc-1/signatures.txt" n
    n=$(wc -l <"$base")
    if [ "$n" -eq 0 ] || ! cmp -s "$base" "$layer"; then
        echo "adding meta-nexa without its feature changes task signatures of linux-yocto's graph: $(diff "$base" "$layer" | grep '^[<>]' | head -4 | tr '\n' ' ')"
        return 1
    fi
    echo "signatures of linux-yocto's $n tasks unchanged by the layer without \`nexa\`"
}

check_bitbake() {
    if [ -z "${OE_CORE_DIR:-}" ]; then
        BB_SUMMARY="set OE_CORE_DIR to an oe-core wrynose checkout (bitbake 2.18 beside it or BITBAKE_DIR) for the offline bitbake parse"
        return 3
    fi
    OE_CORE_DIR=$(cd "$OE_CORE_DIR" && pwd)
    BITBAKE_DIR=$(cd "${BITBAKE_DIR:-$OE_CORE_DIR/../bitbake}" 2>/dev/null && pwd) || {
        fail "bitbake: no bitbake checkout at ${BITBAKE_DIR:-$OE_CORE_DIR/../bitbake} (set BITBAKE_DIR)"
        return 1
    }
    grep -q '^LAYERSERIES_CORENAMES = ".*wrynose' "$OE_CORE_DIR/meta/conf/layer.conf" 2>/dev/null || {
        fail "bitbake: $OE_CORE_DIR is not oe-core wrynose (meta/conf/layer.conf LAYERSERIES_CORENAMES)"
        return 1
    }
    local bbver
    bbver=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$BITBAKE_DIR/lib/bb/__init__.py" 2>/dev/null)
    case "$bbver" in
        2.18.*) ;;
        *)
            fail "bitbake: $BITBAKE_DIR is bitbake ${bbver:-?}, wrynose needs 2.18"
            return 1
            ;;
    esac
    host_prepare || return 1

    local tclibc="${CHECK_TCLIBC:-glibc}" machine="${CHECK_MACHINE:-qemux86-64}"
    local extra=() l features
    for l in ${CHECK_EXTRA_LAYERS:-}; do
        [ -f "$l/conf/layer.conf" ] || {
            fail "bitbake: CHECK_EXTRA_LAYERS: $l has no conf/layer.conf"
            return 1
        }
        extra+=("$(cd "$l" && pwd)")
    done
    features="nexa"
    if [ "${#extra[@]}" -gt 0 ] && grep -qs '^BBFILE_COLLECTIONS += "rauc"' "${extra[@]/%//conf/layer.conf}"; then
        features="nexa rauc"
    fi
    features="${CHECK_DISTRO_FEATURES-$features}"
    BUILDDIR="${CHECK_BUILDDIR:-$CACHE/yocto/build-check-$tclibc}"
    mkdir -p "$BUILDDIR/conf"
    LOG="$BUILDDIR/check-layer.log"
    : >"$LOG"
    cat >"$BUILDDIR/conf/bblayers.conf" <<EOF
# Written by meta-nexa's check-layer.sh.
BBPATH = "\${TOPDIR}"
BBFILES ?= ""
BBLAYERS = "$OE_CORE_DIR/meta ${extra[*]} $LAYER"
EOF
    {
        echo '# Written by meta-nexa'"'"'s check-layer.sh: an offline parse, nothing is built.'
        echo "MACHINE = \"$machine\""
        echo 'DISTRO = "nodistro"'
        echo "TCLIBC = \"$tclibc\""
        echo "DISTRO_FEATURES:append = \" $features\""
        echo 'BB_NO_NETWORK = "1"'
        echo 'DL_DIR = "${TOPDIR}/downloads"'
        echo 'SSTATE_DIR = "${TOPDIR}/sstate-cache"'
        # sanity.bbclass refuses root ("Do not use Bitbake as root"); a parse is harmless.
        if [ "$(id -u)" -eq 0 ]; then echo 'INHERIT:remove = "sanity"'; fi
    } >"$BUILDDIR/conf/local.conf"
    trap stop_server EXIT

    local t0=$SECONDS
    if ! bb -p; then
        grep -E '^(ERROR|WARNING)' "$LOG" | sed 's/^/FAIL: bitbake -p: /' >&2
        fail "bitbake -p failed (log: $LOG)"
        return 1
    fi
    local parsed
    parsed=$(grep -o 'Parsing of [0-9]* .bb files complete[^.]*' "$LOG" | tail -1)
    [ -n "$parsed" ] || parsed=$(grep -o 'Loaded [0-9]* entries from dependency cache' "$LOG" | tail -1)
    if grep -E '^WARNING:' "$LOG" | grep -q 'nexa'; then
        grep -E '^WARNING:' "$LOG" | grep 'nexa' | sed 's/^/FAIL: bitbake -p: /' >&2
        fail "bitbake -p warned about meta-nexa (log: $LOG)"
        return 1
    fi
    local tparse=$((SECONDS - t0))

    # bitbake -e: what the recipes resolve to.
    local problems=() envf pn rev sig_summary=""
    rev=$(srcrev)
    for pn in nexa-agent nexa-server linux-yocto; do
        envf="$BUILDDIR/env-$pn.txt"
        if ! bitbake_in "$BUILDDIR" -e "$pn" >"$envf" 2>&1; then
            problems+=("bitbake -e $pn failed: $(grep -E '^ERROR' "$envf" | head -3 | tr '\n' ' ')")
            continue
        fi
        local s unpackdir
        case "$pn" in
            nexa-*)
                [ "$(bbvar "$envf" SRCREV)" = "$rev" ] || problems+=("$pn: SRCREV is $(bbvar "$envf" SRCREV), nexa.inc pins $rev")
                [ "$(bbvar "$envf" LICENSE)" = "Apache-2.0 & LGPL-2.1-or-later" ] || problems+=("$pn: LICENSE is $(bbvar "$envf" LICENSE)")
                s=$(bbvar "$envf" S)
                unpackdir=$(bbvar "$envf" UNPACKDIR)
                [ "$s" = "$unpackdir/$pn-$(bbvar "$envf" PV)" ] || problems+=("$pn: S=$s is not \${UNPACKDIR}/\${BP}, where the git fetcher unpacks")
                [[ " $(bbvar "$envf" CARGO_BUILD_FLAGS) " == *" -p $pn "* ]] || problems+=("$pn: CARGO_BUILD_FLAGS lack -p $pn")
                [[ "$(bbvar "$envf" CARGO_BUILD_FLAGS)" == *"--frozen"* ]] || problems+=("$pn: CARGO_BUILD_FLAGS lack --frozen")
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_STRIP)" = none ] || problems+=("$pn: Cargo must not strip (CARGO_PROFILE_RELEASE_STRIP)")
                [[ " $(bbvar "$envf" RDEPENDS:"$pn") " == *" kernel-module-wireguard "* ]] || problems+=("$pn: NEXA_WIREGUARD defaults to module but RDEPENDS lack kernel-module-wireguard")
                [ -n "$(bbvar "$envf" "SYSTEMD_SERVICE:$pn")" ] || problems+=("$pn: no SYSTEMD_SERVICE:$pn")
                ;;
        esac
        case "$pn" in
            nexa-agent)
                local confargs pc
                confargs=$(bbvar "$envf" PACKAGECONFIG_CONFARGS)
                pc=" $(bbvar "$envf" PACKAGECONFIG) "
                [[ " $(bbvar "$envf" CARGO_BUILD_FLAGS) " == *" --no-default-features "* ]] || problems+=("nexa-agent: CARGO_BUILD_FLAGS lack --no-default-features")
                for f in mqtt ota; do
                    [[ "$pc" == *" $f "* ]] || problems+=("nexa-agent: default PACKAGECONFIG lacks $f")
                    [[ " $confargs " == *" --features $f "* ]] || problems+=("nexa-agent: PACKAGECONFIG_CONFARGS lack --features $f")
                done
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_OPT_LEVEL)" = z ] || problems+=("nexa-agent: CARGO_PROFILE_RELEASE_OPT_LEVEL is not z")
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_LTO)" = fat ] || problems+=("nexa-agent: CARGO_PROFILE_RELEASE_LTO is not fat")
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_CODEGEN_UNITS)" = 1 ] || problems+=("nexa-agent: CARGO_PROFILE_RELEASE_CODEGEN_UNITS is not 1")
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_PANIC)" = abort ] || problems+=("nexa-agent: CARGO_PROFILE_RELEASE_PANIC is not abort")
                [[ " $(bbvar "$envf" RRECOMMENDS:nexa-agent) " == *" ca-certificates "* ]] || problems+=("nexa-agent: ota must recommend ca-certificates")
                [ "$(bbvar "$envf" CONFFILES:nexa-agent)" = "/etc/nexa/agent.toml" ] || problems+=("nexa-agent: CONFFILES:nexa-agent is $(bbvar "$envf" CONFFILES:nexa-agent)")
                if [[ " $features " == *" rauc "* ]]; then
                    [[ " $(bbvar "$envf" RDEPENDS:nexa-agent) " == *" rauc "* ]] || problems+=("nexa-agent: ota with the rauc distro feature must RDEPEND on rauc")
                else
                    [[ " $(bbvar "$envf" RDEPENDS:nexa-agent) " != *" rauc "* ]] || problems+=("nexa-agent: rauc in RDEPENDS without the rauc distro feature")
                fi
                if [ "$tclibc" = musl ]; then
                    [[ "$(bbvar "$envf" RUSTFLAGS)" == *"-C target-feature=+crt-static"* ]] || problems+=("nexa-agent: musl build is not crt-static (RUSTFLAGS)")
                    [[ "$(bbvar "$envf" RUST_HOST_SYS)" == *-musl* ]] || problems+=("nexa-agent: RUST_HOST_SYS $(bbvar "$envf" RUST_HOST_SYS) is not musl")
                fi
                ;;
            nexa-server)
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_OPT_LEVEL)" = s ] || problems+=("nexa-server: CARGO_PROFILE_RELEASE_OPT_LEVEL is not s")
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_LTO)" = fat ] || problems+=("nexa-server: CARGO_PROFILE_RELEASE_LTO is not fat")
                [ "$(bbvar "$envf" CARGO_PROFILE_RELEASE_CODEGEN_UNITS)" = 1 ] || problems+=("nexa-server: CARGO_PROFILE_RELEASE_CODEGEN_UNITS is not 1")
                [ -z "$(bbvar "$envf" CARGO_PROFILE_RELEASE_PANIC)" ] || problems+=("nexa-server: CARGO_PROFILE_RELEASE_PANIC is set; the bridge keeps unwinding")
                ;;
            linux-yocto)
                if [[ " $features " == *" nexa "* ]]; then
                    [[ " $(bbvar "$envf" SRC_URI) " == *" file://wireguard.cfg "* ]] || problems+=("linux-yocto: nexa distro feature but no wireguard.cfg in SRC_URI")
                else
                    [[ " $(bbvar "$envf" SRC_URI) " != *"wireguard.cfg"* ]] || problems+=("linux-yocto: wireguard.cfg without the nexa distro feature")
                fi
                ;;
        esac
    done

    # NEXA_WIREGUARD's other values, one recipe file each (-b parses only that file).
    local recipe wg
    for pn in nexa-agent nexa-server; do
        recipe="$LAYER/recipes-nexa/$pn/${pn}_$(bbvar "$BUILDDIR/env-$pn.txt" PV).bb"
        envf="$BUILDDIR/env-$pn-builtin.txt"
        if ! bb_wireguard builtin -b "$recipe" -e >"$envf" 2>&1; then
            problems+=("$pn: bitbake -e with NEXA_WIREGUARD=builtin failed: $(grep -E '^ERROR' "$envf" | head -3 | tr '\n' ' ')")
        else
            wg=" $(bbvar "$envf" RDEPENDS:"$pn") "
            [[ "$wg" != *" kernel-module-wireguard "* ]] || problems+=("$pn: NEXA_WIREGUARD=builtin still RDEPENDS on kernel-module-wireguard")
        fi
        envf="$BUILDDIR/env-$pn-invalid.txt"
        if bb_wireguard yes -b "$recipe" -e >"$envf" 2>&1; then
            problems+=("$pn: NEXA_WIREGUARD=yes parsed; it must stop with an error naming the values")
        elif ! grep -q '^ERROR: NEXA_WIREGUARD = "yes": set it to "module"' "$envf"; then
            problems+=("$pn: NEXA_WIREGUARD=yes failed without naming the variable: $(grep -E '^ERROR' "$envf" | head -2 | tr '\n' ' ')")
        fi
    done

    # Recipe-level QA (naming, metadata, SRC_URI): runs offline in seconds.
    if ! bb -c recipe_qa nexa-agent nexa-server packagegroup-nexa; then
        problems+=("bitbake -c recipe_qa failed: $(grep -E '^ERROR' "$LOG" | head -3 | tr '\n' ' ')")
    fi
    # Licence names: SPDX ids oe-core ships the texts of.
    local lic
    for lic in $(bbvar "$BUILDDIR/env-nexa-agent.txt" LICENSE | tr '&|()' '    '); do
        [ -f "$OE_CORE_DIR/meta/files/common-licenses/$lic" ] || problems+=("licence $lic is not in oe-core's common-licenses")
    done

    # oe-core's own update_crates code, run against SRCREV: must equal the generator.
    local tmp pn_inc
    tmp=$(mktemp -d)
    mkdir -p "$tmp/src" "$tmp/out"
    git -C "$NEXA_ROOT" archive "$rev" | tar -x -C "$tmp/src"
    for pn_inc in nexa-agent nexa-server; do
        python3 - "$OE_CORE_DIR/meta/classes-recipe/cargo-update-recipe-crates.bbclass" "$tmp" "$pn_inc" <<'EOF'
import sys
cls, tmp, pn = sys.argv[1:]
body = open(cls).read().split("do_update_crates() {", 1)[1].rsplit("\n}", 1)[0]
for var, val in (("${THISDIR}", tmp + "/out"), ("${BPN}", pn), ("${PN}", pn),
                 ("${CARGO_LOCK_SRC_DIR}", tmp + "/src")):
    body = body.replace(var, val)
open(tmp + "/task.sh", "w").write('nativepython3() { python3 "$@"; }\nbbnote() { :; }\n' + body + "\n")
EOF
        bash "$tmp/task.sh" >>"$LOG" 2>&1 || problems+=("oe-core's update_crates code failed (log: $LOG)")
        cmp -s "$tmp/out/$pn_inc-crates.inc" "$LAYER/recipes-nexa/$pn_inc/$pn_inc-crates.inc" ||
            problems+=("recipes-nexa/$pn_inc/$pn_inc-crates.inc differs from oe-core's update_crates output for SRCREV")
    done
    rm -rf "$tmp"

    # Adding the layer without its `nexa` feature changes no task signature of another
    # layer's recipe (what yocto-check-layer's signature test asks of a software layer):
    # linux-yocto's whole task graph, with and without meta-nexa.
    local sigs
    if sigs=$(signature_diff "$tclibc" "$machine" "${features//nexa/}" "${extra[@]}"); then
        sig_summary="$sigs"
    else
        problems+=("$sigs")
    fi

    if [ "${#problems[@]}" -gt 0 ]; then
        printf '%s\n' "${problems[@]}" | sed 's/^/FAIL: bitbake: /' >&2
        return 1
    fi
    BB_SUMMARY="bitbake $bbver + oe-core wrynose, $machine/$tclibc, DISTRO_FEATURES +\"$features\": ${parsed:-parsed} (parse ${tparse}s); -e (NEXA_WIREGUARD module, builtin, invalid), recipe_qa, update_crates ok; $sig_summary"
}

# --- run ------------------------------------------------------------------------------

run_step() { # NAME FUNCTION
    local t0=$SECONDS rc=0
    "$2" || rc=$?
    local dt=$((SECONDS - t0))
    case "$1:$rc" in
        oelint:0) step_result "$1" PASS "$dt" "$OELINT_SUMMARY" ;;
        bitbake:0) step_result "$1" PASS "$dt" "$BB_SUMMARY" ;;
        bitbake:3) step_result "$1" SKIP "$dt" "$BB_SUMMARY" ;;
        oelint:*) step_result "$1" FAIL "$dt" "$OELINT_SUMMARY" ;;
        *:0) step_result "$1" PASS "$dt" "" ;;
        *) step_result "$1" FAIL "$dt" "see FAIL lines above" ;;
    esac
}

run_step layout check_layout
run_step crates check_crates
run_step oelint check_oelint
run_step bitbake check_bitbake

printf '%s\n' "${SUMMARY[@]}"
for n in "${NOTES[@]}"; do printf 'note: %s\n' "$n"; done
if [ "$FAILED" = 1 ]; then
    echo "check-layer: FAILED"
    exit 1
fi
echo "check-layer: ok"
