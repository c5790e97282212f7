# Kernel WireGuard for nexa-agent and nexa-server (files/wireguard.cfg, CONFIG_WIREGUARD=m,
# packaged as kernel-module-wireguard, which the Nexa recipes depend on), only for distros
# that ask for it with `nexa` in DISTRO_FEATURES: both lines carry the `nexa` override that
# conf/layer.conf derives from the feature. Without it they are inactive, and linux-yocto
# and its task signatures stay exactly as oe-core has them (scripts/check-layer.sh compares
# the signatures with and without this layer), as a software layer must.
FILESEXTRAPATHS:prepend:nexa := "${THISDIR}/files:"
SRC_URI:append:nexa = " file://wireguard.cfg"
