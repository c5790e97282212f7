//! `nexa-server device …` and `nexa-server audit`.

use std::path::PathBuf;

use clap::Subcommand;
use nexa_proto::DeviceId;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{CliError, operator};
use crate::db::{Db, QueryContext, audit, certificates, devices, peer_set, unix_now};
use crate::wg::pool::AddressPool;
use nexa_proto::duration::parse_duration;

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register device ids that may enroll.
    Add {
        /// Device ids.
        ids: Vec<String>,
        /// Also read ids from FILE, one per line (blank lines and # comments ignored).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Free-text note stored with each device.
        #[arg(long)]
        note: Option<String>,
    },
    /// List devices.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one device.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Let an enrolled device enroll once more with new keys (same id, same address).
    AllowReenroll {
        id: String,
        /// How long the window stays open.
        #[arg(long = "for", default_value = "1h", value_name = "DURATION")]
        window: String,
    },
    /// Revoke a device: its certificate is marked revoked, the gateway drops its peer, and it
    /// can never enroll again. Its address is not reused.
    Revoke {
        id: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Decommission a device in one step: revoke its certificates (at step-ca when it signs;
    /// else on the built-in CA's CRL), withdraw its gateway peer, delete its hawkBit target,
    /// mark it decommissioned for good, audit it. Safe to re-run: done steps are not
    /// repeated. Exit status 3 when a step failed (run it again to complete).
    Decommission(Box<super::decommission::DecommissionArgs>),
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only events of this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Only events of this actor, e.g. technician:bob or operator:root.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (device.enrolled), or a prefix ending in a dot (enrollment.).
    #[arg(long)]
    pub action: Option<String>,
    /// Only events at or after this time (RFC 3339), or this long ago (e.g. 2h).
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
    /// Newest N events.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

/// `--since`: an RFC 3339 time, or a duration before now.
fn parse_since(raw: &str) -> Result<i64, CliError> {
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let ago = parse_duration(raw).map_err(|e| {
        CliError::Usage(format!(
            "--since {raw:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration (2h): {e}"
        ))
    })?;
    let now_ms = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    Ok(now_ms - i64::try_from(ago.as_millis()).unwrap_or(i64::MAX / 2))
}

fn parse_id(raw: &str) -> Result<DeviceId, CliError> {
    DeviceId::parse(raw)
        .map_err(|e| CliError::Usage(format!("{raw:?} is not a valid device id: {e}")))
}

pub async fn run(db: &Db, cmd: DeviceCommand) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::Add {
            ids,
            from_file,
            note,
        } => add(db, ids, from_file, note).await,
        DeviceCommand::List { json } => list(db, json).await,
        DeviceCommand::Show { id, json } => show(db, &parse_id(&id)?, json).await,
        DeviceCommand::AllowReenroll { id, window } => {
            allow_reenroll(db, &parse_id(&id)?, &window).await
        }
        DeviceCommand::Revoke { id, reason } => revoke(db, &parse_id(&id)?, reason).await,
        DeviceCommand::Decommission(_) => Err(CliError::Failed(
            "device decommission needs the server's settings; it is dispatched by cli::run".into(),
        )),
    }
}

