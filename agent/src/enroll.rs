//! `nexa-agent enroll`: from nothing (or a broken set) to a complete, verified certs directory.
//!
//! 1. Resolve the device id, take the certs lock (`renew::lock`; held to the end), finish or
//!    drop an interrupted renewal (`renew::stage::recover`), and check the certs directory; a
//!    valid set ends here (exit 0, no request) unless `--force`.
//! 2. Choose keys: staged keys from an unfinished attempt, else (without `--force`) the working
//!    set's keys when its certificate is still this device's, else fresh ones. Persist them to
//!    `.staging` *before* calling the bridge.
//!    A technician's `--user` logs in first, so a refused login changes nothing.
//! 3. Call the bridge, retrying network errors and 5xx/429 with backoff; stop at once on 4xx
//!    or a trust failure (a refusal also removes the staged keys). A 202 means the enrollment
//!    waits for an administrator: the same request is asked again (`enroll::approval`) until
//!    it is answered or the approval timeout passes, which keeps the staged keys (exit 7) so
//!    the next run continues the same pending enrollment.
//! 4. Verify the answer: chain to the pinned root, client-auth usage, CN, key match.
//! 5. Write the working set atomically, `enrolled` last, then drop `.staging`.
//!
//! The request carries the `machine_uid` (`crate::machine_uid`), and the site code and
//! enrollment key when configured (`config::zero_touch`).

pub mod approval;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use nexa_proto::wireguard::render_wg_quick;
use nexa_proto::{DeviceId, EnrollRequest, WgPublicKey};
use reqwest::StatusCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::atomic::ensure_dir;
use crate::auth::{Session, Technician, is_auth_refusal};
use crate::backoff::Backoff;
use crate::bridge::{BridgeClient, BridgeError, EnrollAnswer, Enrolled};
use crate::certs::{
    CertsDir, CertsError, Current, EnrolledFlag, FLAG_VERSION, PendingNote, WorkingSet,
};
use crate::config::AgentConfig;
use crate::device_id::{IdSource, resolve_device_id};
use crate::error::AgentError;
use crate::hawkbit::config::Announced;
use crate::keys::{DeviceKey, WgKeyPair};
use crate::machine_uid::{self, MachineUid};
use crate::renew::RenewError;
use crate::renew::lock::CertsLock;
use crate::renew::stage::recover;
use crate::verify::CertFacts;
use approval::{ApprovalWait, human};
use zeroize::{Zeroize, Zeroizing};

/// Options of one `enroll` run.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub force: bool,
    pub backoff: Backoff,
    /// `/` in production; device-id and machine-uid sources are read below it.
    pub sysroot: PathBuf,
    /// How long an enrollment held for an administrator's approval (202) is waited out.
    pub approval: ApprovalWait,
    /// A technician whose login authorizes new keys for an existing device (`--user`).
    pub technician: Option<Technician>,
}

impl EnrollOptions {
    /// Options without a technician, waiting for an approval as long as `approval` says.
    pub fn new(force: bool, backoff: Backoff, sysroot: PathBuf, approval: ApprovalWait) -> Self {
        Self {
            force,
            backoff,
            sysroot,
            approval,
            technician: None,
        }
    }
}

/// Where the keys sent to the bridge came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Generated,
    Staged,
    WorkingSet,
}

/// What `enroll` did.
#[derive(Debug)]
pub enum EnrollOutcome {
    AlreadyEnrolled {
        id: DeviceId,
        flag: EnrolledFlag,
        cert: CertFacts,
    },
    Enrolled {
        id: DeviceId,
        id_source: IdSource,
        status: StatusCode,
        flag: EnrolledFlag,
        cert: CertFacts,
        keys: KeyOrigin,
        written: Vec<PathBuf>,
        /// What the request carried as `machine_uid`, and from which sources.
        machine_uid: Option<MachineUid>,
        /// The technician whose login authorized it.
        authorized_by: Option<String>,
        /// The enrollment waited for an administrator's approval (its pending id).
        approved: Option<String>,
    },
}

