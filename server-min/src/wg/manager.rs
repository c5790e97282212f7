//! The gateway manager: one task that alone writes the gateway interface.
//!
//! - On start, and every `reconcile_every`, a full pass: read the enrolled devices, read the
//!   kernel, apply the difference (a peer removed by hand comes back, a peer the store does not
//!   know is removed, a changed key or port is put back).
//! - Enrollments in this process arrive as [`PeerChange`]s and are applied at once as peer-only
//!   plans: one enrollment writes one peer, never the whole set. Each batch is checked against
//!   the store first, so an enrollment overtaken by a revocation is not applied.
//! - Changes made by other processes (`nexa-server device revoke`) bump the `peer_set` version
//!   in the store; the manager polls it every `poll_every` and runs a full pass when it moves.
//! - Without the kernel module or CAP_NET_ADMIN the manager keeps running, reports the gateway
//!   as degraded through [`GatewayHandle::health`] and retries on every full pass; the API is
//!   unaffected.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ipnet::IpNet;
use nexa_proto::WgPublicKey;
use nexa_wg::{IfName, InterfaceSpec, PeerSpec, Plan, PrivateKey, WgError, WgLink, reconcile};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::db::{Db, DbError, devices, peer_set};
use crate::wg::pool::AddressPool;

/// How often the store's peer-set version is polled, by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// What the manager needs to know about the interface.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub interface: IfName,
    pub private_key: PrivateKey,
    pub listen_port: u16,
    pub pool: AddressPool,
    pub reconcile_every: Duration,
    pub poll_every: Duration,
}

impl GatewayConfig {
    /// The gateway's own address with the subnet's prefix.
    fn address(&self) -> IpNet {
        let subnet = self.pool.subnet();
        IpNet::new(self.pool.gateway(), subnet.prefix_len()).unwrap_or(subnet)
    }

    fn peer(&self, key: WgPublicKey, host: i64) -> PeerSpec {
        PeerSpec {
            public_key: key,
            endpoint: None,
            allowed_ips: vec![host_net(self.pool.address(host))],
            persistent_keepalive: 0,
        }
    }
}

/// A single address as a network (`/32` or `/128`).
fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// A device enrolled with `key` at host index `host`; `replaces` is its previous key. Sent by
/// the enrollment path after its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChange {
    pub key: WgPublicKey,
    pub host: i64,
    pub replaces: Option<WgPublicKey>,
}

/// The gateway's state, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayHealth {
    /// `managed` or `external`.
    pub mode: &'static str,
    /// `starting`, `ok`, `degraded`, or `external`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Peers the gateway carries after the last successful pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<usize>,
    /// Unix time of the last successful full pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<HealthError>,
}

/// Why the gateway is degraded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthError {
    pub code: &'static str,
    pub message: String,
}

impl GatewayHealth {
    pub fn is_degraded(&self) -> bool {
        self.state == "degraded"
    }
}

/// The enrollment path's and the health endpoint's view of the manager.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    tx: Option<mpsc::UnboundedSender<PeerChange>>,
    health: Arc<RwLock<GatewayHealth>>,
}

impl GatewayHandle {
    /// A gateway run by someone else: nothing to notify, nothing to manage.
    pub fn external() -> Self {
        Self {
            tx: None,
            health: Arc::new(RwLock::new(GatewayHealth {
                mode: "external",
                state: "external",
                interface: None,
                peers: None,
                last_reconcile: None,
                error: None,
            })),
        }
    }

    /// Hands a change to the manager; never blocks.
    pub fn notify(&self, change: PeerChange) {
        if let Some(tx) = &self.tx
            && tx.send(change).is_err()
        {
            tracing::error!(
                "the gateway manager has stopped; the next start reconciles the gateway"
            );
        }
    }

    pub fn health(&self) -> GatewayHealth {
        snapshot(&self.health)
    }
}

