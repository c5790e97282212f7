//! `nexa-agent run`: the long-lived process. Enrolls if needed, brings the tunnel up (and keeps
//! retrying if it cannot: degraded, not dead), then holds an MQTT session to the broker with the
//! device certificate and speaks the ThingsBoard device API: client attributes on every connect,
//! telemetry every interval (queued while offline), shared-attribute updates, server-side RPC.
//! The certificate is renewed when due (`daemon::renewal`). The broker being down never ends
//! the process; SIGTERM/SIGINT end it within a second.
//!
//! The MQTT part (`daemon::mqtt`, feature `mqtt`) and the update engine (`daemon::ota`,
//! feature `ota`) are each one module behind a few calls; a build without the feature gets
//! a stand-in (`mqtt_off.rs`, `ota_off.rs`) that does nothing and says why in the log and in
//! `status`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nexa_proto::DeviceId;
use nexa_wg::{KernelLink, WgLink};
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;
use crate::certs::{CertsDir, Current, EnrolledFlag};
use crate::config::AgentConfig;
use crate::enroll::approval::ApprovalWait;
use crate::enroll::{EnrollOptions, EnrollOutcome, enroll};
use crate::error::AgentError;
use crate::runstate::{Part, RunState, StateFile};
use crate::sdnotify::Notifier;
use crate::tunnel;

#[cfg_attr(not(feature = "mqtt"), path = "mqtt_off.rs")]
mod mqtt;
#[cfg_attr(not(feature = "ota"), path = "ota_off.rs")]
mod ota;
mod renewal;

use renewal::RenewEvent;

/// How the daemon behaves; defaults suit a device.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub sysroot: PathBuf,
    /// Where `/proc` is (tests point it at fixtures).
    pub proc_root: PathBuf,
    /// Telemetry samples kept while offline.
    pub queue_capacity: usize,
    /// How often a tunnel that could not be brought up is retried.
    pub tunnel_retry: Duration,
    /// How often `/certs` is looked at for a new enrollment (a field tech's `enroll --force`).
    pub certs_check: Duration,
    /// Longest sleep of the renewal task before it looks at the clock and `/certs` again.
    pub renew_recheck: Duration,
    /// Wait after a refused renewal, a failed re-enrollment or a renewed pair the broker did
    /// not accept.
    pub renew_after_refusal: Duration,
    /// How long the broker has to accept a renewed pair.
    pub renew_probe_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            sysroot: PathBuf::from("/"),
            proc_root: PathBuf::from("/proc"),
            queue_capacity: 1000,
            tunnel_retry: Duration::from_secs(60),
            certs_check: Duration::from_secs(30),
            renew_recheck: Duration::from_secs(600),
            renew_after_refusal: Duration::from_secs(900),
            renew_probe_timeout: crate::renew::probe::DEFAULT_TIMEOUT,
        }
    }
}

/// The tunnel as the daemon last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tunnel {
    Up,
    Disabled,
    Degraded(String),
    /// The bridge revoked the device: down, and never brought up again by this process.
    Revoked(String),
}

impl Tunnel {
    fn label(&self) -> &'static str {
        match self {
            Tunnel::Up => "up",
            Tunnel::Disabled => "disabled",
            Tunnel::Degraded(_) => "degraded",
            Tunnel::Revoked(_) => "revoked",
        }
    }
}

struct Daemon {
    cfg: AgentConfig,
    opts: RunOptions,
    /// Delays between reconnect attempts (full jitter), from configuration.
    reconnect: Backoff,
    certs: CertsDir,
    link: Arc<dyn WgLink>,
    flag: EnrolledFlag,
    tunnel: Tunnel,
    /// The MQTT session to the broker.
    mqtt: mqtt::Session,
    state_file: StateFile,
    /// The update engine (or why it is off).
    ota: ota::Updates,
    /// A new enrollment (certificate, hawkBit token) awaits an idle engine to be taken up.
    ota_restart: bool,
    /// The certificate renewal task.
    renewal: Option<tokio::task::JoinHandle<()>>,
    /// Where the renewal task sends its requests.
    renew_tx: mpsc::Sender<RenewEvent>,
    /// The serial in use; the renewal task looks again when it changes.
    serial: watch::Sender<String>,
}

