//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`): datagrams to `$NOTIFY_SOCKET`.
//! Outside systemd (no socket) every call is a no-op.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go, read once at start.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (ignored when it names another
    /// process).
    pub fn from_env() -> Self {
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok)
            .map(Duration::from_micros);
        Self::new(std::env::var("NOTIFY_SOCKET").ok(), watchdog)
    }

    pub fn new(socket: Option<String>, watchdog: Option<Duration>) -> Self {
        Self {
            socket: socket.filter(|s| !s.is_empty()),
            watchdog,
        }
    }

    /// How often to send `WATCHDOG=1`: half the watchdog timeout, as systemd advises.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Feeds the watchdog from a task of its own until the returned guard is dropped: for a
    /// wait outside the main loop (enrolling). Without a watchdog, nothing runs.
    pub fn keepalive(&self) -> Keepalive {
        let task = self.watchdog_every().map(|every| {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    me.notify("WATCHDOG=1");
                }
            })
        });
        Keepalive { task }
    }

    /// Sends `state` (e.g. `READY=1`); errors are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(socket) = &self.socket else { return };
        let result = (|| {
            let addr = match socket.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes())?
                }
                None => SocketAddr::from_pathname(PathBuf::from(socket))?,
            };
            UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)
        })();
        if let Err(e) = result {
            tracing::warn!(socket, error = %e, "cannot notify systemd");
        }
    }
}

/// Stops its watchdog task when dropped.
#[derive(Debug)]
pub struct Keepalive {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_the_socket_and_is_a_no_op_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(
            Some(path.display().to_string()),
            Some(Duration::from_secs(60)),
        );
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(30)));
        let off = Notifier::new(None, None);
        off.notify("READY=1");
        assert_eq!(off.watchdog_every(), None);
    }
}
