//! The enrollment service: validate, decide, sign, allocate, store, audit.
//!
//! 1. Validate the request (WireGuard key, CSR checks, optional fields).
//! 2. Check what the request proves beyond its keys: a site's enrollment key ([`site`], rate
//!    limited), a user's access token (checked by the HTTP layer). Read the device, the live
//!    device holding the same `machine_uid`, and the pending enrollment of these keys, and
//!    [`decide`] what this request is: a first enrollment (registering the device when a site
//!    key authorizes an unknown id), an idempotent retry with the same keys, a re-enrollment
//!    with new keys under some authority, a hold by the collision gate (202, no certificate),
//!    or a refusal.
//! 3. Ask the [`Signer`] for a certificate (outside any transaction: a slow CA never holds
//!    the database's write lock).
//! 4. Hand the prepared write to the group committer ([`commit`]): inside one transaction
//!    shared with the other enrollments of that moment, in its own savepoint, allocate an
//!    address if the device has none, compare-and-set the device row on its `generation`,
//!    supersede the previous certificate, record the new one and the audit event. A lost race
//!    (another request for the same device, or a replica taking the same address) rolls back
//!    that savepoint only and this request starts again from step 2.

pub mod commit;
pub mod decide;
pub mod site;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use nexa_proto::wireguard::render_wg_quick;
use nexa_proto::{
    CertificateInfo, DeviceId, EnrollPending, EnrollRequest, EnrollResponse, HawkbitProfile,
    WgKeyError, WgPublicKey, WireguardProfile,
};
use time::format_description::well_known::Rfc3339;

use crate::auth::Principal;
use crate::auth::secret::random_id;
use crate::ca::{SignRequest, Signer, SignerError};
use crate::clock::Clock;
use crate::config::WgSettings;
use crate::csr::{self, CsrError};
use crate::db::devices::{self, DeviceRow};
use crate::db::pending::{self, PendingRow};
use crate::db::sites;
use crate::db::{Db, DbError, QueryContext, audit};
use crate::hawkbit::{HawkbitError, TargetOutcome, TargetRegistry, TargetToken};
use crate::wg::manager::{GatewayHandle, PeerChange};
use crate::wg::pool::AllocError;
use commit::{CommitError, Committed, Committer, EnrollmentWrite, Registration};
use decide::{Decision, Facts, Proof, ReenrollBy, Refusal};
use site::{ProvenSite, SiteGate};

/// How many times a lost compare-and-set is retried before giving up.
const MAX_ATTEMPTS: usize = 5;
/// Longest accepted `machine_uid` / `hostname`.
const MAX_FIELD_LEN: usize = 255;
/// How long a held device is asked to wait before it polls again, by default.
pub const DEFAULT_PENDING_POLL: Duration = Duration::from_secs(30);

/// What kind of enrollment succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First enrollment of a device (HTTP 201).
    Created,
    /// Same keys again: same address, fresh certificate (HTTP 200).
    Repeated,
    /// New keys under an authority: an operator's window, a technician, an approval, or the
    /// site key for the same machine (HTTP 200).
    Reenrolled,
}

/// The answer to an enrollment.
#[derive(Debug)]
pub enum EnrollAnswer {
    Enrolled {
        response: Box<EnrollResponse>,
        outcome: Outcome,
    },
    /// Held by the collision gate (HTTP 202): no certificate; ask again later.
    Pending(EnrollPending),
}

