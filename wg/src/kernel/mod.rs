//! The real [`WgLink`]: the Linux kernel over netlink. No `ip`, `wg` or `wg-quick` processes.
//!
//! `genl` speaks WireGuard's generic-netlink family (keys, port, peers); `rtnl` speaks route
//! netlink (the link, addresses, routes, up). Errors are classified here, once: a missing
//! module and a missing CAP_NET_ADMIN get their own [`WgError`] variants.

mod genl;
mod rtnl;

use std::io;

use crate::link::{WgError, WgLink};
use crate::plan::Plan;
use crate::spec::{IfName, InterfaceState, normalize};

/// The running kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelLink;

impl KernelLink {
    pub fn new() -> Self {
        Self
    }
}

/// Maps an errno from netlink to what the operator has to do about it.
fn classify(op: &'static str, name: &IfName, e: io::Error) -> WgError {
    let on_addresses = op.ends_with("address") || op.ends_with("route");
    match e.raw_os_error() {
        // Netlink reports a missing capability as EPERM.
        Some(libc::EPERM) => WgError::NoPermission { op },
        // The kernel refuses IPv6 addresses and routes this way where IPv6 is disabled.
        Some(libc::EACCES) if on_addresses => WgError::Ipv6Disabled {
            op,
            iface: name.to_string(),
        },
        // Creating a link of an unknown kind, or resolving an absent generic-netlink family.
        Some(libc::EOPNOTSUPP) if op == "create link" => WgError::ModuleMissing,
        Some(libc::ENOENT) if op.starts_with("wireguard") || op == "create link" => {
            WgError::ModuleMissing
        }
        Some(libc::EADDRINUSE) => WgError::PortInUse,
        _ => WgError::Netlink {
            op,
            iface: name.to_string(),
            source: e,
        },
    }
}

/// The link called `name` if it exists and is ours to manage.
fn existing(name: &IfName) -> Result<Option<rtnl::Link>, WgError> {
    let link = rtnl::link(name).map_err(|e| classify("read link", name, e))?;
    match link {
        Some(l) if !l.is_wireguard => Err(WgError::NotWireguard(name.to_string())),
        Some(l) if !l.owned => Err(WgError::NotOwned(name.to_string())),
        other => Ok(other),
    }
}

fn gone(name: &IfName) -> WgError {
    WgError::Netlink {
        op: "find link",
        iface: name.to_string(),
        source: io::Error::from_raw_os_error(libc::ENODEV),
    }
}

impl WgLink for KernelLink {
    fn read(&self, name: &IfName) -> Result<Option<InterfaceState>, WgError> {
        let Some(link) = existing(name)? else {
            return Ok(None);
        };
        let device = genl::read(name).map_err(|e| classify("wireguard read", name, e))?;
        let addresses =
            rtnl::addresses(link.index).map_err(|e| classify("read addresses", name, e))?;
        let routes = rtnl::routes(link.index).map_err(|e| classify("read routes", name, e))?;
        Ok(Some(InterfaceState {
            public_key: device.public_key,
            listen_port: device.listen_port,
            up: link.up,
            addresses,
            routes: normalize(&routes),
            peers: device.peers,
        }))
    }

    fn apply(&self, name: &IfName, plan: &Plan) -> Result<(), WgError> {
        if plan.is_empty() {
            return Ok(());
        }
        // Never adopt someone else's interface; never recreate a vanished one half-configured
        // (the WireGuard call below creates any missing link).
        let link = match existing(name)? {
            Some(link) => link,
            None if !plan.create => return Err(gone(name)),
            None => {
                // Create and mark it before anything else is configured.
                rtnl::create_wireguard(name).map_err(|e| classify("create link", name, e))?;
                let created = rtnl::link(name)
                    .map_err(|e| classify("read link", name, e))?
                    .ok_or_else(|| gone(name))?;
                rtnl::mark_owned(created.index).map_err(|e| classify("mark link", name, e))?;
                created
            }
        };
        if plan.touches_device() {
            genl::apply(name, plan).map_err(|e| classify("wireguard set", name, e))?;
        }
        for net in &plan.remove_addresses {
            rtnl::remove_address(link.index, net)
                .map_err(|e| classify("remove address", name, e))?;
        }
        for net in &plan.add_addresses {
            rtnl::add_address(link.index, net).map_err(|e| classify("add address", name, e))?;
        }
        if plan.set_up {
            rtnl::set_up(link.index).map_err(|e| classify("set link up", name, e))?;
        }
        for net in &plan.remove_routes {
            rtnl::remove_route(link.index, net).map_err(|e| classify("remove route", name, e))?;
        }
        for net in &plan.add_routes {
            rtnl::add_route(link.index, net).map_err(|e| match e.raw_os_error() {
                Some(libc::EEXIST) => WgError::RouteConflict {
                    route: net.to_string(),
                    iface: name.to_string(),
                },
                _ => classify("add route", name, e),
            })?;
        }
        Ok(())
    }

    fn delete(&self, name: &IfName) -> Result<bool, WgError> {
        let Some(link) = existing(name)? else {
            return Ok(false);
        };
        rtnl::delete_link(link.index).map_err(|e| classify("delete link", name, e))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(n: i32) -> io::Error {
        io::Error::from_raw_os_error(n)
    }

    #[test]
    fn errnos_become_what_the_operator_must_do() {
        let name = IfName::parse("wg0").unwrap();
        assert!(matches!(
            classify("create link", &name, errno(libc::EPERM)),
            WgError::NoPermission { op: "create link" }
        ));
        assert!(matches!(
            classify("add address", &name, errno(libc::EACCES)),
            WgError::Ipv6Disabled { .. }
        ));
        assert!(matches!(
            classify("set link up", &name, errno(libc::EADDRINUSE)),
            WgError::PortInUse
        ));
        assert!(matches!(
            classify("create link", &name, errno(libc::EOPNOTSUPP)),
            WgError::ModuleMissing
        ));
        assert!(matches!(
            classify("wireguard set", &name, errno(libc::ENOENT)),
            WgError::ModuleMissing
        ));
        assert!(matches!(
            classify(
                "wireguard read",
                &name,
                io::Error::from(io::ErrorKind::NotFound)
            ),
            WgError::Netlink { .. }
        ));
        // Elsewhere the same errnos are plain netlink failures that name the operation.
        let other = classify("add route", &name, errno(libc::ENOENT));
        assert!(matches!(
            other,
            WgError::Netlink {
                op: "add route",
                ..
            }
        ));
        assert!(other.to_string().contains("add route on wg0"), "{other}");
    }
}
