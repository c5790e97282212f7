SUMMARY = "Nexa bridge: enrollment API, built-in CA and kernel WireGuard gateway"
DESCRIPTION = "nexa-server enrolls devices (registered or zero-touch by site), signs \
               their certificates with its built-in two-level CA or a step-ca, allocates \
               WireGuard addresses and keeps the kernel WireGuard gateway's peers in step \
               with enrollments and revocations, with an audit trail on SQLite."

require recipes-nexa/nexa.inc
require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd features_check useradd

REQUIRED_DISTRO_FEATURES = "systemd"

# The repository is a Cargo workspace: build only the bridge. nexa-server has no Cargo
# features, hence no PACKAGECONFIG.
CARGO_BUILD_FLAGS += "-p nexa-server"

# The size profile of the repository ([profile.embedded-server]: opt-level s, fat LTO, one
# codegen unit; unwinding kept, so a panic ends one request, not the bridge), given to the
# release profile the cargo class builds (see nexa-agent; scripts/check-layer.sh keeps the
# two in step). Stripping stays with Yocto (${PN}-dbg keeps the symbols); a binary Cargo
# had stripped would also fail the already-stripped QA check.
export CARGO_PROFILE_RELEASE_OPT_LEVEL = "s"
export CARGO_PROFILE_RELEASE_LTO = "fat"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS = "1"
export CARGO_PROFILE_RELEASE_STRIP = "none"

# The bridge runs as the unprivileged system user nexa-server (the unit grants
# CAP_NET_ADMIN for the gateway interface; nexa-server.sysusers.conf declares the same
# user for systemd-sysusers). Its CA, keys and database live in /var/lib/nexa-server
# (the unit's StateDirectory and NEXA_DATA_DIR).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system nexa-server"
USERADD_PARAM:${PN} = "--system --gid nexa-server --home-dir ${localstatedir}/lib/nexa-server --no-create-home --shell ${base_sbindir}/nologin nexa-server"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/nexa-server.service ${D}${systemd_system_unitdir}/nexa-server.service
    # The unit names the binary where the project installs it; point it at ${bindir}.
    sed -i -e 's,/[^= ]*/bin/nexa-server,${bindir}/nexa-server,g' ${D}${systemd_system_unitdir}/nexa-server.service

    install -d ${D}${nonarch_libdir}/sysusers.d
    install -m 0644 ${S}/systemd/nexa-server.sysusers.conf ${D}${nonarch_libdir}/sysusers.d/nexa-server.conf

    install -d -m 0700 -o nexa-server -g nexa-server ${D}${localstatedir}/lib/nexa-server
}

SYSTEMD_SERVICE:${PN} = "nexa-server.service"

FILES:${PN} += "${nonarch_libdir}/sysusers.d/nexa-server.conf"

# The managed gateway's kernel WireGuard comes from nexa.inc (NEXA_WIREGUARD); the
# default hawkBit trust is the system's roots.
RRECOMMENDS:${PN} += "ca-certificates"