/// Why an enrollment was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    #[error("wg_public_key: {0}")]
    WgKey(#[from] WgKeyError),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(
        "device {0} is not registered; an operator registers it with `nexa-server device add {0}`, \
         or the device enrolls with its site's code and enrollment key"
    )]
    NotRegistered(DeviceId),
    #[error(
        "device {0} is already enrolled with other keys; a field technician re-enrolls it with \
         `nexa-agent enroll --force --user NAME`, or an operator allows it with \
         `nexa-server device allow-reenroll {0}` first"
    )]
    AlreadyEnrolled(DeviceId),
    #[error("device {0} is revoked and can never enroll again; register a new device id")]
    Revoked(DeviceId),
    #[error("device {0} is decommissioned and can never enroll again; register a new device id")]
    Decommissioned(DeviceId),
    #[error(
        "this machine (its machine_uid) is enrolled as device {existing}; set device_id = \
         {existing} on it, or have an administrator decommission {existing} first"
    )]
    MachineKnownAs { existing: String },
    #[error(
        "an administrator rejected the pending enrollment {0} of these keys; generate new keys \
         (`nexa-agent enroll --force`) or ask the administrator"
    )]
    Rejected(String),
    #[error(
        "the site code or enrollment key is not accepted; check site_code and the key against \
         `nexa-server site show SITE` (its fingerprint) — the key may have been rotated"
    )]
    EnrollmentKeyInvalid,
    #[error("{}", rate_message(*locked_out, *retry_after))]
    RateLimited {
        retry_after: Duration,
        locked_out: bool,
    },
    #[error("this WireGuard public key belongs to another device; generate a new key pair")]
    WgKeyInUse,
    #[error("no WireGuard address left: {0}")]
    PoolExhausted(String),
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error("enrollment of {0} kept colliding with concurrent enrollments of the same device")]
    Contention(DeviceId),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("storing the enrollment failed: {0}")]
    CommitFailed(String),
    #[error("the enrollment writer has stopped")]
    WriterStopped,
    /// Provisioning the device's hawkBit target failed; nothing was committed.
    #[error("provisioning the hawkBit target: {0}")]
    Hawkbit(HawkbitError),
    #[error("{0}")]
    Internal(String),
}

fn rate_message(locked_out: bool, wait: Duration) -> String {
    if locked_out {
        format!(
            "too many bad enrollment keys from this address for this site; locked out for {} s",
            wait.as_secs().max(1)
        )
    } else {
        format!(
            "too many enrollment requests from this address for this site; try again in {} s",
            wait.as_secs().max(1)
        )
    }
}

impl From<AllocError> for EnrollError {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::Exhausted { .. } => EnrollError::PoolExhausted(e.to_string()),
            AllocError::Db(db) => EnrollError::Db(db),
        }
    }
}

/// What a committed request was (the write side's view of a [`Decision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    First,
    Repeat,
    Reenroll,
}

/// One enrollment request.
#[derive(Debug)]
pub struct EnrollInput {
    pub id: DeviceId,
    pub request: EnrollRequest,
    /// The client's address, for the audit trail and the limiter.
    pub source: Option<IpAddr>,
    /// A logged-in user (technician or admin) presenting an access token.
    pub user: Option<Principal>,
}

/// The enrollment service.
#[derive(Debug, Clone)]
pub struct EnrollService {
    db: Db,
    signer: Arc<dyn Signer>,
    wg: WgSettings,
    gateway_key: WgPublicKey,
    clock: Arc<dyn Clock>,
    committer: Committer,
    gateway: GatewayHandle,
    /// Announced to devices in the response (`mqtt_url`).
    broker: Option<String>,
    /// hawkBit targets are provisioned at enrollment when set.
    hawkbit: Option<HawkbitProvisioning>,
    /// Zero-touch enrollment with site keys; None: only pre-registered devices enroll.
    sites: Option<SiteGate>,
    gate: GateSettings,
}

/// The collision gate's settings.
#[derive(Debug, Clone, Copy)]
pub struct GateSettings {
    /// A device seen within this long is "recently online".
    pub collision_window: Duration,
    /// What a held device is told to wait before asking again.
    pub pending_poll: Duration,
}

impl Default for GateSettings {
    fn default() -> Self {
        Self {
            collision_window: Duration::from_secs(7 * 86_400),
            pending_poll: DEFAULT_PENDING_POLL,
        }
    }
}

/// Provisioning of the device's hawkBit target at enrollment: every enrollment creates the
/// target or replaces its security token, and the response carries the new token.
#[derive(Debug, Clone)]
pub struct HawkbitProvisioning {
    pub registry: Arc<dyn TargetRegistry>,
    /// The DDI base URL announced to the device.
    pub ddi_url: String,
    pub tenant: String,
}

/// The device's state as read for one attempt.
struct Read {
    device: Option<DeviceRow>,
    machine_owner: Option<String>,
    pending: Option<PendingRow>,
}

