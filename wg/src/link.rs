//! The OS boundary: read an interface, apply a plan, delete it. [`crate::kernel::KernelLink`]
//! is the real one; [`crate::memory::MemoryLink`] keeps the state in memory for tests.

use std::io;

use crate::plan::{Plan, diff};
use crate::spec::{IfName, InterfaceSpec, InterfaceState};

/// Why an interface could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    #[error(
        "the kernel has no WireGuard support: load the module (`modprobe wireguard`), or build \
         the kernel with CONFIG_WIREGUARD (Linux 5.6 or later)"
    )]
    ModuleMissing,
    #[error(
        "{op} needs CAP_NET_ADMIN: run as root, or grant the capability \
         (systemd: AmbientCapabilities=CAP_NET_ADMIN)"
    )]
    NoPermission { op: &'static str },
    #[error("interface {0} exists but is not a WireGuard interface: choose another name")]
    NotWireguard(String),
    #[error(
        "WireGuard interface {0} exists but was not created by Nexa (no \"managed by nexa\" alias): \
         remove it (`ip link del {0}`) if it is a leftover, or choose another name"
    )]
    NotOwned(String),
    #[error(
        "a route to {route} already exists outside {iface} (another interface or a manual route): \
         remove that route, or drop {route} from the peer's allowed IPs"
    )]
    RouteConflict { route: String, iface: String },
    #[error(
        "the WireGuard listen port is already used by another socket on this host: choose another \
         port (gateway: --wg-listen-port), or let the other WireGuard run the gateway \
         (--gateway external)"
    )]
    PortInUse,
    #[error(
        "{op} on {iface} was refused: IPv6 is probably disabled there \
         (sysctl net.ipv6.conf.{iface}.disable_ipv6=0 or net.ipv6.conf.all.disable_ipv6=0)"
    )]
    Ipv6Disabled { op: &'static str, iface: String },
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error("netlink {op} on {iface}: {source}")]
    Netlink {
        op: &'static str,
        iface: String,
        #[source]
        source: io::Error,
    },
}

impl WgError {
    /// The host cannot run WireGuard at all (no module, no capability): a condition to report
    /// and wait out, not a bug to retry quickly.
    pub fn is_environment(&self) -> bool {
        matches!(self, WgError::ModuleMissing | WgError::NoPermission { .. })
    }

    /// A stable short code for health reports.
    pub fn code(&self) -> &'static str {
        match self {
            WgError::ModuleMissing => "wireguard_module_missing",
            WgError::NoPermission { .. } => "no_cap_net_admin",
            WgError::NotWireguard(_) => "not_a_wireguard_interface",
            WgError::NotOwned(_) => "interface_not_owned",
            WgError::RouteConflict { .. } => "route_conflict",
            WgError::PortInUse => "listen_port_in_use",
            WgError::Ipv6Disabled { .. } => "ipv6_disabled",
            WgError::Spec(_) => "invalid_spec",
            WgError::Netlink { .. } => "netlink_error",
        }
    }
}

/// Narrow access to the kernel's interfaces.
pub trait WgLink: Send + Sync {
    /// The interface's state; `None` when no link of that name exists.
    fn read(&self, name: &IfName) -> Result<Option<InterfaceState>, WgError>;
    /// Carries out `plan`; an empty plan must not touch the kernel.
    fn apply(&self, name: &IfName, plan: &Plan) -> Result<(), WgError>;
    /// Removes the link; `false` when it did not exist.
    fn delete(&self, name: &IfName) -> Result<bool, WgError>;
}

/// Makes the interface match `spec`: reads it, applies the difference, returns what changed.
/// Running it again right after returns an empty plan and changes nothing.
pub fn reconcile(link: &dyn WgLink, spec: &InterfaceSpec) -> Result<Plan, WgError> {
    spec.validate()?;
    let state = link.read(&spec.name)?;
    let plan = diff(spec, state.as_ref());
    if !plan.is_empty() {
        link.apply(&spec.name, &plan)?;
    }
    Ok(plan)
}
