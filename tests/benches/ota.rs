//! The agent during an update: peak resident memory of `nexa-agent run` while it downloads a
//! large RAUC bundle from hawkBit and installs it (target: does not grow with the bundle,
//! ≤ 16 MiB), and its download throughput against `curl` fetching the same artifact from the
//! same server on loopback (target ≥ 90 %). Real bridge, mosquitto and RAUC; the test kit's
//! fake hawkBit (release build) serves the bundle. Run by `scripts/bench.sh` with the static
//! musl release agent.
//!
//! What is compared, so that the ratio is like for like:
//! - the same bytes from the same server over the same loopback, one connection each;
//! - both timed from their own inside, from the request to the end: curl's `time_total`
//!   (no process start-up) against the agent's own figure in its `downloaded` feedback
//!   (which also covers its space check, the rename and the directory sync);
//! - the agent's bundle ends on disk (it must be durable before RAUC may see it) and
//!   SHA-256-verified; curl's is neither. The target is judged against curl followed by an
//!   fsync of its file (the same durable result). Also printed: curl followed by SHA-256 and
//!   fsync (all the agent does), bare curl, and the SHA-256 time alone, which is work bare
//!   curl does not do and which the agent cannot avoid;
//! - rounds interleave curl and the agent, so drifting background load hits both; each
//!   round runs a fresh agent process for one update, and medians are compared.
//!
//!   NEXA_BENCH_OTA_MIB      bundle image size in MiB (default 256)
//!   NEXA_BENCH_OTA_ROUNDS   rounds of (curl, curl + sha256 + fsync, agent update) (default 3)
//!   NEXA_BENCH_AGENT_BIN    the agent binary (default: this profile's build)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::Digest;

use nexa_testkit::hawkbit::{ActionState, Artifact, Assignment, DistributionSet, FakeHawkbit};
use nexa_testkit::mosquitto::Broker;
use nexa_testkit::procfs::status_kib;
use nexa_testkit::rauc::RaucSystem;
use nexa_testkit::{TestServer, agent_bin, agent_command_for, wait_until};

const DEVICE: &str = "bench-ota";
const TOKEN: &str = "b3nchb3nchb3nchb3nchb3nchb3nch00";

/// One agent update as measured.
struct AgentRun {
    download_s: f64,
    install_s: f64,
    hwm_kib: u64,
    peak_sampled_kib: u64,
}