impl EnrollService {
    /// Creates the service and starts its writer task; call inside a Tokio runtime.
    pub fn new(
        db: Db,
        signer: Arc<dyn Signer>,
        wg: WgSettings,
        gateway_key: WgPublicKey,
        clock: Arc<dyn Clock>,
        gateway: GatewayHandle,
    ) -> Self {
        let committer = Committer::spawn(db.clone(), wg.pool, clock.clone());
        Self {
            db,
            signer,
            wg,
            gateway_key,
            clock,
            committer,
            gateway,
            broker: None,
            hawkbit: None,
            sites: None,
            gate: GateSettings::default(),
        }
    }

    /// Provisions hawkBit targets (and their tokens) at enrollment.
    pub fn with_hawkbit(mut self, hawkbit: Option<HawkbitProvisioning>) -> Self {
        self.hawkbit = hawkbit;
        self
    }

    /// Announces this MQTT broker to enrolling devices.
    pub fn with_broker(mut self, broker: Option<nexa_proto::BrokerUrl>) -> Self {
        self.broker = broker.map(|b| b.to_string());
        self
    }

    /// Accepts site enrollment keys, with this collision gate.
    pub fn with_sites(mut self, sites: SiteGate, gate: GateSettings) -> Self {
        self.sites = Some(sites);
        self.gate = gate;
        self
    }

