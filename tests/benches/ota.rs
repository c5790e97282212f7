//! The agent during an update: peak resident memory of `nexa-agent run` while it downloads a
//! large RAUC bundle from hawkBit and installs it (target: does not grow with the bundle,
//! ≤ 16 MiB), and its download throughput against `curl` fetching the same artifact from the
//! same server on loopback (target ≥ 90 %). Real bridge, mosquitto and RAUC; the test kit's
//! fake hawkBit (release build) serves the bundle. Run by `scripts/bench.sh` with the static
//! musl release agent.
//!
//!   NEXA_BENCH_OTA_MIB      bundle image size in MiB (default 256)
//!   NEXA_BENCH_AGENT_BIN    the agent binary (default: this profile's build)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nexa_testkit::hawkbit::{ActionState, Artifact, Assignment, DistributionSet, FakeHawkbit};
use nexa_testkit::mosquitto::Broker;
use nexa_testkit::procfs::status_kib;
use nexa_testkit::rauc::RaucSystem;
use nexa_testkit::{TestServer, agent_bin, agent_command_for, wait_until};

const DEVICE: &str = "bench-ota";
const TOKEN: &str = "b3nchb3nchb3nchb3nchb3nchb3nch00";

fn main() {
    let mib: u64 = std::env::var("NEXA_BENCH_OTA_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let bin = std::env::var_os("NEXA_BENCH_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(agent_bin);

    let rauc = RaucSystem::start();
    let t = Instant::now();
    let bundle = rauc.good_bundle(mib << 20);
    let size = bundle.file_size();
    println!(
        "bundle:              {:.1} MiB, built in {:.1} s",
        size as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let fake = FakeHawkbit::start();
    fake.insert_target_with_token(DEVICE, TOKEN);
    fake.set_polling_sleep(Duration::from_secs(5));
    let action = fake.deploy(
        DEVICE,
        DistributionSet::single(
            "rootfs",
            "bench",
            Artifact::bytes("bench.raucb", &std::fs::read(&bundle.path).unwrap()),
        ),
        Assignment::forced(),
    );

    // The baseline: curl fetching the same artifact (found the way the device finds it).
    let tmp = tempfile::tempdir().unwrap();
    let auth = format!("Authorization: TargetToken {TOKEN}");
    let base = fake.controller_url(DEVICE);
    let poll = curl_json(&[&auth, "Accept: application/json"], &base);
    let deployment = curl_json(
        &[&auth],
        poll["_links"]["deploymentBase"]["href"].as_str().unwrap(),
    );
    let url =
        deployment["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"]
            .as_str()
            .unwrap()
            .to_owned();
    // The best of three runs each: curl alone, and curl followed by an fsync of the file (the
    // agent must have the bundle on disk before RAUC may see it, so that is the like-for-like
    // comparison).
    let curl_out = tmp.path().join("curl.raucb");
    let (mut curl_s, mut curl_sync_s) = (f64::MAX, f64::MAX);
    for sync in [false, true, false, true, false, true] {
        let t = Instant::now();
        let status = std::process::Command::new("curl")
            .args(["-sf", "-H", &auth, "-o"])
            .arg(&curl_out)
            .arg(&url)
            .status()
            .unwrap();
        assert!(status.success(), "curl download failed");
        if sync {
            std::fs::File::open(&curl_out).unwrap().sync_all().unwrap();
            curl_sync_s = curl_sync_s.min(t.elapsed().as_secs_f64());
        } else {
            curl_s = curl_s.min(t.elapsed().as_secs_f64());
        }
        assert_eq!(std::fs::metadata(&curl_out).unwrap().len(), size);
        std::fs::remove_file(&curl_out).unwrap();
    }

    let server = TestServer::start();
    let broker = Broker::start(&server);
    server.register(&[DEVICE]);
    std::fs::write(tmp.path().join("token"), TOKEN).unwrap();
    let mut cmd = agent_command_for(
        &bin,
        &server.url,
        &server.fingerprint,
        DEVICE,
        &tmp.path().join("certs"),
    );
    cmd.env(
        "NEXA_MQTT_URL",
        format!("mqtts://127.0.0.1:{}", broker.port),
    )
    .env("NEXA_HAWKBIT_URL", &fake.url)
    .env("NEXA_HAWKBIT_AUTH", "target_token")
    .env("NEXA_HAWKBIT_TOKEN_FILE", tmp.path().join("token"))
    .env("NEXA_DATA_DIR", tmp.path().join("data"))
    .env("NEXA_AFTER_INSTALL", "report")
    .env("NEXA_LOG", "warn");
    rauc.bus_env(&mut cmd);
    let mut agent = cmd
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let pid = agent.id();
    let mut peak_during = 0;
    let done = wait_until(Duration::from_secs(900), || {
        peak_during = peak_during.max(status_kib(pid, "VmRSS"));
        fake.action(action).state == ActionState::Finished
    });
    let hwm = status_kib(pid, "VmHWM");
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        done,
        "the update did not finish: {:#?}",
        fake.feedback(action)
    );
    assert!(
        rauc.slot_holds("B", &bundle.image),
        "slot B holds the image"
    );

    // Device timestamps of the feedback: downloaded → closed is the install.
    let feedback = fake.feedback(action);
    let at = |pred: &dyn Fn(&nexa_testkit::hawkbit::Feedback) -> bool| {
        feedback
            .iter()
            .find(|f| pred(f))
            .and_then(|f| f.timestamp)
            .expect("feedback timestamp")
    };
    let downloaded = at(&|f| f.execution == "downloaded");
    let closed = at(&|f| f.execution == "closed");
    // The agent reports its own download time: "… downloaded and verified (sha256) in 0.51 s, …".
    let agent_s: f64 = feedback
        .iter()
        .find(|f| f.execution == "downloaded")
        .and_then(|f| f.details.first())
        .and_then(|d| d.split(" in ").nth(1))
        .and_then(|rest| rest.split(" s").next())
        .and_then(|secs| secs.parse().ok())
        .expect("the downloaded feedback names its duration");
    let ratio = curl_sync_s / agent_s * 100.0;
    let mib_s = |s: f64| size as f64 / 1048576.0 / s;

    println!("agent binary:        {}", bin.display());
    println!(
        "download, curl:      {curl_s:.2} s ({:.0} MiB/s, best of 3, into the page cache, no hash)",
        mib_s(curl_s)
    );
    println!(
        "download, curl+sync: {curl_sync_s:.2} s ({:.0} MiB/s, best of 3, then fsync)",
        mib_s(curl_sync_s)
    );
    println!(
        "download, agent:     {agent_s:.2} s ({:.0} MiB/s, written, fsynced, sha256-verified): {ratio:.0} % of curl+sync (target >= 90 %): {}; {:.0} % of curl alone",
        mib_s(agent_s),
        if ratio >= 90.0 { "met" } else { "NOT met" },
        curl_s / agent_s * 100.0
    );
    println!(
        "install (RAUC):      {:.2} s",
        (closed - downloaded) as f64 / 1000.0
    );
    println!(
        "agent memory:        peak {:.1} MiB (VmHWM), highest sampled {:.1} MiB (target <= 16 MiB, flat in bundle size): {}",
        hwm as f64 / 1024.0,
        peak_during as f64 / 1024.0,
        if hwm <= 16 * 1024 { "met" } else { "NOT met" }
    );
}

fn curl_json(headers: &[&str], url: &str) -> serde_json::Value {
    let mut cmd = std::process::Command::new("curl");
    cmd.arg("-sf");
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().unwrap();
    assert!(out.status.success(), "curl {url} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}