/// Runs enrollment.
pub async fn enroll(cfg: &AgentConfig, opts: &EnrollOptions) -> Result<EnrollOutcome, AgentError> {
    let bridge = cfg.bridge()?;
    let (id, id_source) = resolve_device_id(&opts.sysroot, cfg.device_id.as_deref())?;
    let certs = CertsDir::new(&cfg.certs_dir);
    // One writer of /certs at a time (a renewal may be running in the daemon); an interrupted
    // renewal is resolved before anything is read.
    ensure_dir(certs.root(), 0o755).map_err(CertsError::from)?;
    let _lock = CertsLock::acquire(certs.root())
        .await
        .map_err(CertsError::from)?;
    recover(&certs).map_err(RenewError::from)?;
    let current = certs.check(Some(&id), Some(bridge.root_fingerprint), SystemTime::now())?;
    let staged = certs.staged_keys()?;
    let working = certs.current_keys()?;
    let pending = staged.as_ref().is_some_and(|(sdk, _)| {
        working
            .as_ref()
            .is_none_or(|(wdk, _)| wdk.spki_der() != sdk.spki_der())
    });
    let valid = match current {
        Current::Valid { flag, cert } => Some((*flag, cert)),
        Current::Invalid { ref reason } => {
            tracing::warn!(%reason, "the existing enrollment is not usable; enrolling again");
            None
        }
        Current::Missing => None,
    };
    if let Some((flag, cert)) = &valid
        && !opts.force
    {
        if !pending {
            certs.clear_staging()?;
            return Ok(EnrollOutcome::AlreadyEnrolled {
                id,
                flag: flag.clone(),
                cert: cert.clone(),
            });
        }
        tracing::warn!("a re-enrollment with new keys did not finish; completing it");
    }

    let client = BridgeClient::new(&bridge)?;
    // Before any key is staged: a refused login must leave everything as it was.
    let mut session = match &opts.technician {
        Some(who) => Some(Session::login(&client, who, opts.backoff).await?),
        None => None,
    };

    let (device_key, wg_key, origin) = choose_keys(&certs, &id, opts.force, staged, working);
    let (device_key, wg_key) = match (device_key, wg_key) {
        (Some(d), Some(w)) => (d, w),
        _ => (DeviceKey::generate()?, WgKeyPair::generate()),
    };
    certs.stage_keys(&device_key, &wg_key)?;
    let uid = machine_uid::derive(&opts.sysroot, cfg.machine_uid.as_ref());
    let uid_sources = uid
        .as_ref()
        .map_or_else(|| "none".to_owned(), MachineUid::source_names);
    tracing::info!(
        device = %id,
        source = id_source.describe(),
        keys = ?origin,
        machine_uid_sources = %uid_sources,
        site = cfg.zero_touch.as_ref().map(|z| z.site_code.as_str()),
        enrollment_key_from = cfg.zero_touch.as_ref().map(|z| z.key_source.to_string()),
        technician = session.as_ref().map(Session::user),
        "enrolling"
    );
    if uid.as_ref().is_some_and(|u| !u.survives_reflash()) {
        tracing::info!(
            "the machine uid comes from /etc/machine-id only, which a re-flash renews; set machine_uid to a factory serial to keep it"
        );
    }

    let request = Request(EnrollRequest {
        csr_pem: device_key.csr_pem(&id)?,
        wg_public_key: wg_key.public().to_base64(),
        machine_uid: uid.as_ref().map(|u| u.value().to_owned()),
        hostname: read_first_line(&opts.sysroot.join("proc/sys/kernel/hostname"))
            .or_else(|| read_first_line(&opts.sysroot.join("etc/hostname"))),
        site_code: cfg
            .zero_touch
            .as_ref()
            .map(|z| z.site_code.as_str().to_owned()),
        enrollment_key: cfg.zero_touch.as_ref().map(|z| z.key.expose().to_owned()),
    });
    let (Enrolled { status, response }, approved) = match request_certificate(
        &client,
        &id,
        &request.0,
        &mut session,
        opts,
        &certs,
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) if is_refusal(&e) => {
            // A definite no: these keys will never be accepted, so they must not linger
            // and be mistaken for an unfinished enrollment. The working set is untouched.
            certs.clear_staging()?;
            if let (Some((flag, cert)), false) = (valid, opts.force) {
                tracing::warn!(error = %e, "the unfinished re-enrollment was refused; keeping the current enrollment");
                return Ok(EnrollOutcome::AlreadyEnrolled { id, flag, cert });
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    drop(request);

    if response.device_id != id.as_str() {
        return Err(AgentError::Inconsistent(format!(
            "it is for device {:?}, not {id}",
            response.device_id
        )));
    }
    let cert = crate::verify::verify_device_cert(
        &response.certificate_pem,
        &response.ca_chain_pem,
        bridge.root_fingerprint,
        &id,
        &device_key.spki_der(),
        SystemTime::now(),
    )?;
    WgPublicKey::parse(&response.wireguard.server_public_key)
        .map_err(|e| AgentError::Inconsistent(format!("gateway public key: {e}")))?;
    if response.wireguard.address.is_empty() || response.wireguard.endpoint.is_empty() {
        return Err(AgentError::Inconsistent(
            "the WireGuard profile has no address or endpoint".into(),
        ));
    }

    let wg_conf = render_wg_quick(&response.wireguard, Some(wg_key.private_b64()));
    let hawkbit = announced_hawkbit(response.hawkbit.as_ref());
    let flag = EnrolledFlag {
        version: FLAG_VERSION,
        device_id: id.to_string(),
        enrolled_at: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        bridge: bridge.url.to_string(),
        root_fingerprint: bridge.root_fingerprint.to_string(),
        serial: cert.serial_hex.clone(),
        not_after: cert.not_after.format(&Rfc3339).unwrap_or_default(),
        address: response.wireguard.address.clone(),
        profile_revision: response.profile_revision,
        mqtt_url: announced_broker(response.mqtt_url.as_deref()),
        hawkbit: hawkbit.as_ref().map(|(announced, _)| announced.clone()),
    };
    let written = certs.install(&WorkingSet {
        device_key_pem: device_key.pem(),
        cert_pem: &response.certificate_pem,
        chain_pem: &response.ca_chain_pem,
        wg_conf: &wg_conf,
        hawkbit_token: hawkbit.as_ref().map(|(_, token)| token.as_str()),
        flag: &flag,
    })?;
    tracing::info!(device = %id, address = %flag.address, serial = %flag.serial, "enrolled");
    Ok(EnrollOutcome::Enrolled {
        id,
        id_source,
        status,
        flag,
        cert,
        keys: origin,
        written,
        machine_uid: uid,
        authorized_by: session.as_ref().map(|s| s.user().to_owned()),
        approved,
    })
}

/// The enrollment request; the enrollment key in it is wiped when it is dropped.
struct Request(EnrollRequest);

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(key) = self.0.enrollment_key.as_mut() {
            key.zeroize();
        }
    }
}