    /// Runs one enrollment.
    pub async fn enroll(&self, input: EnrollInput) -> Result<EnrollAnswer, EnrollError> {
        let EnrollInput {
            id,
            request,
            source,
            user,
        } = input;
        let wg_key = WgPublicKey::parse(&request.wg_public_key)?;
        if wg_key == self.gateway_key {
            return Err(EnrollError::WgKeyInUse);
        }
        let wg_key_b64 = wg_key.to_base64();
        check_field("machine_uid", request.machine_uid.as_deref())?;
        check_field("hostname", request.hostname.as_deref())?;
        let site = self.prove_site(&request, source).await?;
        let csr = csr::validate(&request.csr_pem, &id)?;
        let user_actor = user.as_ref().map(Principal::actor);
        let proof = Proof {
            site_key: site.is_some(),
            user: user_actor.as_deref(),
        };
        let source_text = source.map(|ip| ip.to_string());
        // Issued once per request, even if the commit has to be retried.
        let mut target: Option<(TargetToken, TargetOutcome)> = None;

        for _ in 0..MAX_ATTEMPTS {
            let read = self
                .read(&id, &wg_key_b64, &csr.spki_sha256, &request, site.as_ref())
                .await?;
            let now = self.clock.unix();
            let decision = decide::decide(&Facts {
                device: read.device.as_ref(),
                machine_owner: read.machine_owner.as_deref(),
                pending: read.pending.as_ref(),
                spki_sha256: &csr.spki_sha256,
                wg_key: &wg_key_b64,
                machine_uid: request.machine_uid.as_deref(),
                hostname: request.hostname.as_deref(),
                proof,
                now,
                collision_window: i64::try_from(self.gate.collision_window.as_secs())
                    .unwrap_or(i64::MAX),
            });
            let (plan, register, reenroll_by) = match decision {
                Decision::Refuse(r) => return Err(refusal(r, &id)),
                Decision::Hold { existing, reason } => {
                    let (Some(device), Some(site)) = (read.device.as_ref(), site.as_ref()) else {
                        return Err(EnrollError::Internal(
                            "the collision gate held a request without a device or site".into(),
                        ));
                    };
                    let pending = self
                        .hold(
                            device,
                            existing,
                            &reason,
                            &csr.spki_sha256,
                            &wg_key_b64,
                            &request,
                            site,
                            source_text.as_deref(),
                        )
                        .await?;
                    return Ok(EnrollAnswer::Pending(pending));
                }
                Decision::First { register } => (Plan::First, register, None),
                Decision::Repeat => (Plan::Repeat, false, None),
                Decision::Reenroll(by) => (Plan::Reenroll, false, Some(by)),
            };
            // Before signing and committing: when hawkBit is unreachable nothing is stored,
            // and the device's retry starts from the same state.
            if let Some(h) = &self.hawkbit
                && target.is_none()
            {
                let token = TargetToken::generate();
                let outcome = h
                    .registry
                    .set_token(&id, &token)
                    .await
                    .map_err(EnrollError::Hawkbit)?;
                target = Some((token, outcome));
            }

            // Signing happens before the write: a slow CA never holds up other commits.
            let issued = self
                .signer
                .sign(&SignRequest {
                    device_id: id.clone(),
                    spki_der: csr.spki_der.clone(),
                    csr_der: csr.der.clone(),
                })
                .await?;
            let device = read.device.as_ref();
            let revision = match (plan, device) {
                (Plan::First, _) | (_, None) => 1,
                (Plan::Repeat, Some(d)) => d.profile_revision,
                (Plan::Reenroll, Some(d)) => d.profile_revision + 1,
            };
            let moved_from = self.moved_from(device, site.as_ref()).await?;
            let write = EnrollmentWrite {
                id: id.to_string(),
                plan,
                generation: device.map_or(0, |d| d.generation),
                existing_host: device.and_then(|d| d.wg_host),
                profile_revision: revision,
                ec_spki_sha256: csr.spki_sha256.clone(),
                wg_public_key: wg_key_b64.clone(),
                machine_uid: request.machine_uid.clone(),
                hostname: request.hostname.clone(),
                serial: issued.serial_hex.clone(),
                not_before: issued.not_before.unix_timestamp(),
                not_after: issued.not_after.unix_timestamp(),
                superseded_serial: device.and_then(|d| d.cert_serial.clone()),
                source: source_text.clone(),
                hawkbit_target: target.as_ref().map(|(_, outcome)| *outcome),
                register: register
                    .then(|| {
                        site.as_ref().map(|s| Registration {
                            tenant: s.site.tenant.clone(),
                            site_id: s.site.id.clone(),
                        })
                    })
                    .flatten(),
                site: site
                    .as_ref()
                    .map(|s| (s.site.id.clone(), s.site.site_code.clone())),
                moved_from,
                machine_guard: site
                    .as_ref()
                    .filter(|_| plan == Plan::First)
                    .and_then(|s| Some((s.site.tenant.clone(), request.machine_uid.clone()?))),
                revoke_previous: matches!(
                    reenroll_by,
                    Some(ReenrollBy::User(_) | ReenrollBy::Approved(_) | ReenrollBy::SameMachine)
                ),
                complete_pending: match &reenroll_by {
                    Some(ReenrollBy::Approved(p)) => Some(p.clone()),
                    _ => None,
                },
                actor: match &reenroll_by {
                    Some(ReenrollBy::User(actor)) => actor.clone(),
                    _ => format!("device:{id}"),
                },
                authorized_by: authorized_by(reenroll_by.as_ref(), site.as_ref()),
            };
            let host = match self.committer.commit(write).await {
                Ok(Committed { host }) => host,
                Err(CommitError::Conflict) => continue, // another writer won; re-read
                Err(CommitError::Failed(e)) => return Err(e),
            };
            // Every enrollment, repeats included, (re)writes its one peer on the gateway.
            self.gateway.notify(PeerChange {
                key: wg_key.clone(),
                host,
                replaces: device
                    .and_then(|d| d.wg_public_key.as_deref())
                    .and_then(|k| WgPublicKey::parse(k).ok()),
            });
            let address = self.wg.pool.interface_address(host);
            let outcome = match plan {
                Plan::First => Outcome::Created,
                Plan::Repeat => Outcome::Repeated,
                Plan::Reenroll => Outcome::Reenrolled,
            };
            tracing::info!(device = %id, ?outcome, %address, serial = %issued.serial_hex, "enrolled");

            let profile = WireguardProfile {
                address,
                server_public_key: self.gateway_key.to_base64(),
                endpoint: self.wg.endpoint.clone(),
                allowed_ips: self
                    .wg
                    .allowed_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                persistent_keepalive: self.wg.keepalive,
            };
            let response = EnrollResponse {
                device_id: id.to_string(),
                certificate_pem: issued.pem,
                ca_chain_pem: issued.chain_pem,
                wireguard_config: render_wg_quick(&profile, None),
                wireguard: profile,
                profile_revision: u64::try_from(revision).unwrap_or(0),
                certificate: CertificateInfo {
                    serial: issued.serial_hex,
                    not_after: issued.not_after.format(&Rfc3339).unwrap_or_default(),
                },
                mqtt_url: self.broker.clone(),
                hawkbit: self
                    .hawkbit
                    .as_ref()
                    .zip(target.as_ref())
                    .map(|(h, (token, _))| HawkbitProfile {
                        url: h.ddi_url.clone(),
                        tenant: h.tenant.clone(),
                        controller_id: id.to_string(),
                        target_token: token.expose().to_owned(),
                    }),
            };
            return Ok(EnrollAnswer::Enrolled {
                response: Box::new(response),
                outcome,
            });
        }
        Err(EnrollError::Contention(id))
    }