fn main() {
    let mib: u64 = env_or("NEXA_BENCH_OTA_MIB", 256);
    let rounds: usize = env_or("NEXA_BENCH_OTA_ROUNDS", 3).max(1);
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
    let set = fake.create_distribution_set(DistributionSet::single(
        "rootfs",
        "bench",
        Artifact::bytes("bench.raucb", &std::fs::read(&bundle.path).unwrap()),
    ));

    let server = TestServer::start();
    let broker = Broker::start(&server);
    server.register(&[DEVICE]);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("token"), TOKEN).unwrap();
    let auth = format!("Authorization: TargetToken {TOKEN}");

    let (mut curl_s, mut curl_sync_s, mut agent) = (Vec::new(), Vec::new(), Vec::new());
    let (mut curl_full_s, mut sha256_s) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // An open action: full downloads are served only for one. The agent is not running
        // while curl fetches, so neither competes with the other.
        let action = fake.assign(DEVICE, set, Assignment::forced());
        let url = artifact_url(&fake, &auth);
        let curl_out = tmp.path().join("curl.raucb");
        curl_s.push(curl(&auth, &url, &curl_out, size, false).transfer_s);
        let durable = curl(&auth, &url, &curl_out, size, true);
        curl_sync_s.push(durable.transfer_s + durable.fsync_s);
        curl_full_s.push(durable.transfer_s + durable.sha256_s + durable.fsync_s);
        sha256_s.push(durable.sha256_s);

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
        agent.push(agent_update(cmd, &fake, action, size));
        assert!(
            rauc.slot_holds("B", &bundle.image),
            "slot B holds the image"
        );
    }

    let mib_s = |s: f64| size as f64 / 1048576.0 / s;
    let curl_m = median(&curl_s);
    let curl_sync_m = median(&curl_sync_s);
    let curl_full_m = median(&curl_full_s);
    let sha256_m = median(&sha256_s);
    let agent_m = median(&agent.iter().map(|r| r.download_s).collect::<Vec<_>>());
    let ratio = curl_sync_m / agent_m * 100.0;
    let hwm = agent.iter().map(|r| r.hwm_kib).max().unwrap_or(0);
    let sampled = agent.iter().map(|r| r.peak_sampled_kib).max().unwrap_or(0);

    println!("agent binary:        {}", bin.display());
    println!(
        "comparison:          {rounds} interleaved rounds, medians; same server, bytes and loopback, one connection each; both timed from inside (curl: time_total)"
    );
    println!(
        "download, curl:      {curl_m:.3} s ({:.0} MiB/s: into the page cache, not hashed, not durable) {}",
        mib_s(curl_m),
        runs(&curl_s)
    );
    println!(
        "download, curl+sync: {curl_sync_m:.3} s ({:.0} MiB/s: then fsync, durable like the agent's) {}",
        mib_s(curl_sync_m),
        runs(&curl_sync_s)
    );
    println!(
        "download, curl+sha256+sync: {curl_full_m:.3} s ({:.0} MiB/s: then SHA-256 and fsync, the agent's whole job) {}",
        mib_s(curl_full_m),
        runs(&curl_full_s)
    );
    println!(
        "download, agent:     {agent_m:.3} s ({:.0} MiB/s: written, SHA-256-verified, fsynced) {}",
        mib_s(agent_m),
        runs(&agent.iter().map(|r| r.download_s).collect::<Vec<_>>()),
    );
    println!(
        "throughput:          agent = {ratio:.0} % of curl+sync (target >= 90 %): {}; {:.0} % of curl+sha256+sync; {:.0} % of bare curl",
        if ratio >= 90.0 { "met" } else { "NOT met" },
        curl_full_m / agent_m * 100.0,
        curl_m / agent_m * 100.0
    );
    println!(
        "sha256 alone:        {sha256_m:.3} s for the bundle from the page cache on this machine: work bare curl does not do, which the agent overlaps with its transfer"
    );
    println!(
        "install (RAUC):      {:.2} s (median)",
        median(&agent.iter().map(|r| r.install_s).collect::<Vec<_>>())
    );
    println!(
        "agent memory:        peak {:.1} MiB (VmHWM, highest of the rounds), highest sampled {:.1} MiB (target <= 16 MiB, flat in bundle size): {}",
        hwm as f64 / 1024.0,
        sampled as f64 / 1024.0,
        if hwm <= 16 * 1024 { "met" } else { "NOT met" }
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The download link of the open action's artifact, found the way the device finds it.
fn artifact_url(fake: &FakeHawkbit, auth: &str) -> String {
    let poll = curl_json(
        &[auth, "Accept: application/json"],
        &fake.controller_url(DEVICE),
    );
    let deployment = curl_json(
        &[auth],
        poll["_links"]["deploymentBase"]["href"].as_str().unwrap(),
    );
    deployment["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One curl download, timed by curl itself.
struct CurlRun {
    transfer_s: f64,
    /// SHA-256 of the downloaded file afterwards (from the page cache), when finishing.
    sha256_s: f64,
    /// fsync of the file afterwards, when finishing.
    fsync_s: f64,
}

/// One curl download into `out` (removed afterwards): curl's own transfer time and, when
/// `finish`, the time to hash the file and to fsync it, which is what it takes curl's result
/// to be what the agent's is (verified and durable).
fn curl(auth: &str, url: &str, out: &Path, size: u64, finish: bool) -> CurlRun {
    let output = std::process::Command::new("curl")
        .args(["-sf", "-w", "%{time_total}", "-H", auth, "-o"])
        .arg(out)
        .arg(url)
        .output()
        .unwrap();
    assert!(output.status.success(), "curl download failed");
    let transfer_s: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("curl's time_total");
    assert_eq!(std::fs::metadata(out).unwrap().len(), size);
    let (mut sha256_s, mut fsync_s) = (0.0, 0.0);
    if finish {
        let t = Instant::now();
        let mut file = std::fs::File::open(out).unwrap();
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher).unwrap();
        std::hint::black_box(hasher.finalize());
        sha256_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        file.sync_all().unwrap();
        fsync_s = t.elapsed().as_secs_f64();
    }
    std::fs::remove_file(out).unwrap();
    CurlRun {
        transfer_s,
        sha256_s,
        fsync_s,
    }
}

/// Runs the agent until `action` is finished; its download and install times and memory.
fn agent_update(
    mut cmd: std::process::Command,
    fake: &FakeHawkbit,
    action: u64,
    size: u64,
) -> AgentRun {
    let mut agent = cmd
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let pid = agent.id();
    let mut peak_sampled_kib = 0;
    let done = wait_until(Duration::from_secs(900), || {
        peak_sampled_kib = peak_sampled_kib.max(status_kib(pid, "VmRSS"));
        fake.action(action).state == ActionState::Finished
    });
    let hwm_kib = status_kib(pid, "VmHWM");
    let _ = agent.kill();
    let _ = agent.wait();
    let feedback = fake.feedback(action);
    assert!(done, "the update did not finish: {feedback:#?}");

    // Device timestamps of the feedback: downloaded → closed is the install.
    let at = |execution: &str| {
        feedback
            .iter()
            .find(|f| f.execution == execution)
            .and_then(|f| f.timestamp)
            .expect("feedback timestamp")
    };
    let install_s = (at("closed") - at("downloaded")) as f64 / 1000.0;
    AgentRun {
        download_s: agent_download_s(&feedback, size),
        install_s,
        hwm_kib,
        peak_sampled_kib,
    }
}

/// The agent's own download time from its `downloaded` feedback, "… downloaded and verified
/// (sha256) in 0.51 s, 502.0 MiB/s": taken from the rate, which has more digits.
fn agent_download_s(feedback: &[nexa_testkit::hawkbit::Feedback], size: u64) -> f64 {
    let detail = feedback
        .iter()
        .find(|f| f.execution == "downloaded")
        .and_then(|f| f.details.first())
        .expect("a downloaded feedback with details");
    let rate: Option<f64> = detail
        .rsplit(", ")
        .next()
        .and_then(|r| r.strip_suffix(" MiB/s"))
        .and_then(|r| r.parse().ok());
    let secs: Option<f64> = detail
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|s| s.parse().ok());
    match (rate, secs) {
        (Some(rate), _) if rate > 0.0 => size as f64 / 1048576.0 / rate,
        (_, Some(secs)) => secs,
        _ => panic!("the downloaded feedback names no duration: {detail:?}"),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn runs(values: &[f64]) -> String {
    let each: Vec<String> = values.iter().map(|s| format!("{s:.3}")).collect();
    format!("[{}]", each.join(" "))
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
