//! The WireGuard address pool: subnet arithmetic and allocation.
//!
//! Host index 0 is the network address, 1 the gateway, 2.. the devices; for IPv4 the broadcast
//! address is excluded. Allocation happens inside the enrollment's write transaction and is
//! recorded only in the database (`devices.wg_host`, UNIQUE): the next index above the highest
//! one in use, or, once the top is reached, the lowest gap (left by a removed device). A racing
//! replica that picks the same index fails on the UNIQUE constraint and retries.

use std::net::IpAddr;

use ipnet::IpNet;
use sqlx::SqliteConnection;

use crate::db::{DbError, devices};

/// Host index of the gateway.
pub const GATEWAY_HOST: i64 = 1;
/// First host index handed to a device.
pub const FIRST_DEVICE_HOST: i64 = 2;

/// Why a subnet cannot be a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("WG_SUBNET {given} has host bits set; use the network address {network}")]
    NotNetworkAddress { given: IpNet, network: IpNet },
    #[error(
        "WG_SUBNET {0} is too small: it needs room for the gateway and at least one device (IPv4 /30 or larger)"
    )]
    TooSmall(IpNet),
}

/// Why no address could be allocated.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("every address of {subnet} is in use ({capacity} devices)")]
    Exhausted { subnet: IpNet, capacity: i64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A validated subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    net: IpNet,
    last: i64,
}

impl AddressPool {
    pub fn new(net: IpNet) -> Result<Self, PoolError> {
        if net.network() != net.addr() {
            return Err(PoolError::NotNetworkAddress {
                given: net,
                network: net.trunc(),
            });
        }
        let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
        let last = match net {
            IpNet::V4(_) => {
                if host_bits < 2 {
                    return Err(PoolError::TooSmall(net));
                }
                (1i64 << host_bits) - 2
            }
            IpNet::V6(_) => {
                if host_bits < 2 {
                    return Err(PoolError::TooSmall(net));
                }
                if host_bits >= 63 {
                    i64::MAX
                } else {
                    (1i64 << host_bits) - 1
                }
            }
        };
        Ok(Self { net, last })
    }

    pub fn subnet(&self) -> IpNet {
        self.net
    }

    /// Number of device addresses.
    pub fn capacity(&self) -> i64 {
        self.last - FIRST_DEVICE_HOST + 1
    }

    pub fn last_host(&self) -> i64 {
        self.last
    }

    /// The address of host index `host`.
    pub fn address(&self, host: i64) -> IpAddr {
        let offset = u128::try_from(host).unwrap_or(0);
        match self.net {
            IpNet::V4(n) => {
                let base = u32::from(n.network());
                IpAddr::V4((base.wrapping_add(offset as u32)).into())
            }
            IpNet::V6(n) => {
                let base = u128::from(n.network());
                IpAddr::V6((base.wrapping_add(offset)).into())
            }
        }
    }

    pub fn gateway(&self) -> IpAddr {
        self.address(GATEWAY_HOST)
    }

    /// `address/prefix`, as a wg-quick `Address =` line wants it.
    pub fn interface_address(&self, host: i64) -> String {
        format!("{}/{}", self.address(host), self.net.prefix_len())
    }

    /// Allocates a free host index inside the caller's write transaction.
    pub async fn allocate(&self, conn: &mut SqliteConnection) -> Result<i64, AllocError> {
        let next = devices::max_host(conn)
            .await?
            .map_or(FIRST_DEVICE_HOST, |max| max + 1);
        if (FIRST_DEVICE_HOST..=self.last).contains(&next) {
            return Ok(next);
        }
        match devices::lowest_free_host(conn, FIRST_DEVICE_HOST, self.last).await? {
            Some(host) if host <= self.last => Ok(host),
            _ => Err(AllocError::Exhausted {
                subnet: self.net,
                capacity: self.capacity(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str) -> AddressPool {
        AddressPool::new(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn ipv4_arithmetic() {
        let p = pool("10.8.0.0/24");
        assert_eq!(p.gateway().to_string(), "10.8.0.1");
        assert_eq!(p.address(FIRST_DEVICE_HOST).to_string(), "10.8.0.2");
        assert_eq!(p.last_host(), 254);
        assert_eq!(p.capacity(), 253);
        assert_eq!(p.interface_address(254), "10.8.0.254/24");
        assert_eq!(pool("10.8.0.0/30").capacity(), 1);
    }

    #[test]
    fn ipv6_arithmetic() {
        let p = pool("fd00:8::/64");
        assert_eq!(p.gateway().to_string(), "fd00:8::1");
        assert_eq!(p.interface_address(2), "fd00:8::2/64");
        assert_eq!(p.last_host(), i64::MAX);
    }

    async fn take(db: &crate::db::Db, id: &str, host: i64) {
        let mut tx = db.begin_write().await.unwrap();
        devices::register(&mut tx, id, None, 0).await.unwrap();
        sqlx::query("UPDATE devices SET wg_host = $1 WHERE id = $2")
            .bind(host)
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn allocates_above_the_top_then_fills_gaps_then_reports_exhaustion() {
        let tmp = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open_sqlite(&tmp.path().join("t.db"))
            .await
            .unwrap();
        let p = pool("10.8.0.0/29"); // hosts 2..=6
        let next = |db: crate::db::Db| async move {
            let mut tx = db.begin_write().await.unwrap();
            let r = p.allocate(&mut tx).await;
            tx.rollback().await.unwrap();
            r
        };
        assert_eq!(
            next(db.clone()).await.unwrap(),
            2,
            "empty pool starts at the first device host"
        );
        take(&db, "a", 2).await;
        take(&db, "b", 3).await;
        take(&db, "c", 5).await;
        assert_eq!(
            next(db.clone()).await.unwrap(),
            6,
            "above the highest in use"
        );
        take(&db, "d", 6).await;
        assert_eq!(next(db.clone()).await.unwrap(), 4, "then the lowest gap");
        take(&db, "e", 4).await;
        let err = next(db.clone()).await.unwrap_err();
        assert!(
            matches!(err, AllocError::Exhausted { capacity: 5, .. }),
            "{err}"
        );
        // A second device can never hold an address already taken.
        let mut tx = db.begin_write().await.unwrap();
        devices::register(&mut tx, "f", None, 0).await.unwrap();
        let dup = sqlx::query("UPDATE devices SET wg_host = 4 WHERE id = 'f'")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(dup.as_database_error().unwrap().is_unique_violation());
    }

    #[test]
    fn rejects_bad_subnets() {
        assert!(matches!(
            AddressPool::new("10.8.0.5/24".parse().unwrap()),
            Err(PoolError::NotNetworkAddress { .. })
        ));
        assert!(matches!(
            AddressPool::new("10.8.0.0/31".parse().unwrap()),
            Err(PoolError::TooSmall(_))
        ));
    }
}
