# Helpers for the QEMU boot tests (scripts/qemu-test.sh) and benchmarks: a Debian kernel from
# apt (cached), the static musl release binaries (scripts/release.sh), a busybox initramfs,
# ext4 disk images, and a TCG guest whose serial console is captured to a file. Source it after
# lib.sh; do not run it.
#
# The guest is driven by tests/qemu/init (its /init) and a scenario script (/scenario.sh). It
# reports on the console with one line per result:
#   NEXA-CHECK <name> pass|fail [detail...]
#   NEXA-METRIC <name> <value> <unit>
#   NEXA-DONE
# shellcheck shell=bash

QEMU_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/nexa/qemu"

# Kernel modules the guest loads (their dependencies are added): WireGuard, the veth pair between
# the device and the gateway namespace, virtio disks, ext4. crc32c_generic is ext4's soft
# dependency (metadata checksums), which modinfo's "depends" does not list.
QEMU_MODULES=(virtio_pci virtio_blk crc32c_generic ext4 veth wireguard)

# qemu_install_deps: host packages and the Rust musl target.
qemu_install_deps() {
    install_debs qemu-system-x86 busybox-static cpio e2fsprogs kmod musl-tools binutils gzip xz-utils zstd
    ensure_rust musl
}

# qemu_fetch_kernel: downloads the package linux-image-amd64 points at into $QEMU_CACHE (once),
# extracts it there (once), and sets QEMU_KVER, QEMU_MODDIR, QEMU_VMLINUZ (the packaged image) and
# QEMU_KERNEL (the image to boot: the uncompressed ELF kernel when it supports PVH boot).
qemu_fetch_kernel() {
    local pkg debs deb root
    pkg="$(_qemu_kernel_package)"
    if [ -z "$pkg" ]; then
        as_root apt-get update -qq
        pkg="$(_qemu_kernel_package)"
    fi
    [ -n "$pkg" ] || { echo "cannot resolve the dependency of linux-image-amd64" >&2; return 1; }

    mkdir -p "$QEMU_CACHE"
    debs=("$QEMU_CACHE/${pkg}_"*_amd64.deb)
    if [ ! -f "${debs[0]}" ]; then
        log "downloading $pkg"
        # apt-get download writes to the current directory (as root, it warns that the _apt
        # user cannot write there and downloads anyway); success is checked below.
        (cd "$QEMU_CACHE" && apt-get download -q "$pkg") || true
        debs=("$QEMU_CACHE/${pkg}_"*_amd64.deb)
        [ -f "${debs[0]}" ] || { echo "apt-get download $pkg failed" >&2; return 1; }
    fi
    deb="${debs[-1]}"

    root="${deb%.deb}"
    if [ ! -f "$root/.extracted" ]; then
        log "extracting ${deb##*/}"
        # Kernels of earlier runs that linux-image-amd64 no longer points at go.
        find "$QEMU_CACHE" -mindepth 1 -maxdepth 1 -name 'linux-image-*' ! -name "${pkg}_*" -exec rm -rf {} +
        rm -rf "$root" "$root.tmp.$$"
        dpkg-deb -x "$deb" "$root.tmp.$$"
        touch "$root.tmp.$$/.extracted"
        mv "$root.tmp.$$" "$root"
    fi

    # Modules live in /lib/modules up to bookworm and in /usr/lib/modules from trixie on.
    local dirs=("$root"/lib/modules/* "$root"/usr/lib/modules/*)
    QEMU_MODDIR=""
    for QEMU_MODDIR in "${dirs[@]}"; do
        [ ! -d "$QEMU_MODDIR" ] || break
    done
    [ -d "$QEMU_MODDIR" ] || { echo "no modules directory in $deb" >&2; return 1; }
    QEMU_KVER="${QEMU_MODDIR##*/}"
    QEMU_VMLINUZ="$root/boot/vmlinuz-$QEMU_KVER"
    [ -f "$QEMU_VMLINUZ" ] || { echo "no kernel image in $deb" >&2; return 1; }

    # Under TCG, decompressing the kernel takes seconds of every boot; a PVH-capable kernel can
    # be booted from its uncompressed ELF image instead, which is extracted once.
    QEMU_KERNEL="$QEMU_VMLINUZ"
    if grep -q '^CONFIG_PVH=y' "$root/boot/config-$QEMU_KVER" 2>/dev/null; then
        [ -f "$root/vmlinux" ] || _qemu_extract_vmlinux "$QEMU_VMLINUZ" "$root/vmlinux" || true
        [ ! -f "$root/vmlinux" ] || QEMU_KERNEL="$root/vmlinux"
    fi
}

