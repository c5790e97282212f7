//! Administration shared by the admin HTTP API and the `nexa-server` subcommands: sites and
//! their enrollment keys, pending enrollments, users. Every change writes one audit event in
//! the same transaction as the change.

pub mod pending;
pub mod sites;
pub mod users;

use std::sync::Arc;

use crate::auth::password::PasswordError;
use crate::auth::site_cache::SitesStamp;
use crate::auth::{KeyHasher, RandomError};
use crate::clock::Clock;
use crate::db::{Db, DbError, QueryContext, Tx, audit};

/// Who asks, for the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `admin:alice`, `admin:api`, `operator:root`, ...
    pub name: String,
    /// Client address, or `cli`.
    pub source: Option<String>,
}

impl Actor {
    /// The operator running a CLI command.
    pub fn cli() -> Self {
        Self {
            name: crate::cli::operator(),
            source: Some("cli".into()),
        }
    }
}

/// Why an administrative call failed; each maps to one error code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("no site {0:?}; `nexa-server site list` shows the sites")]
    SiteUnknown(String),
    #[error("site {0:?} exists already")]
    SiteExists(String),
    #[error("site {0:?} still has devices or pending enrollments; move or decommission them first")]
    SiteInUse(String),
    #[error("no pending enrollment {0:?}; `nexa-server enrollment list` shows them")]
    PendingUnknown(String),
    #[error("pending enrollment {id} is already {state}")]
    PendingDecided { id: String, state: String },
    #[error("user {0:?} exists already")]
    UserExists(String),
    #[error("no user {0:?}; `nexa-server user list` shows the users")]
    UserUnknown(String),
    #[error("password: {0}")]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the password hashing task failed: {0}")]
    Task(String),
}

/// The administration service.
#[derive(Debug, Clone)]
pub struct AdminService {
    db: Db,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    /// Replaced after each change to sites, so that key caches notice it.
    sites_stamp: Option<SitesStamp>,
}

impl AdminService {
    pub fn new(db: Db, hasher: KeyHasher, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            hasher,
            clock,
            sites_stamp: None,
        }
    }

    /// Bumps this stamp after every committed change to a site or its key.
    pub fn with_sites_stamp(mut self, stamp: SitesStamp) -> Self {
        self.sites_stamp = Some(stamp);
        self
    }

    /// Tells every process's site key cache that sites changed (after the commit).
    fn sites_changed(&self) {
        if let Some(s) = &self.sites_stamp {
            s.bump();
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn now(&self) -> i64 {
        self.clock.unix()
    }
}

/// Records one audit event in `tx`.
async fn record(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    device: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), DbError> {
    let ev = audit::AuditEvent::new(
        actor.name.clone(),
        action,
        device,
        actor.source.clone(),
        detail,
    );
    audit::record(tx, &ev).await
}

async fn commit(tx: Tx, doing: &'static str) -> Result<(), DbError> {
    tx.commit().await.doing(doing)
}
