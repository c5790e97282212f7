//! The agent daemon at rest: resident memory after N seconds connected to a real mosquitto
//! over mTLS (target ≤ 10 MiB) and the CPU it used meanwhile (target: under 1 % of a core, i.e.
//! no busy loop). Run by `scripts/bench.sh`, which points NEXA_BENCH_AGENT_BIN at the static musl
//! release build that ships.
//!
//!   NEXA_BENCH_AGENT_SECS   how long to watch (default 60)
//!   NEXA_BENCH_AGENT_BIN    the agent binary (default: this profile's build)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nexa_testkit::mosquitto::Broker;
use nexa_testkit::procfs::{clk_tck, cpu_ticks, status_kib};
use nexa_testkit::{TestServer, agent_bin, agent_command_for, wait_until};

fn main() {
    let secs: u64 = std::env::var("NEXA_BENCH_AGENT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let bin = std::env::var_os("NEXA_BENCH_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(agent_bin);
    let server = TestServer::start();
    let broker = Broker::start(&server);
    server.register(&["bench-agent"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = agent_command_for(
        &bin,
        &server.url,
        &server.fingerprint,
        "bench-agent",
        &tmp.path().join("certs"),
    )
    .env(
        "NEXA_MQTT_URL",
        format!("mqtts://127.0.0.1:{}", broker.port),
    )
    .env("NEXA_LOG", "warn")
    .arg("run")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the agent");
    let pid = agent.id();
    let connected = wait_until(Duration::from_secs(60), || {
        broker.log().contains("u'bench-agent'")
    });
    assert!(connected, "the agent did not connect:\n{}", broker.log());

    let t0 = Instant::now();
    let ticks0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - ticks0;
    let rss = status_kib(pid, "VmRSS");
    let hwm = status_kib(pid, "VmHWM");
    let cpu_pct = ticks as f64 / clk_tck() as f64 / wall * 100.0;
    let _ = agent.kill();
    let _ = agent.wait();

    println!("agent binary:        {}", bin.display());
    println!("watched connected:   {wall:.0} s (telemetry every 60 s, keep-alive 30 s)");
    println!(
        "resident memory:     {:.1} MiB now, {:.1} MiB peak (target <= 10 MiB): {}",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        if rss <= 10 * 1024 { "met" } else { "NOT met" }
    );
    println!(
        "CPU while idle:      {cpu_pct:.2} % of one core ({ticks} ticks) (target < 1 %): {}",
        if cpu_pct < 1.0 { "met" } else { "NOT met" }
    );
}