    /// The site whose key the request presents, checked (and rate limited) before anything
    /// about the device is read.
    async fn prove_site(
        &self,
        request: &EnrollRequest,
        source: Option<IpAddr>,
    ) -> Result<Option<ProvenSite>, EnrollError> {
        let (code, key) = match (&request.site_code, &request.enrollment_key) {
            (None, None) => return Ok(None),
            (Some(code), Some(key)) => (code, key),
            _ => {
                return Err(EnrollError::InvalidField {
                    field: "site_code",
                    reason: "site_code and enrollment_key are sent together or not at all".into(),
                });
            }
        };
        if !site::valid_site_code(code) {
            return Err(EnrollError::InvalidField {
                field: "site_code",
                reason: "must be 1-64 characters of A-Z a-z 0-9 . _ -, starting and ending with a letter or digit".into(),
            });
        }
        if request.machine_uid.is_none() {
            return Err(EnrollError::InvalidField {
                field: "machine_uid",
                reason: "is required with a site enrollment key (the bridge recognises the machine by it)".into(),
            });
        }
        let Some(gate) = &self.sites else {
            return Err(EnrollError::EnrollmentKeyInvalid);
        };
        let ip = source.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        gate.check(code, key, ip).await.map(Some)
    }

    async fn read(
        &self,
        id: &DeviceId,
        wg_key: &str,
        spki: &str,
        request: &EnrollRequest,
        site: Option<&ProvenSite>,
    ) -> Result<Read, EnrollError> {
        let mut conn = self.db.acquire().await?;
        let (device, key_owner) =
            match devices::get_with_key_owner(&mut conn, id.as_str(), wg_key).await? {
                Some((device, owner)) => (Some(device), owner),
                None => (
                    None,
                    devices::wg_key_owner(&mut conn, wg_key, id.as_str()).await?,
                ),
            };
        if key_owner.is_some() {
            return Err(EnrollError::WgKeyInUse);
        }
        let (mut machine_owner, mut pending) = (None, None);
        if let (Some(s), Some(uid)) = (site, request.machine_uid.as_deref()) {
            machine_owner =
                devices::machine_owner(&mut conn, &s.site.tenant, uid, id.as_str()).await?;
            if device
                .as_ref()
                .is_some_and(|d| d.state == devices::STATE_ENROLLED)
            {
                pending = pending::find(&mut conn, id.as_str(), spki, wg_key).await?;
            }
        }
        Ok(Read {
            device,
            machine_owner,
            pending,
        })
    }

    /// The code of the site the device leaves, when a site key moves it.
    async fn moved_from(
        &self,
        device: Option<&DeviceRow>,
        site: Option<&ProvenSite>,
    ) -> Result<Option<String>, EnrollError> {
        let (Some(old), Some(new)) = (device.and_then(|d| d.site_id.as_deref()), site) else {
            return Ok(None);
        };
        if old == new.site.id {
            return Ok(None);
        }
        let mut conn = self.db.acquire().await?;
        Ok(Some(
            sites::code_of(&mut conn, old)
                .await?
                .unwrap_or_else(|| old.to_owned()),
        ))
    }