# _qemu_extract_vmlinux BZIMAGE OUT: the ELF kernel inside an x86 bzImage. The boot header holds
# the number of setup sectors (0x1f1) and the payload's offset after them (0x248).
_qemu_extract_vmlinux() {
    local setup offset magic
    setup="$(od -An -tu1 -j $((0x1f1)) -N1 "$1" | tr -d ' ')"
    offset="$(od -An -tu4 -j $((0x248)) -N4 "$1" | tr -d ' ')"
    offset=$(((setup + 1) * 512 + offset))
    magic="$(od -An -tx1 -j "$offset" -N4 "$1" | tr -d ' ')"
    case "$magic" in
        fd377a58) tail -c +$((offset + 1)) "$1" | xz -dcq --single-stream >"$2.tmp" ;;
        1f8b*) tail -c +$((offset + 1)) "$1" | gzip -dcq >"$2.tmp" 2>/dev/null ;;
        28b52ffd) tail -c +$((offset + 1)) "$1" | zstd -dcq >"$2.tmp" 2>/dev/null ;;
        *) return 1 ;;
    esac
    # gzip and zstd complain about the bytes after the stream; what counts is an ELF image.
    [ "$(od -An -tx1 -N4 "$2.tmp" | tr -d ' ')" = 7f454c46 ] || { rm -f "$2.tmp"; return 1; }
    mv "$2.tmp" "$2"
}

_qemu_kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

# qemu_module_closure MODDIR MODULE...: prints the module files (relative to MODDIR) to load,
# each after the modules it depends on ("modinfo -F depends"). Built-in modules are skipped.
qemu_module_closure() {
    local moddir="$1" f n
    shift
    local -A _qm_path=() _qm_seen=() _qm_builtin=()
    while IFS= read -r f; do
        n="${f##*/}"
        n="${n%%.ko*}"
        _qm_path["${n//-/_}"]="${f#"$moddir"/}"
    done < <(find "$moddir" -name '*.ko*')
    if [ -f "$moddir/modules.builtin" ]; then
        while IFS= read -r f; do
            n="${f##*/}"
            n="${n%.ko}"
            _qm_builtin["${n//-/_}"]=1
        done <"$moddir/modules.builtin"
    fi
    for n in "$@"; do
        _qemu_visit "$moddir" "${n//-/_}" || return 1
    done
}

