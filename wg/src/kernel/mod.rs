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
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => WgError::NoPermission { op },
        // Creating a link of an unknown kind, or resolving an absent generic-netlink family.
        Some(libc::EOPNOTSUPP) if op == "create link" => WgError::ModuleMissing,
        Some(libc::ENOENT) if op.starts_with("wireguard") => WgError::ModuleMissing,
        _ if e.kind() == io::ErrorKind::NotFound && op.starts_with("wireguard") => {
            WgError::ModuleMissing
        }
        _ => WgError::Netlink {
            op,
            iface: name.to_string(),
            source: e,
        },
    }
}

fn existing(name: &IfName) -> Result<Option<rtnl::Link>, WgError> {
    let link = rtnl::link(name).map_err(|e| classify("read link", name, e))?;
    match link {
        Some(l) if !l.is_wireguard => Err(WgError::NotWireguard(name.to_string())),
        other => Ok(other),
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
        if plan.create {
            // Guard against turning someone else's interface into ours.
            existing(name)?;
        }
        if plan.touches_device() {
            // Creates the link first when it is missing; that is where a missing module shows.
            let op = if plan.create {
                "create link"
            } else {
                "wireguard set"
            };
            genl::apply(name, plan).map_err(|e| classify(op, name, e))?;
        }
        let link = existing(name)?.ok_or_else(|| WgError::Netlink {
            op: "find link",
            iface: name.to_string(),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })?;
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
            rtnl::add_route(link.index, net).map_err(|e| classify("add route", name, e))?;
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
            classify("wireguard read", &name, errno(libc::EACCES)),
            WgError::NoPermission { .. }
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
            WgError::ModuleMissing
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
