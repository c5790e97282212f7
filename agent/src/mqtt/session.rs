//! An MQTT session under the device's identity: a client and event loop for a TLS
//! configuration, waiting for the broker's CONNACK (how a renewed pair is proven before it is
//! promoted), and a bounded, flushing disconnect.

use std::sync::Arc;
use std::time::Duration;

use nexa_proto::DeviceId;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, TlsConfiguration, Transport};
use tokio::time::Instant;

use crate::config::Broker;
use crate::mqtt::errors::{Failure, classify};

/// A new client and event loop for `broker`, client id = device id. Nothing is sent until the
/// event loop is polled.
pub fn open(id: &DeviceId, broker: &Broker, tls: rustls::ClientConfig) -> (AsyncClient, EventLoop) {
    let mut mqtt = MqttOptions::new(id.to_string(), broker.host.clone(), broker.port);
    mqtt.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    AsyncClient::new(mqtt, 64)
}

/// Polls `events` until the broker accepts the connection (CONNACK), the connection fails, or
/// `timeout` passes (reported as a network failure).
pub async fn wait_connected(events: &mut EventLoop, timeout: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(classify(&e)),
            Err(_) => {
                return Err(Failure::Network(format!(
                    "no answer from the broker within {} s",
                    timeout.as_secs()
                )));
            }
        }
    }
}

/// Sends what is queued, then DISCONNECT; never longer than 900 ms.
pub async fn disconnect(client: &AsyncClient, events: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(900);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, events.poll()).await {
        if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_a_network_failure_and_a_silent_one_times_out() {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let id = DeviceId::parse("dev-1").unwrap();

        // Nobody listens on a port we just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let broker = Broker::parse(&format!("mqtts://127.0.0.1:{port}")).unwrap();
        let (_client, mut events) = open(&id, &broker, config.clone());
        let e = wait_connected(&mut events, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "network", "{e:?}");

        // A listener that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let broker = Broker::parse(&format!("mqtts://127.0.0.1:{port}")).unwrap();
        let (_client, mut events) = open(&id, &broker, config);
        let held = tokio::spawn(async move {
            let (sock, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(sock);
        });
        let e = wait_connected(&mut events, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(e.message().contains("within"), "{e:?}");
        held.abort();
    }
}