/// A copy of the shared health (a poisoned lock still holds the last value written).
fn snapshot(health: &RwLock<GatewayHealth>) -> GatewayHealth {
    health
        .read()
        .map(|h| h.clone())
        .unwrap_or_else(|e| e.into_inner().clone())
}

/// Starts the manager task; call inside a Tokio runtime.
pub fn spawn(
    cfg: GatewayConfig,
    db: Db,
    link: Arc<dyn WgLink>,
    clock: Arc<dyn Clock>,
) -> GatewayHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let health = Arc::new(RwLock::new(GatewayHealth {
        mode: "managed",
        state: "starting",
        interface: Some(cfg.interface.to_string()),
        peers: None,
        last_reconcile: None,
        error: None,
    }));
    let manager = Manager {
        cfg,
        db,
        link,
        clock,
        health: health.clone(),
        seen_version: None,
    };
    tokio::spawn(manager.run(rx));
    GatewayHandle {
        tx: Some(tx),
        health,
    }
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Wg(#[from] WgError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the netlink worker thread failed: {0}")]
    Join(String),
}

impl PassError {
    fn code(&self) -> &'static str {
        match self {
            PassError::Wg(e) => e.code(),
            PassError::Db(_) => "store_error",
            PassError::Join(_) => "internal",
        }
    }
}

struct Manager {
    cfg: GatewayConfig,
    db: Db,
    link: Arc<dyn WgLink>,
    clock: Arc<dyn Clock>,
    health: Arc<RwLock<GatewayHealth>>,
    /// Peer-set version the last successful full pass started from; `None` makes the next
    /// poll run a full pass.
    seen_version: Option<i64>,
}

