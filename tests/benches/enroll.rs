//! Enrollment benchmark: enrollments/s and latency percentiles of a release-built
//! `nexa-server` on SQLite (the default store), driven by C concurrent HTTPS clients with
//! keep-alive.
//!
//! Run `scripts/bench.sh` or `cargo bench -p nexa-tests --bench enroll`. The kit's
//! `bin_dir()` builds the server of the profile this bench runs under (bench inherits
//! release). Parameters, from the environment:
//!
//! - `NEXA_BENCH_DEVICES`: enrollments per round (default 10000).
//! - `NEXA_BENCH_CONCURRENCY`: concurrent clients, or a comma list such as `1,8,32,64` to run
//!   one round per value, each with fresh devices (default 32).
//! - `NEXA_BENCH_WARMUP`: untimed enrollments before the first round, whose answers are also
//!   parsed and checked (device id, certificate) (default 500).
//! - `NEXA_BENCH_CLIENT_THREADS`: worker threads of the client's tokio runtime (default: the
//!   core count).
//! - `NEXA_BENCH_MIN_RATE`: if set, exit non-zero when a built-in round is slower
//!   (enrollments/s).
//! - `NEXA_BENCH_SIGNERS`: which signers to run, one fresh server each, in order (default
//!   `builtin,stepca`: the built-in Sub-CA, then a real step-ca started by the test kit), so
//!   both are measured in the same run and printed side by side.
//! - `NEXA_BENCH_AUTH`: how devices are authorized, one fresh server per signer and mode
//!   (default `preregistered,sitekey`): `preregistered` registers every id first
//!   (`device add --from-file`); `sitekey` registers nothing and sends a site code, the site's
//!   enrollment key, a machine_uid and a hostname with every request (zero-touch). The
//!   limiter stays in the path, with its budget raised (`NEXA_ENROLL_RATE`) because every
//!   client shares one address.
//!
//! Before the servers start, the site-key check is also measured on its own
//! (`enroll/key_check.rs`); its CPU per call is printed as a share of the server CPU of a
//! pre-registered enrollment (target: below 5 %).
//!
//! Every CSR, WireGuard key, URL and JSON body is made before timing, so a client only sends
//! prepared bytes and reads the answer. Any answer other than 201 fails the benchmark.

#[path = "enroll/key_check.rs"]
mod key_check;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nexa_proto::{EnrollRequest, EnrollResponse};
use nexa_testkit::procfs::{cpu_seconds, fs_type, machine_busy_seconds, try_status_kib};
use nexa_testkit::stepca::StepCa;
use nexa_testkit::{TestServer, make_csr, server_bin, wg_public_key};
use reqwest::header::{CONTENT_TYPE, HeaderValue};

/// Base of the WireGuard subnet; its prefix is widened to fit every device of the run.
const SUBNET_BASE: &str = "10.64.0.0";

/// Site of the site-key rounds.
const BENCH_SITE: &str = "bench-site";
/// The server's limiter budget in site-key rounds (requests/s per site and address).
const BENCH_ENROLL_RATE: &str = "1000000";
/// How long the key check alone is measured, at least.
const KEY_CHECK_TIME: Duration = Duration::from_secs(3);
/// Share of an enrollment the key check may cost (the target).
const KEY_CHECK_TARGET_PERCENT: f64 = 5.0;

/// How the devices of a run are authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Every id registered before the run.
    Preregistered,
    /// Nothing registered: site code + enrollment key in every request.
    SiteKey,
}

impl Auth {
    fn name(self) -> &'static str {
        match self {
            Auth::Preregistered => "pre-reg",
            Auth::SiteKey => "site-key",
        }
    }
}

/// The site credentials the requests of a site-key run carry.
#[derive(Debug, Clone)]
struct SiteAuth {
    code: String,
    key: String,
}

/// Which CA signs the enrollments of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Builtin,
    StepCa,
}

impl Signer {
    fn name(self) -> &'static str {
        match self {
            Signer::Builtin => "built-in",
            Signer::StepCa => "step-ca",
        }
    }
}

#[derive(Debug)]
struct Config {
    signers: Vec<Signer>,
    auths: Vec<Auth>,
    devices: usize,
    rounds: Vec<usize>,
    warmup: usize,
    client_threads: usize,
    min_rate: Option<f64>,
    cores: usize,
}