async fn add(
    db: &Db,
    mut raw: Vec<String>,
    from_file: Option<PathBuf>,
    note: Option<String>,
) -> Result<(), CliError> {
    if let Some(path) = from_file {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CliError::Usage(format!("cannot read --from-file {}: {e}", path.display()))
        })?;
        raw.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    if raw.is_empty() {
        return Err(CliError::Usage(
            "no device ids given; pass ids or --from-file FILE".into(),
        ));
    }
    // Validate everything before writing anything.
    let ids = raw
        .iter()
        .enumerate()
        .map(|(n, r)| {
            DeviceId::parse(r)
                .map_err(|e| CliError::Usage(format!("device id #{} {r:?} is invalid: {e}", n + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = unix_now();
    let actor = operator();
    let mut tx = db.begin_write().await?;
    let mut added = 0usize;
    for id in &ids {
        if devices::register(&mut tx, id.as_str(), note.as_deref(), now).await? {
            added += 1;
            let ev = audit::AuditEvent::new(
                actor.clone(),
                "device.registered",
                Some(id.as_str()),
                Some("cli".into()),
                json!({ "note": note }),
            );
            audit::record(&mut tx, &ev).await?;
        }
    }
    tx.commit().await.doing("committing device registrations")?;
    if ids.len() == 1 {
        let verb = if added == 1 {
            "registered"
        } else {
            "was already registered"
        };
        println!("device {} {verb}", ids[0]);
    } else {
        println!(
            "registered {added} devices ({} already registered)",
            ids.len() - added
        );
    }
    Ok(())
}

fn fmt_time(unix: Option<i64>) -> String {
    unix.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// The pinned address pool, read once per command.
async fn pinned_pool(conn: &mut sqlx::SqliteConnection) -> Result<AddressPool, CliError> {
    let subnet = crate::db::settings::get(conn, crate::db::settings::WG_SUBNET).await?;
    subnet
        .and_then(|s| s.parse().ok())
        .and_then(|net| AddressPool::new(net).ok())
        .ok_or_else(|| CliError::Failed("the database has no valid pinned WireGuard subnet".into()))
}

async fn list(db: &Db, as_json: bool) -> Result<(), CliError> {
    let mut conn = db.acquire().await?;
    let rows = devices::list(&mut conn).await?;
    let pool = pinned_pool(&mut conn).await?;
    drop(conn);
    let out: Vec<_> = rows
        .iter()
        .map(|row| (row, row.wg_host.map(|h| pool.interface_address(h))))
        .collect();
    if as_json {
        let items: Vec<_> = out
            .iter()
            .map(|(r, addr)| json!({ "id": r.id, "state": r.state, "address": addr, "cert_serial": r.cert_serial, "cert_not_after": fmt_time(r.cert_not_after) }))
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    println!(
        "{:<32} {:<11} {:<20} CERT NOT AFTER",
        "DEVICE", "STATE", "ADDRESS"
    );
    for (r, addr) in out {
        println!(
            "{:<32} {:<11} {:<20} {}",
            r.id,
            r.state,
            addr.as_deref().unwrap_or("-"),
            fmt_time(r.cert_not_after)
        );
    }
    Ok(())
}

async fn show(db: &Db, id: &DeviceId, as_json: bool) -> Result<(), CliError> {
    let mut conn = db.acquire().await?;
    let row = devices::get(&mut conn, id.as_str())
        .await?
        .ok_or_else(|| CliError::Failed(format!("device {id} is not registered")))?;
    let certs = certificates::count_by_status(&mut conn, id.as_str()).await?;
    let pool = pinned_pool(&mut conn).await?;
    let site = match &row.site_id {
        Some(id) => crate::db::sites::code_of(&mut conn, id).await?,
        None => None,
    };
    drop(conn);
    let address = row.wg_host.map(|h| pool.interface_address(h));
    let window_open = row.reenroll_until.is_some_and(|t| t > unix_now());
    if as_json {
        let v = json!({
            "id": row.id, "state": row.state, "note": row.note, "address": address,
            "wg_public_key": row.wg_public_key, "machine_uid": row.machine_uid, "hostname": row.hostname,
            "profile_revision": row.profile_revision, "cert_serial": row.cert_serial,
            "cert_not_after": fmt_time(row.cert_not_after), "enrolled_at": fmt_time(row.enrolled_at),
            "hawkbit_target_at": fmt_time(row.hawkbit_target_at),
            "decommissioned_at": fmt_time(row.decommissioned_at),
            "site": site, "last_seen_at": fmt_time(row.last_seen_at),
            "reenroll_window_until": if window_open { fmt_time(row.reenroll_until) } else { "-".into() },
            "certificates": certs.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("device:            {}", row.id);
    println!("state:             {}", row.state);
    println!("site:              {}", site.as_deref().unwrap_or("-"));
    println!("address:           {}", address.as_deref().unwrap_or("-"));
    println!(
        "wireguard key:     {}",
        row.wg_public_key.as_deref().unwrap_or("-")
    );
    println!(
        "certificate:       {} (not after {})",
        row.cert_serial.as_deref().unwrap_or("-"),
        fmt_time(row.cert_not_after)
    );
    println!("profile revision:  {}", row.profile_revision);
    println!("enrolled at:       {}", fmt_time(row.enrolled_at));
    println!(
        "hostname:          {}",
        row.hostname.as_deref().unwrap_or("-")
    );
    println!(
        "hawkBit target:    {}",
        row.hawkbit_target_at.map_or_else(
            || "-".to_owned(),
            |t| format!("since {}", fmt_time(Some(t)))
        )
    );
    if row.decommissioned_at.is_some() {
        println!("decommissioned at: {}", fmt_time(row.decommissioned_at));
    }
    println!(
        "re-enroll window:  {}",
        if window_open {
            format!("open until {}", fmt_time(row.reenroll_until))
        } else {
            "closed".into()
        }
    );
    let counts: Vec<String> = certs.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "certificates:      {}",
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    );
    Ok(())
}

async fn allow_reenroll(db: &Db, id: &DeviceId, window: &str) -> Result<(), CliError> {
    let dur = parse_duration(window).map_err(|e| CliError::Usage(format!("--for: {e}")))?;
    let now = unix_now();
    let until = now.saturating_add(i64::try_from(dur.as_secs()).unwrap_or(i64::MAX));
    let mut tx = db.begin_write().await?;
    let row = devices::get(&mut tx, id.as_str())
        .await?
        .ok_or_else(|| CliError::Failed(format!("device {id} is not registered")))?;
    if row.state == devices::STATE_REVOKED {
        return Err(CliError::Failed(format!(
            "device {id} is revoked; a revoked device never enrolls again"
        )));
    }
    if row.is_decommissioned() {
        return Err(CliError::Failed(format!(
            "device {id} is decommissioned; a decommissioned device never enrolls again"
        )));
    }
    if row.state != devices::STATE_ENROLLED {
        return Err(CliError::Failed(format!(
            "device {id} has never enrolled; it can enroll without a re-enrollment window"
        )));
    }
    devices::set_reenroll_window(&mut tx, id.as_str(), until, now).await?;
    let ev = audit::AuditEvent::new(
        operator(),
        "device.reenroll_allowed",
        Some(id.as_str()),
        Some("cli".into()),
        json!({ "until": fmt_time(Some(until)) }),
    );
    audit::record(&mut tx, &ev).await?;
    tx.commit()
        .await
        .doing("committing a re-enrollment window")?;
    println!(
        "device {id} may re-enroll with new keys until {}",
        fmt_time(Some(until))
    );
    Ok(())
}

async fn revoke(db: &Db, id: &DeviceId, reason: Option<String>) -> Result<(), CliError> {
    let now = unix_now();
    let mut tx = db.begin_write().await?;
    let row = devices::get(&mut tx, id.as_str())
        .await?
        .ok_or_else(|| CliError::Failed(format!("device {id} is not registered")))?;
    if row.is_decommissioned() {
        println!("device {id} is decommissioned; nothing to revoke");
        return Ok(());
    }
    if !devices::revoke(&mut tx, id.as_str(), now).await? {
        println!("device {id} was already revoked");
        return Ok(());
    }
    let serial = certificates::revoke_active(&mut tx, id.as_str(), now).await?;
    // The serving process notices the bump and removes the peer from the gateway.
    peer_set::bump(&mut tx).await?;
    let ev = audit::AuditEvent::new(
        operator(),
        "device.revoked",
        Some(id.as_str()),
        Some("cli".into()),
        json!({
            "reason": reason,
            "previous_state": row.state,
            "cert_serial": serial,
            "wg_public_key": row.wg_public_key,
        }),
    );
    audit::record(&mut tx, &ev).await?;
    tx.commit().await.doing("committing a revocation")?;
    println!("device {id} revoked");
    if let Some(serial) = serial {
        println!("certificate {serial} marked revoked");
    }
    if let Some(key) = row.wg_public_key {
        println!(
            "gateway peer {key}: a running nexa-server with a managed gateway removes it within \
             about a second; an external gateway must remove it itself \
             (wg set IFACE peer {key} remove)"
        );
    }
    Ok(())
}

pub async fn audit(db: &Db, args: AuditArgs) -> Result<(), CliError> {
    let device = args.device.as_deref().map(parse_id).transpose()?;
    let since_ms = args.since.as_deref().map(parse_since).transpose()?;
    let mut conn = db.acquire().await?;
    let events = audit::query(
        &mut conn,
        &audit::AuditFilter {
            device: device.map(|d| d.to_string()),
            actor: args.actor.clone(),
            action: args.action.clone(),
            since_ms,
            until_ms: None,
            limit: Some(args.limit.max(1)),
        },
    )
    .await?;
    for ev in events {
        if args.json {
            println!("{}", serde_json::to_string(&ev).unwrap_or_default());
        } else {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ev.at_ms) * 1_000_000)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_default();
            println!(
                "{at} {:<28} {:<24} {} {}",
                ev.action,
                ev.actor,
                ev.device_id.as_deref().unwrap_or("-"),
                ev.detail
            );
        }
    }
    Ok(())
}
