//! The daemon's MQTT part (feature `mqtt`): the session to the broker under the device's
//! identity and what the main loop does with it — reconnect with backoff and jitter,
//! attributes on every connect, telemetry every interval (queued while offline), shared
//! attributes and RPC (`rpc`), the rebuild after a new enrollment, and the proof of a renewed
//! pair (`adopt`). `session` opens the client, `publish` builds attributes and samples, `facts`
//! are the system facts reported once. Without the feature `mqtt_off.rs` stands in.

mod facts;
mod publish;
mod rpc;
mod session;

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use nexa_proto::DeviceId;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Packet, QoS};
use serde_json::Value;
use tokio::time::{Interval, Sleep};

use super::renewal::Adoption;
use super::{Daemon, RunOptions};
use crate::certs::{CertsDir, EnrolledFlag};
use crate::config::{AgentConfig, Broker};
use crate::error::AgentError;
use crate::mqtt::errors::{Failure, classify};
use crate::mqtt::queue::OfflineQueue;
use crate::renew::probe;
use crate::renew::stage::{self, Staged, rfc3339};
use crate::runstate::Part;
use crate::thingsboard as tb;
use facts::{boot_slot, os_release};
use session::{disconnect, session};

/// The MQTT settings checked before enrollment.
#[derive(Debug)]
pub(super) struct Settings {
    interval: Duration,
}

impl Settings {
    /// The configured broker (if any) and the telemetry interval must be usable.
    pub fn check(cfg: &AgentConfig) -> Result<Self, AgentError> {
        cfg.configured_broker()?;
        Ok(Self {
            interval: cfg.telemetry_interval()?,
        })
    }
}

/// What the session has for the main loop.
pub(super) enum Incoming {
    Event(Result<Event, ConnectionError>),
    /// Time for a telemetry sample.
    Telemetry,
}

/// The session and its state.
pub(super) struct Session {
    id: DeviceId,
    broker: Broker,
    client: AsyncClient,
    events: EventLoop,
    connected: bool,
    queue: OfflineQueue<Value>,
    /// The telemetry interval in force (a shared attribute may change it).
    interval: Duration,
    telemetry: Interval,
    last_failure: Option<Failure>,
    /// Failed connection attempts in a row, and the wait before the next one.
    attempt: u32,
    backoff: Option<Pin<Box<Sleep>>>,
    /// Set when the session must be rebuilt (new certificate or broker).
    rebuild: bool,
    /// PRETTY_NAME of the running OS, read once (it does not change while the agent runs).
    os_release: Option<String>,
    /// The RAUC slot the system booted from (`rauc.slot=` on the kernel command line).
    boot_slot: Option<String>,
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.broker.fmt(f)
    }
}

impl Session {
    /// A session for the enrolled identity, to the configured broker or the one the bridge
    /// announced; nothing is sent until the main loop polls it.
    pub fn open(
        settings: Settings,
        id: &DeviceId,
        flag: &EnrolledFlag,
        certs: &CertsDir,
        cfg: &AgentConfig,
        opts: &RunOptions,
    ) -> Result<Self, AgentError> {
        let broker = cfg.broker(flag.mqtt_url.as_deref())?;
        let (client, events) = session(id, &broker, certs, cfg)?;
        Ok(Self {
            id: id.clone(),
            broker,
            client,
            events,
            connected: false,
            queue: OfflineQueue::new(opts.queue_capacity),
            interval: settings.interval,
            telemetry: tokio::time::interval(settings.interval),
            last_failure: None,
            attempt: 0,
            backoff: None,
            rebuild: false,
            os_release: os_release(&opts.sysroot),
            boot_slot: boot_slot(&opts.proc_root),
        })
    }