/// True when the bridge definitely refused (4xx other than 429), directly or by refusing the
/// technician's authorization.
fn is_refusal(e: &AgentError) -> bool {
    match e {
        AgentError::Bridge(b) => matches!(b, BridgeError::Refused { .. }),
        AgentError::Auth(a) => matches!(a.bridge(), BridgeError::Refused { .. }),
        _ => false,
    }
}

/// Asks for the certificate until the bridge issues it, waiting out an approval (202) with
/// the same request. Returns the answer and, when it had to wait, the pending id.
async fn request_certificate(
    client: &BridgeClient,
    id: &DeviceId,
    request: &EnrollRequest,
    session: &mut Option<Session>,
    opts: &EnrollOptions,
    certs: &CertsDir,
) -> Result<(Enrolled, Option<String>), AgentError> {
    let mut first_pending: Option<Instant> = None;
    let mut announced: Option<String> = None;
    let mut poll = 0u32;
    let notifier = crate::sdnotify::Notifier::from_env();
    loop {
        let pending = match send(client, id, request, session, opts.backoff).await? {
            EnrollAnswer::Enrolled(e) => {
                if let Some(pid) = &announced {
                    tracing::info!(pending_id = %pid, "enrollment {pid} was approved");
                }
                return Ok((*e, announced));
            }
            EnrollAnswer::Pending(p) => p,
        };
        if pending.body.device_id != id.as_str() {
            return Err(AgentError::Inconsistent(format!(
                "the pending enrollment is for device {:?}, not {id}",
                pending.body.device_id
            )));
        }
        let pid = pending.body.pending_id.clone();
        let since = *first_pending.get_or_insert_with(Instant::now);
        if announced.as_deref() != Some(pid.as_str()) {
            tracing::warn!(pending_id = %pid, bridge_message = %pending.body.message, "enrollment {pid} waits for an administrator's approval");
            note_pending(certs, id, &pending.body);
            announced = Some(pid.clone());
        } else {
            tracing::info!(pending_id = %pid, waited_s = since.elapsed().as_secs(), "enrollment {pid} still waits for an administrator's approval");
        }
        let Some(wait) = opts
            .approval
            .next(since.elapsed(), poll, pending.retry_after)
        else {
            return Err(AgentError::ApprovalPending {
                device: id.to_string(),
                pending_id: pid,
                waited: human(since.elapsed()),
                timeout: human(opts.approval.timeout),
            });
        };
        tracing::info!(pending_id = %pid, wait_s = wait.as_secs(), "asking the bridge again in {}", human(wait));
        // Under systemd: say why, and keep a start-up timeout from ending the wait.
        notifier.notify(&format!(
            "STATUS=enrollment {pid} waits for an administrator's approval"
        ));
        notifier.notify(&format!(
            "EXTEND_TIMEOUT_USEC={}",
            wait.saturating_add(std::time::Duration::from_secs(120))
                .as_micros()
                .min(u128::from(u64::MAX))
        ));
        tokio::time::sleep(wait).await;
        poll = poll.saturating_add(1);
    }
}

