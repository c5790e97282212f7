SUMMARY = "Nexa device agent: zero-touch enrollment, certificates and WireGuard tunnel"
DESCRIPTION = "nexa-agent generates the device's keys, enrolls it at the Nexa bridge, \
               keeps its verified certificate chain and WireGuard profile under /certs, \
               renews the certificate, drives the kernel WireGuard interface over netlink, \
               holds the ThingsBoard MQTT session (mqtt) and installs RAUC bundles from \
               Eclipse hawkBit (ota)."

require recipes-nexa/nexa.inc
require ${BPN}-crates.inc

# The default configuration (all keys commented); products replace it, see README.md.
SRC_URI += "file://agent.toml"

inherit cargo cargo-update-recipe-crates systemd features_check useradd

# The units, the D-Bus policy and the tmpfiles/sysusers snippets are systemd's.
REQUIRED_DISTRO_FEATURES = "systemd"

# The repository is a Cargo workspace: build only the agent (cargo_do_install installs
# every executable of the build), with exactly the features PACKAGECONFIG selects.
CARGO_BUILD_FLAGS += "-p nexa-agent --no-default-features"

# Cargo features of nexa-agent (default = ["mqtt", "ota"] in agent/Cargo.toml):
#   mqtt  the ThingsBoard MQTT session (telemetry, attributes, RPC)
#   ota   hawkBit polling and RAUC installs over D-Bus; pulls in rauc at run time only
#         when the distro has the rauc feature (and so meta-rauc), see NEXA_OTA_RDEPENDS,
#         and recommends ca-certificates (hawkBit's default trust is the system's roots).
PACKAGECONFIG ??= "mqtt ota"
PACKAGECONFIG[mqtt] = "--features mqtt"
PACKAGECONFIG[ota] = "--features ota,,,${NEXA_OTA_RDEPENDS},ca-certificates"
NEXA_OTA_RDEPENDS ?= "${@bb.utils.contains('DISTRO_FEATURES', 'rauc', 'rauc', '', d)}"

# The size profile of the repository ([profile.embedded]: opt-level z, fat LTO, one
# codegen unit, abort on panic; scripts/check-layer.sh keeps the two in step). oe-core's
# cargo class always builds --release and installs from target/<triple>/release, so the
# same settings are given to the release profile through Cargo's environment overrides
# instead of --profile embedded. Stripping stays with Yocto: do_package strips the binary
# and keeps the symbols in ${PN}-dbg (a binary Cargo had stripped would also fail the
# already-stripped QA check).
export CARGO_PROFILE_RELEASE_OPT_LEVEL = "z"
export CARGO_PROFILE_RELEASE_LTO = "fat"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS = "1"
export CARGO_PROFILE_RELEASE_PANIC = "abort"
export CARGO_PROFILE_RELEASE_STRIP = "none"

# With TCLIBC = "musl" the agent is one fully static binary, as the project ships it
# (oe-core's Rust honours crt-static for musl targets from wrynose on).
RUSTFLAGS:append:libc-musl = " -C target-feature=+crt-static"

# The agent runs as the unprivileged system user nexa (the units grant CAP_NET_ADMIN);
# nexa-agent.sysusers.conf declares the same user for systemd-sysusers. With `ota` and
# the polkit distro feature the polkit rule is installed, into a rules.d owned by polkitd
# as polkit expects (systemd's recipe creates polkitd the same way).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system nexa"
USERADD_PARAM:${PN} = "--system --gid nexa --home-dir ${localstatedir}/lib/nexa --no-create-home --shell ${base_sbindir}/nologin nexa;"
USERADD_PARAM:${PN} += "${@'--system --no-create-home --user-group --home-dir ${datadir}/polkit-1 --shell ${base_sbindir}/nologin polkitd;' if d.getVar('NEXA_POLKIT_RULE') else ''}"
NEXA_POLKIT_RULE = "${@bb.utils.contains('DISTRO_FEATURES', 'polkit', bb.utils.contains('PACKAGECONFIG', 'ota', '1', '', d), '', d)}"

NEXA_AGENT_UNITS = "nexa-enroll.service nexa-agent.service nexa-cert-renew.service nexa-cert-renew.timer"
# The reboot request of images without polkit (see README.md), installed with ota only.
NEXA_REBOOT_UNITS = "nexa-reboot.path nexa-reboot.service"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    for unit in ${NEXA_AGENT_UNITS}; do
        install -m 0644 ${S}/systemd/$unit ${D}${systemd_system_unitdir}/$unit
    done
    # The units name the binary where the project installs it; point them at ${bindir}.
    sed -i -e 's,/[^= ]*/bin/nexa-agent,${bindir}/nexa-agent,g' ${D}${systemd_system_unitdir}/nexa-*

    # User nexa for systemd-sysusers; /certs and the DMI serials' group for tmpfiles.d.
    install -d ${D}${nonarch_libdir}/sysusers.d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/systemd/nexa-agent.sysusers.conf ${D}${nonarch_libdir}/sysusers.d/nexa-agent.conf
    install -m 0644 ${S}/systemd/nexa-agent.tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/nexa-agent.conf

    # RAUC and the reboot request over D-Bus, and the reboot request file: only the ota
    # feature uses them.
    if ${@bb.utils.contains('PACKAGECONFIG', 'ota', 'true', 'false', d)}; then
        install -d ${D}${datadir}/dbus-1/system.d
        install -m 0644 ${S}/systemd/nexa-agent.dbus.conf ${D}${datadir}/dbus-1/system.d/nexa-agent.conf
        for unit in ${NEXA_REBOOT_UNITS}; do
            install -m 0644 ${S}/systemd/$unit ${D}${systemd_system_unitdir}/$unit
        done
    fi
    if [ -n "${NEXA_POLKIT_RULE}" ]; then
        install -d -m 0700 ${D}${datadir}/polkit-1/rules.d
        chown polkitd:root ${D}${datadir}/polkit-1/rules.d
        install -m 0644 ${S}/systemd/nexa-agent.polkit.rules ${D}${datadir}/polkit-1/rules.d/50-nexa-agent.rules
    fi

    install -d ${D}${sysconfdir}/nexa
    install -m 0640 -g nexa ${UNPACKDIR}/agent.toml ${D}${sysconfdir}/nexa/agent.toml

    # Keys and certificates: mount persistent storage here on read-only or A/B rootfs.
    install -d -m 0700 -o nexa -g nexa ${D}/certs
    # Pending update and download spool (hawkbit data_dir, the unit's StateDirectory).
    install -d -m 0700 -o nexa -g nexa ${D}${localstatedir}/lib/nexa
}

SYSTEMD_SERVICE:${PN} = "nexa-enroll.service nexa-agent.service nexa-cert-renew.timer \
                         ${@bb.utils.contains('PACKAGECONFIG', 'ota', 'nexa-reboot.path', '', d)}"

# OE sets no CONFFILES by default: keep local changes to the configuration on upgrades.
CONFFILES:${PN} = "${sysconfdir}/nexa/agent.toml"

FILES:${PN} += "${systemd_system_unitdir}/nexa-cert-renew.service \
                ${systemd_system_unitdir}/nexa-reboot.service \
                ${nonarch_libdir}/sysusers.d/nexa-agent.conf \
                ${nonarch_libdir}/tmpfiles.d/nexa-agent.conf \
                ${datadir}/dbus-1/system.d/nexa-agent.conf \
                ${datadir}/polkit-1/rules.d \
                /certs"

# WireGuard: nexa.inc adds RDEPENDS on kernel-module-wireguard unless NEXA_WIREGUARD = "builtin".
