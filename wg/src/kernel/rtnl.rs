//! Route netlink: the link itself, its addresses, its routes and whether it is up.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_request::netlink_request_rtnl;

use crate::spec::IfName;

/// The interface alias (`ip link` shows it as `alias`) marking links this crate created.
pub(super) const OWNER_ALIAS: &str = "managed by nexa";

/// The route protocol number of the routes this crate installs (`ip route` shows `proto 78`).
/// Unassigned in the kernel's and iproute2's tables; neither networkd nor NetworkManager use it,
/// so a route with it is ours and nobody else's.
pub(super) const ROUTE_PROTOCOL: u8 = 78;

/// A link found by name.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub index: u32,
    pub up: bool,
    pub is_wireguard: bool,
    pub owned: bool,
}

fn request(msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    Ok(netlink_request_rtnl(msg, Some(flags))?
        .into_iter()
        .filter_map(|m: NetlinkMessage<RouteNetlinkMessage>| match m.payload {
            NetlinkPayload::InnerMessage(inner) => Some(inner),
            _ => None,
        })
        .collect())
}

/// The link called `name`, or `None` when there is none.
pub(super) fn link(name: &IfName) -> io::Result<Option<Link>> {
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(name.as_str().to_owned()));
    let replies = match request(RouteNetlinkMessage::GetLink(msg), NLM_F_REQUEST | NLM_F_ACK) {
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        other => other?,
    };
    Ok(replies.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(link) => {
            let is_wireguard = link.attributes.iter().any(|a| {
                matches!(a, LinkAttribute::LinkInfo(infos)
                    if infos.contains(&LinkInfo::Kind(InfoKind::Wireguard)))
            });
            let owned = link
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::IfAlias(alias) if alias == OWNER_ALIAS));
            Some(Link {
                index: link.header.index,
                up: link.header.flags.contains(LinkFlags::Up),
                is_wireguard,
                owned,
            })
        }
        _ => None,
    }))
}

pub(super) fn set_up(index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    request(RouteNetlinkMessage::SetLink(msg), NLM_F_REQUEST | NLM_F_ACK).map(drop)
}

/// Creates a WireGuard link called `name` (fails with EEXIST if there is one).
pub(super) fn create_wireguard(name: &IfName) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(name.as_str().to_owned()));
    msg.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Wireguard,
        )]));
    request(
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

/// Marks the link as created by this crate.
pub(super) fn mark_owned(index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes
        .push(LinkAttribute::IfAlias(OWNER_ALIAS.to_owned()));
    request(RouteNetlinkMessage::SetLink(msg), NLM_F_REQUEST | NLM_F_ACK).map(drop)
}

pub(super) fn delete_link(index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    request(RouteNetlinkMessage::DelLink(msg), NLM_F_REQUEST | NLM_F_ACK).map(drop)
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Addresses configured on the link.
pub(super) fn addresses(index: u32) -> io::Result<Vec<IpNet>> {
    let replies = request(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                // IFA_LOCAL is the interface's own address on point-to-point links; prefer it.
                let local = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = local.or_else(|| {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                IpNet::new(addr, a.header.prefix_len).ok()
            }
            _ => None,
        })
        .collect())
}

fn address_message(index: u32, net: &IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(net.addr());
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    if net.addr().is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(net.addr()));
    }
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    msg
}

pub(super) fn add_address(index: u32, net: &IpNet) -> io::Result<()> {
    let msg = address_message(index, net);
    match request(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map(drop),
    }
}

pub(super) fn remove_address(index: u32, net: &IpNet) -> io::Result<()> {
    let msg = address_message(index, net);
    match request(
        RouteNetlinkMessage::DelAddress(msg),
        NLM_F_REQUEST | NLM_F_ACK,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
        other => other.map(drop),
    }
}

/// Routes through the link in the main table that this crate installs ([`ROUTE_PROTOCOL`]).
pub(super) fn routes(index: u32) -> io::Result<Vec<IpNet>> {
    let replies = request(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r)
                if r.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
                    && r.header.kind == RouteType::Unicast
                    && r.attributes.contains(&RouteAttribute::Oif(index))
                    && table(&r) == u32::from(RouteHeader::RT_TABLE_MAIN) =>
            {
                let dst = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
                    RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
                    _ => None,
                });
                let dst = match (dst, r.header.address_family) {
                    (Some(ip), _) => ip,
                    (None, AddressFamily::Inet6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                    (None, _) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                };
                IpNet::new(dst, r.header.destination_prefix_length).ok()
            }
            _ => None,
        })
        .collect())
}

fn table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn route_message(index: u32, net: &IpNet) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(net.addr());
    msg.header.destination_prefix_length = net.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Other(ROUTE_PROTOCOL);
    msg.header.scope = RouteScope::Link;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(net.addr())));
    msg.attributes.push(RouteAttribute::Oif(index));
    msg
}

/// Adds a route. EEXIST is returned as is: a route to the same destination already exists in
/// the main table and is not ours (ours would have been read back), e.g. the device's LAN.
pub(super) fn add_route(index: u32, net: &IpNet) -> io::Result<()> {
    request(
        RouteNetlinkMessage::NewRoute(route_message(index, net)),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

pub(super) fn remove_route(index: u32, net: &IpNet) -> io::Result<()> {
    match request(
        RouteNetlinkMessage::DelRoute(route_message(index, net)),
        NLM_F_REQUEST | NLM_F_ACK,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(drop),
    }
}
