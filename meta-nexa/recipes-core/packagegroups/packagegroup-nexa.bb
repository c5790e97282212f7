SUMMARY = "Nexa: the device agent, or the bridge"
DESCRIPTION = "packagegroup-nexa puts nexa-agent on a device image; \
               packagegroup-nexa-bridge puts nexa-server on the bridge's image."

# Both recipes need systemd; without it this group is skipped like them.
inherit packagegroup features_check

REQUIRED_DISTRO_FEATURES = "systemd"

PACKAGES = "${PN} ${PN}-bridge"

RDEPENDS:${PN} = "nexa-agent"
RDEPENDS:${PN}-bridge = "nexa-server"
