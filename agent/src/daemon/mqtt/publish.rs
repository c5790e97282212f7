//! The ThingsBoard device API side of the daemon: client attributes, telemetry samples (queued
//! while offline).

use std::time::SystemTime;

use rumqttc::QoS;
use serde_json::{Value, json};

use crate::daemon::{Daemon, Tunnel};
use crate::telemetry;
use crate::thingsboard as tb;

impl Daemon {
    pub(super) fn attributes(&mut self) -> Value {
        let mut attrs = json!({
            "deviceId": self.flag.device_id,
            "agentVersion": env!("CARGO_PKG_VERSION"),
            "wgAddress": self.flag.address,
            "certNotAfter": self.flag.not_after,
            "tunnel": self.tunnel.label(),
        });
        if let Some(os) = &self.mqtt.os_release {
            attrs["osRelease"] = json!(os);
        }
        if let Some(slot) = &self.mqtt.boot_slot {
            attrs["raucBootSlot"] = json!(slot);
        }
        if let Tunnel::Degraded(why) = &self.tunnel {
            attrs["tunnelError"] = json!(why);
        }
        let dropped = self.mqtt.queue.take_dropped();
        if dropped > 0 {
            attrs["telemetryDropped"] = json!(dropped);
        }
        attrs
    }

    pub(super) fn publish_attributes(&mut self) {
        let attrs = self.attributes();
        if let Err(e) =
            self.mqtt
                .client
                .try_publish(tb::ATTRIBUTES, QoS::AtLeastOnce, false, attrs.to_string())
        {
            tracing::warn!(error = %e, "cannot queue the attributes");
        }
    }

    pub(super) fn flush_queue(&mut self) {
        while let Some(item) = self.mqtt.queue.pop() {
            let payload = item.to_string();
            if self
                .mqtt
                .client
                .try_publish(tb::TELEMETRY, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                self.mqtt.queue.push_front(item);
                break;
            }
        }
    }

    pub(super) async fn telemetry(&mut self) {
        let link = self.link.clone();
        let name = self.cfg.wg_interface.clone();
        let wg = if self.tunnel == Tunnel::Up {
            tokio::task::spawn_blocking(move || link.read(&name).ok().flatten())
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let sample = telemetry::sample(&self.opts.proc_root, wg.as_ref(), SystemTime::now());
        self.mqtt.queue.push(tb::telemetry(now_ms(), &sample));
        if self.mqtt.connected {
            self.flush_queue();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