    /// The next event of the connection (after the reconnect wait, if one is running), or
    /// the telemetry tick. Cancel-safe: the main loop selects on it.
    pub async fn next(&mut self) -> Incoming {
        let Self {
            events,
            backoff,
            telemetry,
            ..
        } = self;
        tokio::select! {
            ev = async {
                if let Some(wait) = backoff.as_mut() {
                    wait.await;
                    *backoff = None;
                }
                events.poll().await
            } => Incoming::Event(ev),
            _ = telemetry.tick() => Incoming::Telemetry,
        }
    }

    /// The first connection attempt has an outcome, either way.
    pub fn settled(&self) -> bool {
        self.connected || self.backoff.is_some()
    }

    /// The session's state for `status`.
    pub fn part(&self) -> Part {
        match (&self.last_failure, self.connected) {
            (_, true) => Part::new("connected", None, None),
            (Some(Failure::Network(m)), false) => Part::new("connecting", Some("network"), Some(m)),
            (Some(f), false) => Part::new("refused", Some(f.code()), Some(f.message())),
            (None, false) => Part::new("connecting", None, None),
        }
    }

    /// The broker a new enrollment (`flag`) would use.
    pub fn target(&self, cfg: &AgentConfig, flag: &EnrolledFlag) -> Result<Broker, String> {
        cfg.broker(flag.mqtt_url.as_deref())
            .map_err(|e| e.to_string())
    }

    pub fn is_current(&self, broker: &Broker) -> bool {
        *broker == self.broker
    }

    /// Rebuilds the session for `broker` and the new enrollment (after this loop turn).
    pub fn retarget(&mut self, broker: Broker) {
        self.broker = broker;
        self.rebuild = true;
    }

    /// Applies an interval a shared attribute set (the ticker restarts with it).
    fn take_interval_change(&mut self) -> Option<Duration> {
        if self.telemetry.period() == self.interval {
            return None;
        }
        self.telemetry =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        Some(self.interval)
    }
}

