//! [`Monitor`]: a `busctl monitor` process recording RAUC's signals and the method calls
//! made to it, as JSON, for tests to inspect what a client (e.g. the agent) did on the bus.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::BUS_NAME;
use crate::wait_until;

/// Watches RAUC's traffic on a bus with `busctl monitor`: signals from path `/` (Completed,
/// PropertiesChanged) and method calls to RAUC (e.g. the agent's `InstallBundle` and its
/// arguments), each kept as busctl's JSON form of the message. Killed on drop.
#[derive(Debug)]
pub struct Monitor {
    child: Child,
    messages: Arc<Mutex<Vec<Value>>>,
}

impl Monitor {
    pub(super) fn start(address: &str) -> Self {
        let mut child = Command::new("busctl")
            .arg(format!("--address={address}"))
            .args(["monitor", "--json=short"])
            .arg("--match=type='signal',path='/'")
            .arg(format!(
                "--match=type='method_call',destination='{BUS_NAME}'"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run busctl monitor (Debian package systemd)");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("busctl stdout");
        let sink = Arc::clone(&messages);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("monitor messages").push(v);
                }
            }
        });
        // busctl says so on stderr once it has become a monitor.
        let stderr = child.stderr.take().expect("busctl stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let ready = loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("Monitoring bus message stream") => break true,
                Some(Ok(l)) => seen.push(l),
                _ => break false,
            }
        };
        assert!(ready, "busctl monitor did not start: {}", seen.join("\n"));
        std::thread::spawn(move || for _ in lines {});
        Self { child, messages }
    }

    /// Everything seen so far.
    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().expect("monitor messages").clone()
    }

    /// The results of the `Completed` signals seen so far (0 = success, 1 = failure).
    pub fn completed(&self) -> Vec<i64> {
        self.messages()
            .iter()
            .filter(|m| m["type"] == "signal" && m["member"] == "Completed")
            .filter_map(|m| m["payload"]["data"][0].as_i64())
            .collect()
    }

    /// Waits up to `timeout` for at least `count` `Completed` signals; returns those seen.
    pub fn wait_completed(&self, count: usize, timeout: Duration) -> Vec<i64> {
        wait_until(timeout, || self.completed().len() >= count);
        self.completed()
    }

    /// The values property `name` was changed to (PropertiesChanged), oldest first, as JSON:
    /// e.g. `"installing"` for `Operation`, `[20, "Verifying signature", 3]` for `Progress`.
    pub fn property_changes(&self, name: &str) -> Vec<Value> {
        self.messages()
            .iter()
            .filter(|m| m["type"] == "signal" && m["member"] == "PropertiesChanged")
            .filter_map(|m| m["payload"]["data"][1].get(name))
            .map(|v| v["data"].clone())
            .collect()
    }

    /// The method calls to RAUC seen so far, as `(member, arguments)`.
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.messages()
            .iter()
            .filter(|m| m["type"] == "method_call")
            .map(|m| {
                (
                    m["member"].as_str().unwrap_or_default().to_owned(),
                    m["payload"]["data"].clone(),
                )
            })
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
