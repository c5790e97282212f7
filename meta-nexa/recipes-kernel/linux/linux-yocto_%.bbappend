# Kernel WireGuard for nexa-agent and nexa-server, only for distros that ask for it with
# `nexa` in DISTRO_FEATURES. Without it the append requires a file that sets nothing, so
# linux-yocto stays exactly as its layer has it (task signatures included), as a software
# layer must (the pattern meta-rauc uses).
require ${@bb.utils.contains('DISTRO_FEATURES', 'nexa', 'linux-yocto-nexa.inc', 'linux-yocto-nexa-off.inc', d)}