impl Config {
    fn from_env() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let devices = env_usize("NEXA_BENCH_DEVICES", 10_000)?;
        ensure!(devices > 0, "NEXA_BENCH_DEVICES must be at least 1");
        let raw = std::env::var("NEXA_BENCH_CONCURRENCY").unwrap_or_else(|_| "32".into());
        let rounds = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<usize>().ok().filter(|&c| c > 0).with_context(|| {
                    format!("NEXA_BENCH_CONCURRENCY: {s:?} is not a positive integer")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(!rounds.is_empty(), "NEXA_BENCH_CONCURRENCY is empty");
        let min_rate = match std::env::var("NEXA_BENCH_MIN_RATE") {
            Ok(s) => Some(
                s.trim()
                    .parse::<f64>()
                    .with_context(|| format!("NEXA_BENCH_MIN_RATE: {s:?} is not a number"))?,
            ),
            Err(_) => None,
        };
        let signers = env_choices(
            "NEXA_BENCH_SIGNERS",
            "builtin,stepca",
            &[("builtin", Signer::Builtin), ("stepca", Signer::StepCa)],
        )?;
        let auths = env_choices(
            "NEXA_BENCH_AUTH",
            "preregistered,sitekey",
            &[
                ("preregistered", Auth::Preregistered),
                ("sitekey", Auth::SiteKey),
            ],
        )?;
        Ok(Self {
            signers,
            auths,
            devices,
            rounds,
            warmup: env_usize("NEXA_BENCH_WARMUP", 500)?,
            client_threads: env_usize("NEXA_BENCH_CLIENT_THREADS", cores)?.max(1),
            min_rate,
            cores,
        })
    }

    fn total_devices(&self) -> usize {
        self.warmup + self.devices * self.rounds.len()
    }
}

/// A non-empty comma list of the names in `choices` from `name` (else `default`).
fn env_choices<T: Copy>(name: &str, default: &str, choices: &[(&str, T)]) -> Result<Vec<T>> {
    let raw = std::env::var(name).unwrap_or_else(|_| default.into());
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let picked = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            choices
                .iter()
                .find(|(n, _)| *n == s)
                .map(|(_, v)| *v)
                .with_context(|| format!("{name}: {s:?} is not one of {}", names.join(", ")))
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(!picked.is_empty(), "{name} is empty");
    Ok(picked)
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .replace('_', "")
            .parse()
            .with_context(|| format!("{name}: {s:?} is not a non-negative integer")),
        Err(_) => Ok(default),
    }
}

/// The smallest IPv4 subnet at `SUBNET_BASE`, /16 or larger, with room for `devices`
/// (host 0 is the network, 1 the gateway, the last the broadcast address).
fn subnet_for(devices: usize) -> Result<String> {
    for prefix in (10..=16u32).rev() {
        let capacity = (1usize << (32 - prefix)) - 3;
        if devices <= capacity {
            return Ok(format!("{SUBNET_BASE}/{prefix}"));
        }
    }
    bail!("{devices} devices do not fit a /10; lower NEXA_BENCH_DEVICES or the number of rounds")
}

/// One prepared enrollment: everything a client sends, made before timing.
#[derive(Debug)]
struct Job {
    id: String,
    url: reqwest::Url,
    body: Vec<u8>,
}

/// Makes a CSR (EC P-256, CN = id), a WireGuard key and the JSON body for every id, on
/// `threads` threads. With `site`, each body also carries the site code and key, and a
/// machine_uid and hostname of its own.
fn prepare(
    base_url: &str,
    ids: &[String],
    threads: usize,
    site: Option<&SiteAuth>,
) -> Result<Vec<Job>> {
    let chunk = ids.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|id| {
                            let (_key, csr_pem) = make_csr(id);
                            let request = EnrollRequest {
                                csr_pem,
                                wg_public_key: wg_public_key(),
                                machine_uid: site.map(|_| format!("uid-{id}")),
                                hostname: site.map(|_| id.clone()),
                                site_code: site.map(|s| s.code.clone()),
                                enrollment_key: site.map(|s| s.key.clone()),
                            };
                            let url =
                                reqwest::Url::parse(&format!("{base_url}/api/devices/{id}/enroll"))
                                    .context("enrollment URL")?;
                            Ok(Job {
                                id: id.clone(),
                                url,
                                body: serde_json::to_vec(&request)?,
                            })
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut jobs = Vec::with_capacity(ids.len());
        for h in handles {
            match h.join() {
                Ok(part) => jobs.extend(part?),
                Err(_) => bail!("a CSR generation thread panicked"),
            }
        }
        Ok(jobs)
    })
}