    /// Records (or notes the poll of) a held enrollment and answers 202.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        device: &DeviceRow,
        existing: Option<String>,
        reason: &str,
        spki: &str,
        wg_key: &str,
        request: &EnrollRequest,
        site: &ProvenSite,
        source: Option<&str>,
    ) -> Result<EnrollPending, EnrollError> {
        let now = self.clock.unix();
        let mut tx = self.db.begin_write().await?;
        let pending_id = match existing {
            Some(id) => {
                pending::touch(&mut tx, &id, now).await?;
                id
            }
            None => {
                let row = PendingRow {
                    id: random_id::<8>().map_err(|e| EnrollError::Internal(e.to_string()))?,
                    device_id: device.id.clone(),
                    site_id: Some(site.site.id.clone()),
                    machine_uid: request.machine_uid.clone(),
                    hostname: request.hostname.clone(),
                    ec_spki_sha256: spki.to_owned(),
                    wg_public_key: wg_key.to_owned(),
                    source: source.map(str::to_owned),
                    reason: reason.to_owned(),
                    state: pending::STATE_PENDING.to_owned(),
                    created_at: now,
                    last_seen_at: now,
                    decided_by: None,
                    decided_at: None,
                    completed_at: None,
                };
                if pending::insert(&mut tx, &row).await? {
                    let event = audit::AuditEvent::new(
                        format!("device:{}", device.id),
                        "enrollment.pending",
                        Some(&device.id),
                        row.source.clone(),
                        serde_json::json!({
                            "pending_id": row.id,
                            "site": site.site.site_code,
                            "reason": reason,
                            "machine_uid": row.machine_uid,
                            "hostname": row.hostname,
                            "outcome": "held",
                        }),
                    );
                    audit::record(&mut tx, &event).await?;
                    tracing::warn!(
                        target: "nexa::alert",
                        device = %device.id,
                        pending_id = %row.id,
                        site = %site.site.site_code,
                        source = ?row.source,
                        "[ENROLL] collision: {reason}; held for an administrator (`nexa-server enrollment approve {}` or `reject`)",
                        row.id
                    );
                    row.id
                } else {
                    // A concurrent poll of the same keys recorded it first.
                    pending::find(&mut tx, &device.id, spki, wg_key)
                        .await?
                        .map(|p| p.id)
                        .ok_or_else(|| {
                            EnrollError::Internal("a pending enrollment vanished".into())
                        })?
                }
            }
        };
        tx.commit().await.doing("committing a pending enrollment")?;
        let retry_after_s = self.gate.pending_poll.as_secs().max(1);
        Ok(EnrollPending {
            device_id: device.id.clone(),
            status: "pending".into(),
            message: format!(
                "this enrollment waits for an administrator's approval (pending enrollment \
                 {pending_id}); ask again with the same keys in {retry_after_s} s"
            ),
            pending_id,
            retry_after_s,
        })
    }
}

fn refusal(r: Refusal, id: &DeviceId) -> EnrollError {
    match r {
        Refusal::NotRegistered => EnrollError::NotRegistered(id.clone()),
        Refusal::Revoked => EnrollError::Revoked(id.clone()),
        Refusal::Decommissioned => EnrollError::Decommissioned(id.clone()),
        Refusal::AlreadyEnrolled => EnrollError::AlreadyEnrolled(id.clone()),
        Refusal::MachineKnownAs(existing) => EnrollError::MachineKnownAs { existing },
        Refusal::Rejected(p) => EnrollError::Rejected(p),
    }
}

/// Who authorized the enrollment, as the audit trail names it.
fn authorized_by(by: Option<&ReenrollBy>, site: Option<&ProvenSite>) -> Option<String> {
    match by {
        Some(ReenrollBy::Window) => Some("reenroll_window".into()),
        Some(ReenrollBy::User(actor)) => Some(actor.clone()),
        Some(ReenrollBy::Approved(p)) => Some(format!("pending:{p}")),
        Some(ReenrollBy::SameMachine) | None => {
            site.map(|s| format!("site:{} v{}", s.site.site_code, s.key_version))
        }
    }
}

fn check_field(field: &'static str, value: Option<&str>) -> Result<(), EnrollError> {
    let Some(v) = value else { return Ok(()) };
    if v.len() > MAX_FIELD_LEN {
        return Err(EnrollError::InvalidField {
            field,
            reason: format!("is {} bytes; at most {MAX_FIELD_LEN} are allowed", v.len()),
        });
    }
    if v.chars().any(char::is_control) {
        return Err(EnrollError::InvalidField {
            field,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_are_bounded() {
        assert!(check_field("hostname", None).is_ok());
        assert!(check_field("hostname", Some("gw-01")).is_ok());
        assert!(check_field("hostname", Some(&"x".repeat(256))).is_err());
        assert!(check_field("hostname", Some("a\nb")).is_err());
    }
}