/// Runs until SIGTERM/SIGINT. Errors only for what waiting cannot fix: bad configuration, a
/// refused enrollment, unusable certificate material.
pub async fn run(cfg: AgentConfig, opts: RunOptions) -> Result<(), AgentError> {
    // Configuration mistakes surface before anything else happens.
    let mqtt_settings = mqtt::Settings::check(&cfg)?;
    // Checked alone now; what the bridge announces is added after enrollment.
    ota::Updates::check(&cfg)?;
    let (min, max) = cfg.reconnect_bounds()?;
    let reconnect = Backoff {
        initial: min,
        max,
        give_up_after: Duration::MAX,
    };

    // Until enrolled there is nothing else to do, so the daemon waits as long as it takes:
    // an unreachable bridge with the reconnect backoff, an enrollment held for an
    // administrator's approval for ever (polling with the same keys, never exiting). The
    // configuration is sound, so the service counts as started (READY=1, a finite
    // TimeoutStartSec= holds), and the watchdog is fed for the whole wait.
    let notifier = Notifier::from_env();
    notifier.notify("READY=1");
    notifier.notify("STATUS=enrolling (or checking the enrollment in the certs directory)");
    let keepalive = notifier.keepalive();
    let outcome = enroll(
        &cfg,
        &EnrollOptions::new(
            false,
            reconnect,
            opts.sysroot.clone(),
            ApprovalWait::forever(),
        ),
    )
    .await?;
    drop(keepalive);
    let (id, flag) = match outcome {
        EnrollOutcome::AlreadyEnrolled { id, flag, .. } => (id, flag),
        EnrollOutcome::Enrolled { id, flag, .. } => {
            tracing::info!(device = %id, address = %flag.address, "enrolled");
            (id, flag)
        }
    };

    let certs = CertsDir::new(&cfg.certs_dir);
    let mqtt = mqtt::Session::open(mqtt_settings, &id, &flag, &certs, &cfg, &opts)?;
    let (renew_tx, mut renew_rx) = mpsc::channel(1);
    let serial = watch::Sender::new(flag.serial.clone());

    let mut d = Daemon {
        opts: opts.clone(),
        reconnect,
        certs,
        link: Arc::new(KernelLink::new()),
        flag,
        tunnel: if cfg.manage_wireguard {
            Tunnel::Degraded("not tried yet".into())
        } else {
            Tunnel::Disabled
        },
        mqtt,
        state_file: StateFile::new(&cfg.state_dir),
        ota: ota::Updates::default(),
        ota_restart: false,
        renewal: None,
        renew_tx,
        serial,
        cfg,
    };
    d.save_state();
    match crate::renew::revoked::read(&d.certs) {
        Ok(Some(revoked)) => d.on_revoked(&revoked).await,
        Ok(None) => d.tunnel_up().await,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the revocation marker; the tunnel stays down");
            d.tunnel = Tunnel::Degraded(e.to_string());
        }
    }
    d.start_renewal();
    let mut ota_status = d.start_ota();
    tracing::info!(device = %id, broker = %d.mqtt, "agent running");

    let (mut term, mut int, mut hup) = signals()?;
    notifier.notify(&format!("STATUS=enrolled as {id}; connecting"));
    let mut running_sent = false;
    // Without a watchdog the ticker still runs, rarely, and sends nothing.
    let mut watchdog = tokio::time::interval(
        notifier
            .watchdog_every()
            .unwrap_or(Duration::from_secs(3600)),
    );
    let mut tunnel_retry = tokio::time::interval(d.opts.tunnel_retry);
    tunnel_retry.tick().await;
    let mut certs_check = tokio::time::interval(d.opts.certs_check);
    certs_check.tick().await;

    loop {
        // Running once the first connection attempt has an outcome, either way.
        if !running_sent && d.mqtt.settled() {
            notifier.notify(&format!("STATUS=running as {id}"));
            running_sent = true;
        }
        tokio::select! {
            incoming = d.mqtt.next() => d.on_mqtt(incoming).await,
            _ = watchdog.tick(), if notifier.watchdog_every().is_some() => notifier.notify("WATCHDOG=1"),
            _ = tunnel_retry.tick(), if matches!(d.tunnel, Tunnel::Degraded(_)) => d.tunnel_up().await,
            _ = certs_check.tick() => d.check_enrollment(),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: re-reading /certs");
                if let Err(why) = d.sync().await {
                    tracing::warn!(error = %why, "the enrollment in /certs is not usable; keeping the current one");
                }
            }
            changed = async { match ota_status.as_mut() { Some(rx) => rx.changed().await, None => std::future::pending().await } } => {
                if changed.is_err() {
                    ota_status = None;
                }
                d.save_state();
            }
            Some(ev) = renew_rx.recv() => match ev {
                RenewEvent::Staged { staged, lock, done } => {
                    // Up to the probe timeout: keep the watchdog fed and SIGTERM prompt.
                    let adopt = d.adopt(&id, staged);
                    tokio::pin!(adopt);
                    let adopted = loop {
                        tokio::select! {
                            adopted = &mut adopt => break Some(adopted),
                            _ = watchdog.tick(), if notifier.watchdog_every().is_some() => notifier.notify("WATCHDOG=1"),
                            _ = term.recv() => break None,
                            _ = int.recv() => break None,
                        }
                    };
                    let Some(adopted) = adopted else { break };
                    drop(lock);
                    let _ = done.send(adopted);
                }
                RenewEvent::ReEnrolled => {
                    if let Err(why) = d.sync().await {
                        tracing::warn!(error = %why, "the re-enrollment in /certs is not usable yet");
                    }
                }
                RenewEvent::Revoked(revoked) => d.on_revoked(&revoked).await,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        d.rebuild_session().await;
        if d.ota_restart && d.ota.idle() {
            d.ota_restart = false;
            d.ota.stop();
            tracing::info!("restarting the update engine with the new enrollment");
            ota_status = d.start_ota();
        }
    }

    tracing::info!("stopping");
    d.ota.stop();
    if let Some(t) = &d.renewal {
        t.abort();
    }
    notifier.notify("STOPPING=1");
    d.state_file.remove();
    d.close_session().await;
    Ok(())
}