/// One enrollment request with retries of an unavailable bridge; an expired access token is
/// refreshed once, and a refusal of the technician's authorization says what to do.
async fn send(
    client: &BridgeClient,
    id: &DeviceId,
    request: &EnrollRequest,
    session: &mut Option<Session>,
    backoff: Backoff,
) -> Result<EnrollAnswer, AgentError> {
    loop {
        let bearer = session.as_ref().map(Session::bearer);
        let e =
            match crate::bridge::with_retry(backoff, || client.enroll(id, request, bearer)).await {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
        let Some(s) = session.as_mut() else {
            return Err(e.into());
        };
        let (expired, about_auth) = match &e {
            BridgeError::Refused { code, .. } => (code == "token_expired", is_auth_refusal(code)),
            _ => return Err(e.into()),
        };
        if expired && s.refresh_once(client, backoff).await? {
            continue;
        }
        return Err(if about_auth {
            s.refused(e).into()
        } else {
            e.into()
        });
    }
}

/// Records the pending enrollment for `status`; keeps the first time it was heard of.
fn note_pending(certs: &CertsDir, id: &DeviceId, body: &nexa_proto::EnrollPending) {
    let since = certs
        .pending_note()
        .filter(|n| n.pending_id == body.pending_id)
        .map(|n| n.since)
        .unwrap_or_else(|| {
            OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default()
        });
    let note = PendingNote {
        pending_id: body.pending_id.clone(),
        device_id: id.to_string(),
        since,
        message: body.message.clone(),
    };
    if let Err(e) = certs.write_pending_note(&note) {
        tracing::warn!(error = %e, "cannot note the pending enrollment for `status`");
    }
}

type Keys = (DeviceKey, WgKeyPair);

/// Picks the keys to send: staged ones from an unfinished attempt (unless `--force` would
/// re-send the working set's own keys), else the working set's when its certificate is this
/// device's and `--force` is not given; `None` means generate fresh ones.
fn choose_keys(
    certs: &CertsDir,
    id: &DeviceId,
    force: bool,
    staged: Option<Keys>,
    working: Option<Keys>,
) -> (Option<DeviceKey>, Option<WgKeyPair>, KeyOrigin) {
    if let Some((dk, wk)) = staged {
        let same_as_working = working
            .as_ref()
            .is_some_and(|(cdk, _)| cdk.spki_der() == dk.spki_der());
        if !(force && same_as_working) {
            return (Some(dk), Some(wk), KeyOrigin::Staged);
        }
    }
    if !force
        && let Some((dk, wk)) = working
        && working_cert_is_ours(certs, id, &dk)
    {
        return (Some(dk), Some(wk), KeyOrigin::WorkingSet);
    }
    (None, None, KeyOrigin::Generated)
}

/// True when `device.crt` is this device's certificate for `key` (so the bridge knows the key).
fn working_cert_is_ours(certs: &CertsDir, id: &DeviceId, key: &DeviceKey) -> bool {
    let Ok(pem) = std::fs::read(certs.device_cert()) else {
        return false;
    };
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return false;
    };
    let Ok(cert) = block.parse_x509() else {
        return false;
    };
    let cn_ok = cert
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .eq([id.as_str()]);
    cn_ok && cert.public_key().raw == key.spki_der().as_slice()
}

fn read_first_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// The broker the bridge announced, canonical; an unusable one is logged and not kept.
/// The hawkBit target the bridge provisioned, if its announcement is usable: the DDI URL
/// parses, tenant and controller id are path segments, the token fits a header.
fn announced_hawkbit(
    profile: Option<&nexa_proto::HawkbitProfile>,
) -> Option<(Announced, Zeroizing<String>)> {
    let p = profile?;
    let segment = |v: &str| {
        !v.is_empty() && v.len() <= 256 && !v.chars().any(|c| c.is_whitespace() || c == '/')
    };
    let token_ok = !p.target_token.is_empty()
        && p.target_token.len() <= 128
        && p.target_token.bytes().all(|b| b.is_ascii_graphic());
    let url = nexa_proto::base_url::parse_base_url(&p.url, &["http", "https"], "use https://");
    match url {
        Ok(_) if segment(&p.tenant) && segment(&p.controller_id) && token_ok => Some((
            Announced {
                url: p.url.clone(),
                tenant: p.tenant.clone(),
                controller_id: p.controller_id.clone(),
            },
            Zeroizing::new(p.target_token.clone()),
        )),
        _ => {
            tracing::warn!(url = %p.url, tenant = %p.tenant, controller = %p.controller_id, "the bridge announced an unusable hawkBit target; ignored");
            None
        }
    }
}

fn announced_broker(raw: Option<&str>) -> Option<String> {
    let raw = raw?;
    match nexa_proto::BrokerUrl::parse(raw) {
        Ok(b) => Some(b.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "the bridge announced an unusable MQTT broker; ignored");
            None
        }
    }
}