impl Manager {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<PeerChange>) {
        self.full_pass().await;
        let mut full = tokio::time::interval(self.cfg.reconcile_every);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        full.tick().await; // the first tick is immediate; the start pass just ran
        let mut poll = tokio::time::interval(self.cfg.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = rx.recv() => {
                    let Some(first) = change else { break };
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    self.apply_changes(batch).await;
                }
                _ = full.tick() => self.full_pass().await,
                _ = poll.tick() => {
                    match self.current_version().await {
                        Ok(v) if Some(v) != self.seen_version => {
                            tracing::info!(version = v, "peer set changed in the store; reconciling the gateway");
                            self.full_pass().await;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read the peer-set version"),
                    }
                }
            }
        }
        tracing::debug!("gateway manager stopped");
    }

    async fn current_version(&self) -> Result<i64, DbError> {
        let mut conn = self.db.acquire().await?;
        peer_set::version(&mut conn).await
    }

    /// The interface as the store says it should be, and the peer-set version it reflects.
    async fn desired(&self) -> Result<(InterfaceSpec, i64), DbError> {
        let mut conn = self.db.acquire().await?;
        // Version first: a change committed after this read bumps it again and re-triggers.
        let version = peer_set::version(&mut conn).await?;
        let rows = devices::active_peers(&mut conn).await?;
        let mut peers = Vec::with_capacity(rows.len());
        for row in rows {
            match WgPublicKey::parse(&row.wg_public_key) {
                Ok(key) => peers.push(self.cfg.peer(key, row.wg_host)),
                Err(e) => {
                    tracing::error!(device = %row.id, error = %e, "stored WireGuard key is invalid; peer skipped")
                }
            }
        }
        let spec = InterfaceSpec {
            name: self.cfg.interface.clone(),
            private_key: self.cfg.private_key.clone(),
            listen_port: Some(self.cfg.listen_port),
            addresses: vec![self.cfg.address()],
            peers,
            routes: Vec::new(),
        };
        Ok((spec, version))
    }

    async fn full_pass(&mut self) {
        let (spec, version) = match self.desired().await {
            Ok(desired) => desired,
            Err(e) => {
                self.seen_version = None; // retried at the next poll
                self.set_degraded(&PassError::Db(e));
                return;
            }
        };
        let peers = spec.peers.len();
        let link = self.link.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || reconcile(link.as_ref(), &spec))
            .await
            .map_err(|e| PassError::Join(e.to_string()))
            .and_then(|r| r.map_err(PassError::from));
        match result {
            Ok(plan) => {
                self.seen_version = Some(version);
                if plan.is_empty() {
                    tracing::debug!(interface = %self.cfg.interface, peers, "gateway in step");
                } else {
                    let took_ms = started.elapsed().as_millis() as u64;
                    tracing::info!(interface = %self.cfg.interface, peers, changes = %plan, took_ms, "gateway reconciled");
                }
                self.set_ok(Some(peers), true);
            }
            Err(e) => {
                // A host that cannot run WireGuard at all is retried at the full-pass interval;
                // any other failure at the next poll (about a second).
                let environment = matches!(&e, PassError::Wg(w) if w.is_environment());
                self.seen_version = environment.then_some(version);
                self.set_degraded(&e);
            }
        }
    }

    async fn apply_changes(&mut self, batch: Vec<PeerChange>) {
        if self.health().is_degraded() {
            // The next full pass carries these along with everything else.
            return;
        }
        let mut upsert: Vec<PeerSpec> = Vec::new();
        let mut remove = Vec::new();
        for PeerChange {
            key,
            host,
            replaces,
        } in batch
        {
            if let Some(old) = replaces.filter(|old| *old != key) {
                upsert.retain(|p| p.public_key != old);
                remove.push(old);
            }
            remove.retain(|k| *k != key);
            upsert.retain(|p| p.public_key != key);
            upsert.push(self.cfg.peer(key, host));
        }
        // The store decides: an enrollment that a revocation overtook is not applied (and
        // its key is removed, in case an earlier event put it there).
        let keys: Vec<String> = upsert.iter().map(|p| p.public_key.to_base64()).collect();
        let enrolled = match self.enrolled_keys(&keys).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check gateway peers against the store; running a full pass");
                self.full_pass().await;
                return;
            }
        };
        let (keep, dropped): (Vec<PeerSpec>, Vec<PeerSpec>) = upsert
            .into_iter()
            .partition(|p| enrolled.contains(&p.public_key.to_base64()));
        remove.extend(dropped.into_iter().map(|p| p.public_key));
        let plan = Plan::peers(keep, remove);
        let summary = plan.to_string();
        let link = self.link.clone();
        let name = self.cfg.interface.clone();
        let result = tokio::task::spawn_blocking(move || link.apply(&name, &plan))
            .await
            .map_err(|e| PassError::Join(e.to_string()))
            .and_then(|r| r.map_err(PassError::from));
        match result {
            Ok(()) => {
                tracing::info!(interface = %self.cfg.interface, changes = %summary, "gateway peers updated");
                // The peer count is refreshed by the next full pass.
                self.set_ok(None, false);
            }
            Err(e) => {
                tracing::warn!(error = %e, "incremental gateway update failed; running a full pass");
                self.full_pass().await;
            }
        }
    }

    async fn enrolled_keys(&self, keys: &[String]) -> Result<Vec<String>, DbError> {
        let mut conn = self.db.acquire().await?;
        devices::enrolled_keys(&mut conn, keys).await
    }

    fn health(&self) -> GatewayHealth {
        snapshot(&self.health)
    }

    fn update(&self, f: impl FnOnce(&mut GatewayHealth)) {
        let mut guard = self.health.write().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    fn set_ok(&self, peers: Option<usize>, full: bool) {
        let was = self.health();
        if was.is_degraded() {
            tracing::info!(interface = %self.cfg.interface, "gateway recovered");
        }
        let now = self.clock.unix();
        self.update(|h| {
            h.state = "ok";
            h.error = None;
            if let Some(n) = peers {
                h.peers = Some(n);
            }
            if full {
                h.last_reconcile = Some(now);
            }
        });
    }

    fn set_degraded(&self, e: &PassError) {
        let was = self.health();
        let code = e.code();
        let message = e.to_string();
        let same = was.error.as_ref().is_some_and(|err| err.code == code);
        if same {
            tracing::debug!(interface = %self.cfg.interface, error = %message, "gateway still degraded");
        } else {
            tracing::warn!(interface = %self.cfg.interface, code, error = %message, "gateway degraded; the API keeps serving and the gateway is retried every pass");
        }
        self.update(|h| {
            h.state = "degraded";
            h.error = Some(HealthError { code, message });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use nexa_wg::MemoryLink;

    async fn setup(dir: &std::path::Path) -> (Db, GatewayConfig) {
        let db = Db::open_sqlite(&dir.join("t.db")).await.unwrap();
        let cfg = GatewayConfig {
            interface: IfName::parse("nexa0").unwrap(),
            private_key: PrivateKey::from_bytes([7; 32]),
            listen_port: 51820,
            pool: AddressPool::new("10.8.0.0/24".parse().unwrap()).unwrap(),
            reconcile_every: Duration::from_secs(3600),
            poll_every: Duration::from_millis(20),
        };
        (db, cfg)
    }

    async fn enroll(db: &Db, id: &str, key: u8, host: i64) {
        let mut tx = db.begin_write().await.unwrap();
        devices::register(&mut tx, id, None, 1).await.unwrap();
        sqlx::query(
            "UPDATE devices SET state = 'enrolled', wg_public_key = $1, wg_host = $2 WHERE id = $3",
        )
        .bind(WgPublicKey::from_bytes([key; 32]).to_base64())
        .bind(host)
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn keys(link: &MemoryLink, name: &IfName) -> Vec<WgPublicKey> {
        let mut k: Vec<_> = link
            .state(name)
            .map(|s| s.peers.into_iter().map(|p| p.public_key).collect())
            .unwrap_or_default();
        k.sort_by_key(|k| k.to_base64());
        k
    }

    fn key(b: u8) -> WgPublicKey {
        WgPublicKey::from_bytes([b; 32])
    }

    async fn set_key(db: &Db, id: &str, k: u8) {
        let mut tx = db.begin_write().await.unwrap();
        sqlx::query("UPDATE devices SET wg_public_key = $1 WHERE id = $2")
            .bind(key(k).to_base64())
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn start_loads_store_changes_apply_singly_and_drift_is_repaired() {
        let tmp = tempfile::tempdir().unwrap();
        let (db, cfg) = setup(tmp.path()).await;
        enroll(&db, "a", 1, 2).await;
        enroll(&db, "b", 2, 3).await;
        let link = Arc::new(MemoryLink::new());
        let name = cfg.interface.clone();
        let handle = spawn(cfg, db.clone(), link.clone(), Arc::new(SystemClock));
        until("start pass", || handle.health().state == "ok").await;
        let state = link.state(&name).unwrap();
        assert!(state.up);
        assert_eq!(state.listen_port, 51820);
        assert_eq!(
            state.addresses,
            vec!["10.8.0.1/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(keys(&link, &name), vec![key(1), key(2)]);
        assert_eq!(handle.health().peers, Some(2));
        let before = link.calls();

        // One enrollment writes one peer.
        enroll(&db, "c", 3, 4).await;
        handle.notify(PeerChange {
            key: key(3),
            host: 4,
            replaces: None,
        });
        until("incremental add", || keys(&link, &name).len() == 3).await;
        let after = link.calls();
        assert_eq!(after.peers_written - before.peers_written, 1);
        assert_eq!(after.applies - before.applies, 1);

        // A re-enrollment swaps the key in one plan.
        set_key(&db, "c", 4).await;
        handle.notify(PeerChange {
            key: key(4),
            host: 4,
            replaces: Some(key(3)),
        });
        until("key swap", || keys(&link, &name).contains(&key(4))).await;
        assert!(!keys(&link, &name).contains(&key(3)));

        // Another process revokes "a" and bumps the version: the poll picks it up.
        let mut tx = db.begin_write().await.unwrap();
        devices::revoke(&mut tx, "a", 2).await.unwrap();
        peer_set::bump(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        until("revocation", || !keys(&link, &name).contains(&key(1))).await;
        assert_eq!(keys(&link, &name), vec![key(2), key(4)]);
    }

    #[tokio::test]
    async fn an_enrollment_overtaken_by_its_revocation_is_not_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let (db, cfg) = setup(tmp.path()).await;
        enroll(&db, "a", 1, 2).await;
        let link = Arc::new(MemoryLink::new());
        let name = cfg.interface.clone();
        let handle = spawn(cfg, db.clone(), link.clone(), Arc::new(SystemClock));
        until("start pass", || handle.health().state == "ok").await;
        // "d" enrolled and was revoked before the manager saw the enrollment event; the
        // revocation's version bump may already have been consumed by a full pass.
        enroll(&db, "d", 5, 3).await;
        let mut tx = db.begin_write().await.unwrap();
        devices::revoke(&mut tx, "d", 2).await.unwrap();
        tx.commit().await.unwrap();
        let before = link.calls();
        handle.notify(PeerChange {
            key: key(5),
            host: 3,
            replaces: None,
        });
        until("the event was handled", || {
            link.calls().applies > before.applies
        })
        .await;
        assert_eq!(keys(&link, &name), vec![key(1)]);
        assert_eq!(link.calls().peers_written, before.peers_written);
    }

    #[tokio::test]
    async fn a_missing_module_degrades_and_heals() {
        let tmp = tempfile::tempdir().unwrap();
        let (db, mut cfg) = setup(tmp.path()).await;
        cfg.reconcile_every = Duration::from_millis(50);
        enroll(&db, "a", 1, 2).await;
        let link = Arc::new(MemoryLink::new());
        link.fail_with(Some(|| WgError::ModuleMissing));
        let name = cfg.interface.clone();
        let handle = spawn(cfg, db.clone(), link.clone(), Arc::new(SystemClock));
        until("degraded", || handle.health().is_degraded()).await;
        let h = handle.health();
        assert_eq!(h.error.as_ref().unwrap().code, "wireguard_module_missing");
        assert!(h.error.unwrap().message.contains("modprobe wireguard"));
        // An enrollment while degraded is not tried on its own (full passes fail at `read`,
        // before any `apply`); the healing pass carries it.
        enroll(&db, "b", 2, 3).await;
        handle.notify(PeerChange {
            key: key(2),
            host: 3,
            replaces: None,
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(link.calls().attempts, 0);
        link.fail_with(None);
        until("healed", || handle.health().state == "ok").await;
        assert_eq!(keys(&link, &name), vec![key(1), key(2)]);
    }

    #[tokio::test]
    async fn a_peer_removed_by_hand_comes_back_on_the_next_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let (db, mut cfg) = setup(tmp.path()).await;
        cfg.reconcile_every = Duration::from_millis(50);
        enroll(&db, "a", 1, 2).await;
        let link = Arc::new(MemoryLink::new());
        let name = cfg.interface.clone();
        let handle = spawn(cfg, db, link.clone(), Arc::new(SystemClock));
        until("start", || handle.health().state == "ok").await;
        link.tamper(&name, |s| {
            s.peers.clear();
            s.peers.push(nexa_wg::PeerState {
                public_key: WgPublicKey::from_bytes([9; 32]),
                endpoint: None,
                allowed_ips: vec![],
                persistent_keepalive: 0,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
            });
        });
        until("repair", || {
            keys(&link, &name) == vec![WgPublicKey::from_bytes([1; 32])]
        })
        .await;
    }
}