type Signals = (
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
);

fn signals() -> Result<Signals, AgentError> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let hup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;
    Ok((term, int, hup))
}

impl Daemon {
    /// Re-reads `/certs` (taking up a new enrollment) and reconciles the tunnel.
    /// `Ok(true)`: the identity changed and the MQTT session is being rebuilt.
    async fn sync(&mut self) -> Result<bool, String> {
        let identity = self.reload_identity();
        self.tunnel_up().await;
        identity
    }

    /// The periodic look at `/certs`: only the small flag is read unless it changed.
    fn check_enrollment(&mut self) {
        let changed = match self.certs.read_flag() {
            Ok(Some(Ok(flag))) => {
                flag.serial != self.flag.serial || flag.mqtt_url != self.flag.mqtt_url
            }
            // Missing or unreadable: a re-enrollment may be half-way; look again next time.
            Ok(_) | Err(_) => false,
        };
        if changed {
            tracing::info!("the enrollment in /certs changed");
            if let Err(why) = self.reload_identity() {
                tracing::warn!(error = %why, "the new enrollment is not usable yet; keeping the current one");
            }
        }
    }

    /// Takes up a new enrollment from `/certs` if there is one. The current identity stays in
    /// use when the directory does not hold a complete, verified set.
    fn reload_identity(&mut self) -> Result<bool, String> {
        let id = DeviceId::parse(&self.flag.device_id).map_err(|e| e.to_string())?;
        if let Err(e) = crate::renew::recover_if_idle(&self.certs) {
            tracing::warn!(error = %e, "cannot resolve an interrupted renewal");
        }
        let flag = match self.certs.check(Some(&id), None, SystemTime::now()) {
            Ok(Current::Valid { flag, .. }) => *flag,
            Ok(Current::Missing) => {
                return Err(format!(
                    "{} holds no enrollment",
                    self.cfg.certs_dir.display()
                ));
            }
            Ok(Current::Invalid { reason }) => return Err(reason),
            Err(e) => return Err(e.to_string()),
        };
        let target = self.mqtt.target(&self.cfg, &flag)?;
        if flag.serial == self.flag.serial && self.mqtt.is_current(&target) {
            return Ok(false);
        }
        tracing::info!(old = %self.flag.serial, new = %flag.serial, "new enrollment found; restarting the MQTT session");
        self.flag = flag;
        self.mqtt.retarget(target);
        self.ota_restart = true;
        self.serial.send_replace(self.flag.serial.clone());
        if matches!(self.tunnel, Tunnel::Revoked(_))
            && matches!(crate::renew::revoked::read(&self.certs), Ok(None))
        {
            tracing::info!("the device was enrolled again after its revocation");
            self.tunnel = Tunnel::Degraded("enrolled again after a revocation".into());
        }
        self.start_renewal();
        Ok(true)
    }

    async fn tunnel_up(&mut self) {
        if matches!(self.tunnel, Tunnel::Disabled | Tunnel::Revoked(_)) {
            return;
        }
        let link = self.link.clone();
        let certs = self.certs.clone();
        let name = self.cfg.wg_interface.clone();
        let result =
            tokio::task::spawn_blocking(move || tunnel::up(link.as_ref(), &certs, &name)).await;
        let next = match result {
            Ok(Ok(plan)) => {
                if !plan.is_empty() {
                    tracing::info!(interface = %self.cfg.wg_interface, changes = %plan, "WireGuard interface configured");
                }
                Tunnel::Up
            }
            Ok(Err(e)) => Tunnel::Degraded(e.to_string()),
            Err(e) => Tunnel::Degraded(format!("the tunnel task failed: {e}")),
        };
        if let Tunnel::Degraded(why) = &next
            && self.tunnel != next
        {
            tracing::warn!(interface = %self.cfg.wg_interface, error = %why, retry_s = self.opts.tunnel_retry.as_secs(), "WireGuard is degraded; MQTT carries on and the tunnel is retried");
        }
        let changed = self.tunnel != next;
        self.tunnel = next;
        if changed {
            self.save_state();
            self.announce();
        }
    }

    /// Writes what `nexa-agent status` shows about the running daemon.
    fn save_state(&mut self) {
        let tunnel = match &self.tunnel {
            Tunnel::Degraded(why) => Part::new("degraded", None, Some(why)),
            Tunnel::Revoked(why) => Part::new("revoked", None, Some(why)),
            other => Part::new(other.label(), None, None),
        };
        let st = RunState {
            pid: std::process::id(),
            updated_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            mqtt: self.mqtt.part(),
            tunnel,
            ota: self.ota.status(),
        };
        self.state_file.write(&st);
    }
}