/// What one client task saw.
#[derive(Debug, Default)]
struct ClientStats {
    /// Microseconds per successful (201) enrollment.
    latencies_us: Vec<u64>,
    /// Non-201 answers: status and how many.
    bad_status: Vec<(u16, usize)>,
    transport_errors: usize,
    invalid_bodies: usize,
    first_error: Option<String>,
}

impl ClientStats {
    fn failures(&self) -> usize {
        self.bad_status.iter().map(|(_, n)| n).sum::<usize>()
            + self.transport_errors
            + self.invalid_bodies
    }

    fn note_error(&mut self, message: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    fn merge(&mut self, other: ClientStats) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.bad_status {
            match self.bad_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, m)) => *m += n,
                None => self.bad_status.push((status, n)),
            }
        }
        self.transport_errors += other.transport_errors;
        self.invalid_bodies += other.invalid_bodies;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

type Queue = Arc<Mutex<std::vec::IntoIter<Job>>>;

/// One client: takes the next job from the shared queue until it is empty. With `check`, each
/// answer is also parsed and compared with the request (only in the untimed warm-up).
async fn client_task(
    client: reqwest::Client,
    queue: Queue,
    capacity: usize,
    check: bool,
) -> ClientStats {
    let json = HeaderValue::from_static("application/json");
    let mut stats = ClientStats {
        latencies_us: Vec::with_capacity(capacity),
        ..ClientStats::default()
    };
    loop {
        // A poisoned lock cannot happen (nothing panics while holding it); treat it as empty.
        let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
        let Some(Job { id, url, body }) = next else {
            break;
        };
        let start = Instant::now();
        let sent = client
            .post(url)
            .header(CONTENT_TYPE, json.clone())
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                stats.transport_errors += 1;
                stats.note_error(|| format!("{id}: request failed: {e:#}"));
                continue;
            }
        };
        let status = response.status().as_u16();
        // Reading the whole body lets the connection be reused.
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                stats.transport_errors += 1;
                stats.note_error(|| format!("{id}: reading the response failed: {e:#}"));
                continue;
            }
        };
        let elapsed = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        if status != 201 {
            match stats.bad_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => stats.bad_status.push((status, 1)),
            }
            stats.note_error(|| format!("{id}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
            continue;
        }
        if check {
            match serde_json::from_slice::<EnrollResponse>(&body) {
                Ok(r) if r.device_id == id && r.certificate_pem.contains("BEGIN CERTIFICATE") => {}
                Ok(r) => {
                    stats.invalid_bodies += 1;
                    stats.note_error(|| {
                        format!(
                            "{id}: answer for device {:?} or without a certificate",
                            r.device_id
                        )
                    });
                    continue;
                }
                Err(e) => {
                    stats.invalid_bodies += 1;
                    stats.note_error(|| format!("{id}: answer is not an EnrollResponse: {e}"));
                    continue;
                }
            }
        }
        stats.latencies_us.push(elapsed);
    }
    stats
}

/// CPU counters at one instant: the server, step-ca (when it signs), this process and the
/// whole machine.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    server: Option<f64>,
    ca: Option<f64>,
    client: Option<f64>,
    machine: Option<f64>,
}

impl CpuSnapshot {
    fn take(pids: Pids) -> Self {
        let of = |pid: Option<u32>| pid.and_then(|p| cpu_seconds(&p.to_string()));
        Self {
            server: of(pids.server),
            ca: of(pids.ca),
            client: cpu_seconds("self"),
            machine: machine_busy_seconds(),
        }
    }

    /// CPU seconds used between `self` and `later`.
    fn until(self, later: Self) -> Self {
        let d = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        Self {
            server: d(self.server, later.server),
            ca: d(self.ca, later.ca),
            client: d(self.client, later.client),
            machine: d(self.machine, later.machine),
        }
    }

    /// Busy CPU seconds of everything else on the machine.
    fn other(self) -> Option<f64> {
        let own = self.server.unwrap_or(0.0) + self.ca.unwrap_or(0.0) + self.client?;
        self.machine.map(|m| (m - own).max(0.0))
    }
}