# Depth-first: dependencies first. Uses the caller's _qm_* arrays (bash dynamic scope).
_qemu_visit() {
    local moddir="$1" name="$2" dep deps
    [ -z "${_qm_seen[$name]:-}" ] || return 0
    _qm_seen[$name]=1
    if [ -z "${_qm_path[$name]:-}" ]; then
        [ -n "${_qm_builtin[$name]:-}" ] && return 0
        echo "kernel module $name not found in $moddir" >&2
        return 1
    fi
    deps="$(modinfo -F depends "$moddir/${_qm_path[$name]}")"
    for dep in ${deps//,/ }; do
        _qemu_visit "$moddir" "${dep//-/_}" || return 1
    done
    echo "${_qm_path[$name]}"
}

# qemu_build_musl OUTDIR: the release binaries the guest runs, built by scripts/release.sh into
# OUTDIR: the full nexa-agent (profile embedded) and nexa-server (profile release), static
# musl, stripped and checked there. The feature matrix is release.sh's own run, not this one.
qemu_build_musl() {
    "$NEXA_ROOT/scripts/release.sh" --configs full --no-checks --out "$1"
}

# qemu_build_initramfs OUT SCENARIO BIN...: writes the guest's initramfs (newc cpio) to OUT:
# busybox, BIN... in /bin, the modules of QEMU_MODULES in load order (/etc/nexa-modules lists
# them), tests/qemu/init as /init and SCENARIO as /scenario.sh. Needs qemu_fetch_kernel. Sets
# QEMU_INITRD (= OUT) and QEMU_INITRD_MODULES (how many modules it holds).
# QEMU_INITRD_GZIP=1 compresses it (under TCG the uncompressed archive boots faster).
qemu_build_initramfs() {
    local out="$1" scenario="$2" stage mod ko bin
    shift 2
    stage="$out.d"
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,certs,srv/nexa,lib/modules}

    assert_static /bin/busybox
    cp /bin/busybox "$stage/bin/busybox"
    for bin in "$@"; do
        assert_static "$bin"
        cp "$bin" "$stage/bin/"
    done

    # Flat module directory plus the ordered list the guest insmods.
    : >"$stage/etc/nexa-modules"
    while IFS= read -r mod; do
        ko="${mod##*/}"
        case "$ko" in
            *.ko.xz) xz -dc "$QEMU_MODDIR/$mod" >"$stage/lib/modules/${ko%.xz}"; ko="${ko%.xz}" ;;
            *.ko.zst) zstd -qdc "$QEMU_MODDIR/$mod" >"$stage/lib/modules/${ko%.zst}"; ko="${ko%.zst}" ;;
            *) cp "$QEMU_MODDIR/$mod" "$stage/lib/modules/" ;;
        esac
        echo "$ko" >>"$stage/etc/nexa-modules"
    done < <(qemu_module_closure "$QEMU_MODDIR" "${QEMU_MODULES[@]}")

    install -m 0755 "$NEXA_ROOT/tests/qemu/init" "$stage/init"
    install -m 0755 "$scenario" "$stage/scenario.sh"

    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.cpio"
    if [ "${QEMU_INITRD_GZIP:-0}" = 1 ]; then
        gzip -1 -c "$out.cpio" >"$out"
        rm -f "$out.cpio"
    else
        mv "$out.cpio" "$out"
    fi
    QEMU_INITRD="$out"
    # shellcheck disable=SC2034 # for the caller
    QEMU_INITRD_MODULES="$(wc -l <"$stage/etc/nexa-modules")"
    rm -rf "$stage"
}

# qemu_make_disk FILE LABEL [SIZE]: a fresh, empty ext4 image (default 64M).
qemu_make_disk() {
    rm -f "$1"
    truncate -s "${3:-64M}" "$1"
    mke2fs -q -F -t ext4 -L "$2" "$1"
}

# qemu_boot LOG SECONDS APPEND DISK...: boots QEMU_KERNEL with QEMU_INITRD under TCG with DISK...
# as virtio disks (vda, vdb, ...), kernel arguments APPEND added, the serial console in LOG.
# Returns QEMU's status, 124 when the boot took longer than SECONDS. QEMU_MEM (MiB, default 512),
# QEMU_SMP (default 2) and QEMU_CPU (default max) shape the guest.
qemu_boot() {
    local log="$1" secs="$2" append="$3" disk
    shift 3
    local drives=()
    for disk in "$@"; do
        drives+=(-drive "file=$disk,if=virtio,format=raw")
    done
    # -cpu max: every feature TCG emulates, RDRAND among them (the guest's RNG is ready at once).
    # -rtc base=utc: the guest clock starts at the host's UTC time.
    timeout --kill-after=5 "$secs" qemu-system-x86_64 -accel tcg -cpu "${QEMU_CPU:-max}" \
        -m "${QEMU_MEM:-512}" -smp "${QEMU_SMP:-2}" -nographic -no-reboot -nic none -rtc base=utc \
        -kernel "$QEMU_KERNEL" -initrd "$QEMU_INITRD" \
        -append "console=ttyS0 quiet panic=-1 $append" \
        "${drives[@]}" </dev/null >"$log" 2>&1
}

# qemu_console LOG: the console text in LOG without carriage returns and terminal escapes (the
# firmware clears the screen).
qemu_console() {
    tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1b[a-z]//g'
}

# qemu_results LOG: the guest's result lines in LOG.
qemu_results() {
    qemu_console "$1" | grep -E '^NEXA-(CHECK|METRIC|DONE)' || true
}
