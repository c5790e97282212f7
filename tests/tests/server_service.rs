//! `nexa-server serve` as nexa-server.service runs it (`Type=notify`, `WatchdogSec=`): the
//! notify datagrams a real systemd would receive, on a socket of the test's own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nexa_testkit::{TestServer, api};

/// The notify socket systemd would pass in `NOTIFY_SOCKET`.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The next datagram, as its `KEY=VALUE` lines.
    fn next(&self) -> Vec<String> {
        let mut buf = [0u8; 512];
        let n = self.socket.recv(&mut buf).expect("a notify datagram");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn ready_once_listening_fed_watchdog_and_stopping_on_sigterm() {
    let notify = NotifySocket::bind();
    let path = notify.path.display().to_string();
    let mut server = TestServer::start_with(
        &[],
        &[
            ("NOTIFY_SOCKET", path.as_str()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );

    let ready = notify.next();
    assert_eq!(ready[0], "READY=1", "{ready:?}");
    let status = format!("STATUS=serving on https://127.0.0.1:{}", server.port);
    assert!(ready.contains(&status), "{ready:?}, want {status}");
    // READY=1 comes after the bind: the API answers.
    let health = api::get(&server, "/healthz", None);
    assert_eq!(health.status, 200, "after READY=1; log:\n{}", server.log());

    // WATCHDOG_USEC 600 ms: a ping every 300 ms.
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        let got = notify.next();
        assert_eq!(got, ["WATCHDOG=1"], "{got:?}");
        pings += 1;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "3 pings in {took:?}"
    );

    let status = server
        .terminate(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{}", server.log()));
    assert!(status.success(), "{status:?}; log:\n{}", server.log());
    let mut stopping = notify.next();
    while stopping == ["WATCHDOG=1"] {
        stopping = notify.next();
    }
    assert_eq!(
        stopping,
        ["STOPPING=1", "STATUS=stopping: finishing open requests"]
    );
}

#[test]
fn a_watchdog_for_another_process_is_not_fed() {
    let notify = NotifySocket::bind();
    let path = notify.path.display().to_string();
    let mut server = TestServer::start_with(
        &[],
        &[
            ("NOTIFY_SOCKET", path.as_str()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    assert_eq!(notify.next()[0], "READY=1");
    notify
        .socket
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut buf = [0u8; 512];
    let got = notify.socket.recv(&mut buf);
    assert!(
        got.is_err(),
        "unexpected datagram {:?}",
        got.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );
    assert!(server.terminate(Duration::from_secs(15)).is_some());
}