/// The processes whose CPU is measured.
#[derive(Debug, Clone, Copy, Default)]
struct Pids {
    server: Option<u32>,
    ca: Option<u32>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The figures of one round.
#[derive(Debug)]
struct RoundReport {
    signer: Signer,
    auth: Auth,
    concurrency: usize,
    enrollments: usize,
    wall: Duration,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    failures: usize,
    cpu: CpuSnapshot,
    server_hwm_kib: Option<u64>,
}

impl RoundReport {
    fn rate(&self) -> f64 {
        self.enrollments as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }

    /// CPU microseconds per enrollment from CPU seconds of the round.
    fn per_enrollment(&self, cpu: Option<f64>) -> Option<f64> {
        cpu.map(|s| s * 1e6 / self.enrollments.max(1) as f64)
    }
}

/// Runs `jobs` through `concurrency` client tasks and returns their merged stats and the
/// wall time. Opens `concurrency` keep-alive connections first (untimed).
fn run_round(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    health_url: &str,
    jobs: Vec<Job>,
    concurrency: usize,
    check: bool,
    pids: Pids,
) -> Result<(ClientStats, Duration, CpuSnapshot)> {
    rt.block_on(async {
        // Prime the pool: `concurrency` simultaneous requests each need their own connection.
        let mut primers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (client, url) = (client.clone(), health_url.to_owned());
            primers.spawn(async move {
                let r = client.get(url).send().await?;
                r.bytes().await
            });
        }
        while let Some(r) = primers.join_next().await {
            r.context("priming task")?
                .context("priming a connection with GET /healthz")?;
        }

        let capacity = jobs.len().div_ceil(concurrency) * 2;
        let queue: Queue = Arc::new(Mutex::new(jobs.into_iter()));
        let cpu0 = CpuSnapshot::take(pids);
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            tasks.spawn(client_task(client.clone(), queue.clone(), capacity, check));
        }
        let mut total = ClientStats::default();
        while let Some(stats) = tasks.join_next().await {
            total.merge(stats.context("client task")?);
        }
        let wall = start.elapsed();
        Ok((total, wall, cpu0.until(CpuSnapshot::take(pids))))
    })
}

fn device_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-{prefix}-{i:06}")).collect()
}

fn print_table(reports: &[RoundReport], cores: usize) {
    println!();
    println!(
        "{:>8} {:>8} {:>5} {:>11} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>9} {:>11}",
        "signer",
        "auth",
        "conc",
        "enrollments",
        "wall s",
        "enroll/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "srv CPU µs",
        "CA CPU µs",
        "cli CPU µs",
        "other CPU",
        "srv HWM MiB"
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    for r in reports {
        println!(
            "{:>8} {:>8} {:>5} {:>11} {:>8.2} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>10} {:>10} {:>9} {:>11}",
            r.signer.name(),
            r.auth.name(),
            r.concurrency,
            r.enrollments,
            r.wall.as_secs_f64(),
            r.rate(),
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.max),
            opt(r.per_enrollment(r.cpu.server)),
            opt(r.per_enrollment(r.cpu.ca)),
            opt(r.per_enrollment(r.cpu.client)),
            r.cpu.other().map_or_else(
                || "-".to_owned(),
                |o| format!(
                    "{:.0}%",
                    100.0 * o / r.wall.as_secs_f64().max(f64::EPSILON) / cores as f64
                )
            ),
            r.server_hwm_kib
                .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
        );
    }
    println!();
    println!(
        "srv/CA/cli CPU µs = CPU time (user+system, all threads) per enrollment of the server /"
    );
    println!(
        "step-ca / this client process during the timed part; other CPU = busy CPU of everything"
    );
    println!(
        "else on the machine, in % of all cores (should be ~0%: more means the figures are disturbed);"
    );
    println!("srv HWM = server VmHWM (peak RSS) so far.");
    let same = |r: &RoundReport, signer: Signer, auth: Auth| {
        reports
            .iter()
            .find(|b| b.signer == signer && b.auth == auth && b.concurrency == r.concurrency)
    };
    for r in reports.iter().filter(|r| r.signer == Signer::StepCa) {
        if let Some(b) = same(r, Signer::Builtin, r.auth) {
            println!(
                "{} concurrency {:>3}: built-in {:.0}/s, step-ca {:.0}/s: step-ca signs at {:.0} % of the built-in rate (p50 {:.2} vs {:.2} ms)",
                r.auth.name(),
                r.concurrency,
                b.rate(),
                r.rate(),
                100.0 * r.rate() / b.rate().max(f64::EPSILON),
                ms(r.p50),
                ms(b.p50)
            );
        }
    }
    for r in reports.iter().filter(|r| r.auth == Auth::SiteKey) {
        if let Some(b) = same(r, r.signer, Auth::Preregistered) {
            let cpu = r
                .per_enrollment(r.cpu.server)
                .zip(b.per_enrollment(b.cpu.server))
                .map_or_else(String::new, |(k, p)| {
                    format!(
                        "; server CPU {k:.0} vs {p:.0} µs per enrollment ({:+.1} %)",
                        100.0 * (k - p) / p.max(f64::EPSILON)
                    )
                });
            println!(
                "{} concurrency {:>3}: site-key {:.0}/s vs pre-registered {:.0}/s = {:.1} % of the pre-registered rate{cpu}",
                r.signer.name(),
                r.concurrency,
                r.rate(),
                b.rate(),
                100.0 * r.rate() / b.rate().max(f64::EPSILON),
            );
        }
    }
    if reports.iter().any(|r| r.auth == Auth::SiteKey) {
        println!(
            "(a site-key enrollment also registers its device and looks up its machine_uid: the"
        );
        println!("difference above is an upper bound of what the key check itself costs)");
    }
}

