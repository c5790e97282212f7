//! `nexa-agent enroll`: from nothing (or a broken set) to a complete, verified certs directory.
//!
//! 1. Resolve the device id, take the certs lock (`renew::lock`; held to the end), finish or
//!    drop an interrupted renewal (`renew::stage::recover`), and check the certs directory; a
//!    valid set ends here (exit 0, no request) unless `--force`.
//! 2. Choose keys: staged keys from an unfinished attempt, else (without `--force`) the working
//!    set's keys when its certificate is still this device's, else fresh ones. Persist them to
//!    `.staging` *before* calling the bridge.
//! 3. Call the bridge, retrying network errors and 5xx/429 with backoff; stop at once on 4xx
//!    or a trust failure.
//! 4. Verify the answer: chain to the pinned root, client-auth usage, CN, key match.
//! 5. Write the working set atomically, `enrolled` last, then drop `.staging`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nexa_proto::wireguard::render_wg_quick;
use nexa_proto::{DeviceId, EnrollRequest, WgPublicKey};
use reqwest::StatusCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::atomic::ensure_dir;
use crate::backoff::Backoff;
use crate::bridge::{BridgeClient, BridgeError, Enrolled};
use crate::certs::{CertsDir, CertsError, Current, EnrolledFlag, FLAG_VERSION, WorkingSet};
use crate::config::AgentConfig;
use crate::device_id::{IdSource, resolve_device_id};
use crate::error::AgentError;
use crate::hawkbit::settings::Announced;
use crate::keys::{DeviceKey, WgKeyPair};
use crate::renew::RenewError;
use crate::renew::lock::CertsLock;
use crate::renew::stage::recover;
use crate::verify::CertFacts;
use zeroize::Zeroizing;

/// Options of one `enroll` run.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub force: bool,
    pub backoff: Backoff,
    /// `/` in production; device-id sources are read below it.
    pub sysroot: PathBuf,
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

    let (device_key, wg_key, origin) = choose_keys(&certs, &id, opts.force, staged, working);
    let (device_key, wg_key) = match (device_key, wg_key) {
        (Some(d), Some(w)) => (d, w),
        _ => (DeviceKey::generate()?, WgKeyPair::generate()),
    };
    certs.stage_keys(&device_key, &wg_key)?;
    tracing::info!(device = %id, source = id_source.describe(), keys = ?origin, "enrolling");

    let request = EnrollRequest {
        csr_pem: device_key.csr_pem(&id)?,
        wg_public_key: wg_key.public().to_base64(),
        machine_uid: read_first_line(&opts.sysroot.join("etc/machine-id")),
        hostname: read_first_line(&opts.sysroot.join("proc/sys/kernel/hostname"))
            .or_else(|| read_first_line(&opts.sysroot.join("etc/hostname"))),
        site_code: None,
        enrollment_key: None,
    };
    let client = BridgeClient::new(&bridge)?;
    let Enrolled { status, response } = match with_retry(opts.backoff, || {
        client.enroll(&id, &request)
    })
    .await
    {
        Ok(answer) => answer,
        Err(e @ BridgeError::Refused { .. }) => {
            // A definite no: these keys will never be accepted, so they must not linger and
            // be mistaken for an unfinished enrollment. The working set is untouched.
            certs.clear_staging()?;
            if let (Some((flag, cert)), false) = (valid, opts.force) {
                tracing::warn!(error = %e, "the unfinished re-enrollment was refused; keeping the current enrollment");
                return Ok(EnrollOutcome::AlreadyEnrolled { id, flag, cert });
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };

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
    })
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

async fn with_retry<T, F, Fut>(backoff: Backoff, call: F) -> Result<T, BridgeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BridgeError>>,
{
    crate::backoff::retry(
        backoff,
        |e: &BridgeError| e.is_retryable().then(|| e.retry_after()),
        call,
    )
    .await
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