impl Daemon {
    /// Handles what `Session::next` produced.
    pub(super) async fn on_mqtt(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Telemetry => self.telemetry().await,
            Incoming::Event(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                self.mqtt.attempt = 0;
                self.on_connect();
            }
            Incoming::Event(Ok(Event::Incoming(Packet::Publish(p)))) => {
                self.on_message(&p.topic, &p.payload).await;
                if let Some(new) = self.mqtt.take_interval_change() {
                    tracing::info!(interval_s = new.as_secs(), "telemetry interval changed");
                }
            }
            Incoming::Event(Ok(_)) => {}
            Incoming::Event(Err(e)) => {
                self.mqtt.connected = false;
                let attempt = self.mqtt.attempt;
                self.on_failure(classify(&e), attempt);
                let delay = self.reconnect.delay(attempt, None);
                self.mqtt.attempt = attempt.saturating_add(1);
                self.mqtt.backoff = Some(Box::pin(tokio::time::sleep(delay)));
            }
        }
    }

    fn on_connect(&mut self) {
        self.mqtt.connected = true;
        match self.mqtt.last_failure.take() {
            Some(f) => tracing::info!(after = f.code(), "connected to the broker again"),
            None => tracing::info!("connected to the broker"),
        }
        for topic in [tb::ATTRIBUTES, tb::RPC_REQUESTS] {
            if let Err(e) = self.mqtt.client.try_subscribe(topic, QoS::AtLeastOnce) {
                tracing::warn!(topic, error = %e, "cannot subscribe");
            }
        }
        self.publish_attributes();
        self.flush_queue();
        self.save_state();
    }

    fn on_failure(&mut self, failure: Failure, attempt: u32) {
        let same = self.mqtt.last_failure.as_ref() == Some(&failure);
        match &failure {
            Failure::Network(m) if attempt > 0 => {
                tracing::debug!(error = %m, "broker still unreachable")
            }
            Failure::Network(m) => {
                tracing::warn!(error = %m, "broker unreachable; reconnecting with backoff")
            }
            other if same => {
                tracing::debug!(code = other.code(), error = %other.message(), "connection still refused")
            }
            other => {
                tracing::error!(code = other.code(), error = %other.message(), "connection refused")
            }
        }
        let changed = !same;
        self.mqtt.last_failure = Some(failure);
        if changed {
            self.save_state();
        }
    }

    /// The tunnel changed: the attributes say so at once when connected.
    pub(super) fn announce(&mut self) {
        if self.mqtt.connected {
            self.publish_attributes();
        }
    }

    /// Rebuilds the session if a new certificate or broker asked for it.
    pub(super) async fn rebuild_session(&mut self) {
        if !self.mqtt.rebuild {
            return;
        }
        self.mqtt.rebuild = false;
        let m = &mut self.mqtt;
        match session(&m.id, &m.broker, &self.certs, &self.cfg) {
            Ok((client, new_events)) => {
                if m.connected {
                    // Answers queued on the old session (the `sync` reply) go out first.
                    disconnect(&m.client, &mut m.events).await;
                }
                m.client = client;
                m.events = new_events;
                m.connected = false;
                m.last_failure = None;
                m.attempt = 0;
                m.backoff = None;
                self.save_state();
                tracing::info!(serial = %self.flag.serial, broker = %self.mqtt.broker, "MQTT session restarted with the new enrollment");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot use the new certificate for MQTT; the old session carries on")
            }
        }
    }

    /// The clean stop: what is queued goes out, then DISCONNECT.
    pub(super) async fn close_session(&mut self) {
        if self.mqtt.connected {
            disconnect(&self.mqtt.client, &mut self.mqtt.events).await;
        }
    }

    /// Proves a staged pair by reconnecting the MQTT session with it, then promotes it (the
    /// caller holds the certs lock). Unless the new pair and its session are in use, the
    /// current pair stays and the session is rebuilt with it.
    pub(super) async fn adopt(&mut self, id: &DeviceId, staged: Staged) -> Adoption {
        if self.mqtt.connected {
            // The broker allows one session per client id: the old one goes first.
            disconnect(&self.mqtt.client, &mut self.mqtt.events).await;
            self.mqtt.connected = false;
        }
        let proof = probe::connect_with(
            id,
            &self.mqtt.broker,
            &staged.files,
            self.cfg.mqtt_ca.as_deref(),
            self.opts.renew_probe_timeout,
        )
        .await;
        let (client, new_events) = match proof {
            Ok(session) => session,
            Err(e) => {
                let outcome = match &e {
                    probe::ProbeError::Connect(Failure::Network(_)) => Adoption::Inconclusive,
                    _ => Adoption::Rejected,
                };
                tracing::error!(error = %e, serial = %staged.facts.serial_hex, "the renewed certificate could not connect to the broker; discarding it and keeping the current one");
                if let Err(e) = stage::discard(&self.certs) {
                    tracing::warn!(error = %e, "cannot remove the staged certificate");
                }
                self.mqtt.rebuild = true;
                return outcome;
            }
        };
        if let Err(e) = stage::promote(&self.certs, &staged) {
            tracing::error!(error = %e, "cannot promote the renewed certificate");
            if let Err(e) = stage::recover(&self.certs) {
                tracing::error!(error = %e, "cannot resolve the interrupted promotion");
            }
            self.mqtt.rebuild = true;
            return Adoption::Rejected;
        }
        match self.certs.read_flag() {
            Ok(Some(Ok(flag))) => self.flag = flag,
            _ => tracing::warn!("the enrolled flag is unreadable after the renewal"),
        }
        tracing::info!(serial = %staged.facts.serial_hex, not_after = %rfc3339(staged.facts.not_after), "certificate renewed; the MQTT session uses it");
        self.mqtt.client = client;
        self.mqtt.events = new_events;
        self.mqtt.last_failure = None;
        self.mqtt.attempt = 0;
        self.mqtt.backoff = None;
        self.ota_restart = true;
        self.serial.send_replace(self.flag.serial.clone());
        self.on_connect();
        Adoption::InUse
    }
}