/// The key check's share of a pre-registered enrollment's server CPU, and its verdict.
fn print_key_check_share(cost: &key_check::KeyCheckCost, reports: &[RoundReport]) {
    println!();
    for (what, c) in [
        ("cached (as serve runs it)", &cost.cached),
        ("uncached (database read)", &cost.uncached),
    ] {
        println!(
            "key check, {what}: {:.1} µs CPU ({:.1} µs wall) per check over {} checks",
            c.cpu_us, c.wall_us, c.checks
        );
    }
    for b in reports
        .iter()
        .filter(|r| r.signer == Signer::Builtin && r.auth == Auth::Preregistered)
    {
        if let Some(enroll_us) = b.per_enrollment(b.cpu.server) {
            let share = |us: f64| 100.0 * us / enroll_us.max(f64::EPSILON);
            let cached = share(cost.cached.cpu_us);
            println!(
                "key check share at concurrency {:>3}: {:.1} µs of {enroll_us:.0} µs server CPU per pre-registered enrollment = {cached:.2} % (target < {KEY_CHECK_TARGET_PERCENT} %: {}); uncached {:.2} %",
                b.concurrency,
                cost.cached.cpu_us,
                if cached < KEY_CHECK_TARGET_PERCENT {
                    "met"
                } else {
                    "MISSED"
                },
                share(cost.uncached.cpu_us)
            );
        }
    }
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    println!("Nexa enrollment benchmark");
    println!(
        "  machine:     {} cores (available_parallelism); client runtime: {} worker threads",
        config.cores, config.client_threads
    );
    println!(
        "  rounds:      concurrency {:?}, {} enrollments each, fresh devices per round; warm-up {}",
        config.rounds, config.devices, config.warmup
    );
    println!(
        "  signers:     {} (one fresh server each, same run)",
        config
            .signers
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  server:      {} (release build, HTTPS, HTTP/1.1 keep-alive)",
        server_bin().display()
    );
    println!(
        "  note:        the client runs on the same {} cores as the server (and step-ca) and competes",
        config.cores
    );
    println!(
        "               with them for CPU; CSRs, keys and bodies are prepared before timing so the client"
    );
    println!("               only does HTTPS I/O.");
    println!(
        "  auth:        {}",
        config
            .auths
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The key check alone, before any server competes for the CPU.
    let key_cost = key_check::measure(KEY_CHECK_TIME, 20_000)?;
    println!(
        "  key check:   {:.1} µs CPU per check cached, {:.1} µs uncached (SiteGate::check on a real SQLite file)",
        key_cost.cached.cpu_us, key_cost.uncached.cpu_us
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.client_threads)
        .enable_all()
        .build()
        .context("client tokio runtime")?;
    let stepca = config.signers.contains(&Signer::StepCa).then(StepCa::start);
    if let Some(ca) = &stepca {
        println!(
            "  step-ca:     {} (a real step-ca, JWK provisioner {}, badger DB), pid {}",
            ca.url,
            ca.provisioner,
            ca.pid().map_or_else(|| "-".into(), |p| p.to_string())
        );
    }

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for &signer in &config.signers {
        let ca = stepca.as_ref().filter(|_| signer == Signer::StepCa);
        for &auth in &config.auths {
            run_server(&config, signer, auth, ca, &rt, &mut reports, &mut failures)?;
        }
    }

    print_table(&reports, config.cores);
    print_key_check_share(&key_cost, &reports);
    let best = reports
        .iter()
        .filter(|r| r.signer == Signer::Builtin)
        .map(RoundReport::rate)
        .fold(0.0, f64::max);
    if best > 0.0 {
        println!(
            "best built-in round: {best:.0} enrollments/s (target on a 2-core machine: >= 2000/s)"
        );
    }
    if !failures.is_empty() {
        bail!(
            "{} enrollment(s) failed:\n  {}",
            reports.iter().map(|r| r.failures).sum::<usize>(),
            failures.join("\n  ")
        );
    }
    if let Some(min) = config.min_rate
        && let Some(slow) = reports.iter().find(|r| {
            r.signer == Signer::Builtin && r.auth == Auth::Preregistered && r.rate() < min
        })
    {
        bail!(
            "pre-registered concurrency {} reached {:.0} enrollments/s, below NEXA_BENCH_MIN_RATE={min}",
            slow.concurrency,
            slow.rate()
        );
    }
    Ok(())
}

/// Warm-up and rounds against a fresh server signing with `signer` (`ca` for step-ca),
/// its devices authorized by `auth`.
fn run_server(
    config: &Config,
    signer: Signer,
    auth: Auth,
    ca: Option<&StepCa>,
    rt: &tokio::runtime::Runtime,
    reports: &mut Vec<RoundReport>,
    failures: &mut Vec<String>,
) -> Result<()> {
    let total = config.total_devices();
    let subnet = subnet_for(total)?;
    let mut envs = vec![("NEXA_LOG", "warn".to_owned())];
    if auth == Auth::SiteKey {
        envs.push(("NEXA_ENROLL_RATE", BENCH_ENROLL_RATE.to_owned()));
    }
    if let Some(ca) = ca {
        envs.extend([
            ("STEP_CA_URL", ca.url.clone()),
            ("STEP_CA_FINGERPRINT", ca.root_fingerprint.clone()),
            ("STEP_CA_PROVISIONER_NAME", ca.provisioner.clone()),
            (
                "STEP_CA_PROVISIONER_PASSWORD_FILE",
                ca.password_file.display().to_string(),
            ),
        ]);
    }
    let env_refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_with(&["--wg-subnet", &subnet], &env_refs);
    let pids = Pids {
        server: server.pid(),
        ca: ca.and_then(StepCa::pid),
    };
    println!();
    println!("[{} signer, {} devices]", signer.name(), auth.name());
    println!(
        "  store:       SQLite (WAL, synchronous=FULL) in {} on {}; WireGuard subnet {subnet}",
        server.data_dir.display(),
        fs_type(&server.data_dir)
    );

    // Every device id of the run, registered in one CLI call.
    let warmup_ids = device_ids("w", config.warmup);
    let round_ids: Vec<Vec<String>> = (1..=config.rounds.len())
        .map(|r| device_ids(&format!("r{r}"), config.devices))
        .collect();
    let site = match auth {
        Auth::Preregistered => {
            register_all(&server, warmup_ids.iter().chain(round_ids.iter().flatten()))?;
            None
        }
        Auth::SiteKey => Some(add_site(&server)?),
    };

    let t = Instant::now();
    let gen_threads = config.cores.max(1);
    let warmup_jobs = prepare(&server.url, &warmup_ids, gen_threads, site.as_ref())?;
    let mut round_jobs = Vec::with_capacity(round_ids.len());
    for ids in &round_ids {
        round_jobs.push(prepare(&server.url, ids, gen_threads, site.as_ref())?);
    }
    println!(
        "  prepared:    {total} CSRs (EC P-256) + WireGuard keys + bodies in {:.2} s on {gen_threads} threads",
        t.elapsed().as_secs_f64()
    );

    // With step-ca the bridge's TLS certificate comes from step-ca: trust its root.
    let client = match ca {
        Some(ca) => ca.http_client(),
        None => server.http_client(),
    };
    let health_url = format!("{}/healthz", server.url);
    let max_conc = config.rounds.iter().copied().max().unwrap_or(1);
    if !warmup_jobs.is_empty() {
        let n = warmup_jobs.len();
        let (stats, wall, _) =
            run_round(rt, &client, &health_url, warmup_jobs, max_conc, true, pids)?;
        println!(
            "  warm-up:     {n} enrollments at concurrency {max_conc} in {:.2} s, answers checked, {} failed",
            wall.as_secs_f64(),
            stats.failures()
        );
        if stats.failures() > 0 {
            bail!(
                "{} {} warm-up failed: {} of {n} enrollments; first: {}\n--- server log\n{}",
                signer.name(),
                auth.name(),
                stats.failures(),
                stats.first_error.unwrap_or_default(),
                server.log()
            );
        }
    }

    for (&concurrency, jobs) in config.rounds.iter().zip(round_jobs) {
        let n = jobs.len();
        let (stats, wall, cpu) =
            run_round(rt, &client, &health_url, jobs, concurrency, false, pids)?;
        let mut lat = stats.latencies_us;
        lat.sort_unstable();
        let failed = n - lat.len();
        let report = RoundReport {
            signer,
            auth,
            concurrency,
            enrollments: lat.len(),
            wall,
            p50: percentile(&lat, 50.0),
            p90: percentile(&lat, 90.0),
            p99: percentile(&lat, 99.0),
            max: lat.last().copied().unwrap_or(0),
            failures: failed,
            cpu,
            server_hwm_kib: pids.server.and_then(|p| try_status_kib(p, "VmHWM")),
        };
        println!(
            "  round:       concurrency {concurrency:>3}: {:>6.0} enrollments/s, p50 {:.2} ms, p99 {:.2} ms, {failed} failed",
            report.rate(),
            ms(report.p50),
            ms(report.p99)
        );
        if failed > 0 {
            let statuses: Vec<String> = stats
                .bad_status
                .iter()
                .map(|(s, c)| format!("{c}× HTTP {s}"))
                .collect();
            let log = server.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failures.push(format!(
                "{} {} concurrency {concurrency}: {failed} of {n} failed ({}{} transport errors); first: {}\n--- server log (last lines)\n{}",
                signer.name(),
                auth.name(),
                if statuses.is_empty() {
                    String::new()
                } else {
                    format!("{}, ", statuses.join(", "))
                },
                stats.transport_errors,
                stats.first_error.unwrap_or_default(),
                tail.join("\n")
            ));
        }
        reports.push(report);
    }
    if let Some(rss) = pids.server.and_then(|p| try_status_kib(p, "VmRSS")) {
        println!("  server VmRSS at the end: {:.1} MiB", rss as f64 / 1024.0);
    }
    Ok(())
}

/// Registers every id in one `device add --from-file` call.
fn register_all<'a>(server: &TestServer, ids: impl Iterator<Item = &'a String>) -> Result<()> {
    let list: PathBuf = server.tmp.path().join("bench-devices.txt");
    let mut text = String::new();
    let mut total = 0usize;
    for id in ids {
        text.push_str(id);
        text.push('\n');
        total += 1;
    }
    std::fs::write(&list, text).with_context(|| format!("writing {}", list.display()))?;
    let t = Instant::now();
    let list_arg = list.to_string_lossy().into_owned();
    let out = server.cli_ok(&["device", "add", "--from-file", &list_arg]);
    println!(
        "  registered:  {} in {:.2} s ({})",
        total,
        t.elapsed().as_secs_f64(),
        out.trim()
    );
    Ok(())
}

/// Creates the benchmark's site (`site add --json`) and returns its code and minted key.
fn add_site(server: &TestServer) -> Result<SiteAuth> {
    let out = server.cli_ok(&["site", "add", BENCH_SITE, "--name", "Benchmark", "--json"]);
    let minted: serde_json::Value =
        serde_json::from_str(&out).context("`site add --json` did not print JSON")?;
    let key = minted["enrollment_key"]
        .as_str()
        .context("`site add --json` printed no enrollment_key")?
        .to_owned();
    println!(
        "  site:        {BENCH_SITE}, key {}; nothing registered, limiter budget {BENCH_ENROLL_RATE}/s",
        minted["display"].as_str().unwrap_or("?")
    );
    Ok(SiteAuth {
        code: BENCH_SITE.into(),
        key,
    })
}
