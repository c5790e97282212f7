//! Device figures for telemetry, read from `/proc` (under a configurable root, so tests use
//! fixture files) and from the WireGuard interface's state.

use std::path::Path;
use std::time::SystemTime;

use nexa_wg::InterfaceState;
use serde::Serialize;

/// One telemetry sample. Absent figures (a file that could not be read) are left out of the
/// JSON rather than sent as zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_1m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_5m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_15m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_total_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_available_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wg_rx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wg_tx_bytes: Option<u64>,
    /// Seconds since the last handshake with the gateway; absent if there never was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wg_handshake_age_s: Option<u64>,
}

/// Seconds since boot, from `/proc/uptime` ("12345.67 54321.00").
pub fn uptime(proc_root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(proc_root.join("uptime")).ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

/// The three load averages, from `/proc/loadavg` ("0.42 0.30 0.25 1/123 4567").
pub fn loadavg(proc_root: &Path) -> Option<(f64, f64, f64)> {
    let text = std::fs::read_to_string(proc_root.join("loadavg")).ok()?;
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    match (it.next()?, it.next()?, it.next()?) {
        (Ok(a), Ok(b), Ok(c)) => Some((a, b, c)),
        _ => None,
    }
}

/// (MemTotal, MemAvailable) in KiB, from `/proc/meminfo`.
pub fn meminfo(proc_root: &Path) -> (Option<u64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string(proc_root.join("meminfo")) else {
        return (None, None);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// A sample from `/proc` under `proc_root` and the interface state (if the tunnel is up).
pub fn sample(proc_root: &Path, wg: Option<&InterfaceState>, now: SystemTime) -> Sample {
    let load = loadavg(proc_root);
    let (mem_total_kib, mem_available_kib) = meminfo(proc_root);
    let peers = wg.map(|s| s.peers.as_slice()).unwrap_or(&[]);
    let sum = |f: fn(&nexa_wg::PeerState) -> u64| {
        (!peers.is_empty()).then(|| peers.iter().map(f).sum::<u64>())
    };
    let handshake_age = peers
        .iter()
        .filter_map(|p| p.last_handshake)
        .max()
        .and_then(|t| now.duration_since(t).ok())
        .map(|d| d.as_secs());
    Sample {
        uptime_s: uptime(proc_root),
        load_1m: load.map(|l| l.0),
        load_5m: load.map(|l| l.1),
        load_15m: load.map(|l| l.2),
        mem_total_kib,
        mem_available_kib,
        wg_rx_bytes: sum(|p| p.rx_bytes),
        wg_tx_bytes: sum(|p| p.tx_bytes),
        wg_handshake_age_s: handshake_age,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexa_proto::WgPublicKey;
    use nexa_wg::PeerState;
    use std::time::Duration;

    fn proc_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("uptime"), "12345.67 54321.00\n").unwrap();
        std::fs::write(tmp.path().join("loadavg"), "0.42 0.30 0.25 1/123 4567\n").unwrap();
        std::fs::write(
            tmp.path().join("meminfo"),
            "MemTotal:         502312 kB\nMemFree:           10000 kB\nMemAvailable:     401000 kB\n",
        )
        .unwrap();
        tmp
    }

    #[test]
    fn reads_proc_files() {
        let tmp = proc_dir();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let s = sample(tmp.path(), None, now);
        assert_eq!(s.uptime_s, Some(12345));
        assert_eq!(s.load_1m, Some(0.42));
        assert_eq!(s.load_15m, Some(0.25));
        assert_eq!(s.mem_total_kib, Some(502_312));
        assert_eq!(s.mem_available_kib, Some(401_000));
        assert_eq!(s.wg_rx_bytes, None);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("wg_rx_bytes").is_none(), "{json}");
    }

    #[test]
    fn missing_or_garbled_files_leave_figures_out() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("loadavg"), "x y z\n").unwrap();
        let s = sample(tmp.path(), None, SystemTime::now());
        assert_eq!(s, Sample::default());
        assert_eq!(serde_json::to_string(&s).unwrap(), "{}");
    }

    #[test]
    fn tunnel_figures_come_from_the_interface() {
        let tmp = proc_dir();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let st = InterfaceState {
            peers: vec![PeerState {
                public_key: WgPublicKey::from_bytes([1; 32]),
                endpoint: None,
                allowed_ips: vec![],
                persistent_keepalive: 25,
                last_handshake: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(990)),
                rx_bytes: 1500,
                tx_bytes: 3000,
            }],
            ..InterfaceState::default()
        };
        let s = sample(tmp.path(), Some(&st), now);
        assert_eq!(s.wg_rx_bytes, Some(1500));
        assert_eq!(s.wg_tx_bytes, Some(3000));
        assert_eq!(s.wg_handshake_age_s, Some(10));
    }
}
