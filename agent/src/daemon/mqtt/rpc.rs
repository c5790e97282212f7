//! What the daemon does with messages from ThingsBoard: shared-attribute updates (the
//! telemetry interval) and server-side RPC (`status`, `sync`, anything else answered with an
//! error).

use rumqttc::QoS;
use serde_json::{Value, json};

use crate::daemon::{Daemon, Tunnel};
use crate::status::status;
use crate::thingsboard::{self as tb, RpcRequest};

impl Daemon {
    pub(super) async fn on_message(&mut self, topic: &str, payload: &[u8]) {
        if topic == tb::ATTRIBUTES {
            match tb::parse_shared(payload) {
                Ok(update) => {
                    if let Some(i) = update.telemetry_interval {
                        self.mqtt.interval = i;
                    }
                    if update.interval_reset {
                        self.mqtt.interval = self
                            .cfg
                            .telemetry_interval()
                            .unwrap_or(crate::config::DEFAULT_TELEMETRY_INTERVAL);
                    }
                    if !update.ignored.is_empty() {
                        tracing::debug!(keys = ?update.ignored, "shared attributes not used by the agent");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "shared attribute update ignored"),
            }
            return;
        }
        match tb::parse_rpc(topic, payload) {
            Ok(Some(req)) => {
                let answer = self.rpc(&req).await;
                self.respond(&req.id, &answer);
            }
            Ok(None) => tracing::debug!(topic, "message on a topic the agent does not use"),
            Err(e) => {
                tracing::warn!(error = %e, "bad RPC request");
                // A request with an id gets an error answer, so the caller does not time out.
                if let tb::TbError::RpcBody { id } = &e {
                    self.respond(id, &tb::rpc_error("bad_request", &e.to_string()));
                }
            }
        }
    }

    fn respond(&self, id: &str, answer: &Value) {
        let topic = tb::rpc_response_topic(id);
        if let Err(e) =
            self.mqtt
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, answer.to_string())
        {
            tracing::warn!(error = %e, id, "cannot queue the RPC response");
        }
    }

    async fn rpc(&mut self, req: &RpcRequest) -> Value {
        tracing::info!(method = %req.method, id = %req.id, "RPC");
        match req.method.as_str() {
            "status" => match status(&self.cfg, &self.opts.sysroot) {
                Ok(st) => {
                    let mut v = serde_json::to_value(&st).unwrap_or(Value::Null);
                    v["tunnel"] = json!(self.tunnel.label());
                    v
                }
                Err(e) => tb::rpc_error("status_failed", &e.to_string()),
            },
            "sync" => {
                let identity = self.sync().await;
                match (&self.tunnel, identity) {
                    (_, Err(why)) => tb::rpc_error("certs_invalid", &why),
                    (Tunnel::Degraded(why), _) => tb::rpc_error("tunnel_degraded", why),
                    (other, Ok(changed)) => json!({
                        "tunnel": other.label(),
                        "serial": self.flag.serial,
                        "identityChanged": changed,
                    }),
                }
            }
            other => tb::rpc_error(
                "unknown_method",
                &format!("method {other:?} is not supported; use status or sync"),
            ),
        }
    }
}
