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
//! - `NEXA_BENCH_MIN_RATE`: if set, exit non-zero when a round is slower (enrollments/s).
//!
//! Every CSR, WireGuard key, URL and JSON body is made before timing, so a client only sends
//! prepared bytes and reads the answer. Any answer other than 201 fails the benchmark.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nexa_proto::{EnrollRequest, EnrollResponse};
use nexa_testkit::{TestServer, make_csr, server_bin, wg_public_key};
use reqwest::header::{CONTENT_TYPE, HeaderValue};

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;
/// Base of the WireGuard subnet; its prefix is widened to fit every device of the run.
const SUBNET_BASE: &str = "10.64.0.0";

#[derive(Debug)]
struct Config {
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
        Ok(Self {
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
/// `threads` threads.
fn prepare(base_url: &str, ids: &[String], threads: usize) -> Result<Vec<Job>> {
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
                                machine_uid: None,
                                hostname: None,
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

/// Process CPU time (user + system, all threads) in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Busy CPU time of the whole machine (all cores, everything but idle and iowait) in seconds,
/// from the first line of `/proc/stat`.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let busy: f64 = ticks.iter().take(8).sum::<f64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy / USER_HZ)
}

/// CPU counters at one instant: the server, this process and the whole machine.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    server: Option<f64>,
    client: Option<f64>,
    machine: Option<f64>,
}

impl CpuSnapshot {
    fn take(server_pid: Option<&str>) -> Self {
        Self {
            server: server_pid.and_then(cpu_seconds),
            client: cpu_seconds("self"),
            machine: machine_busy_seconds(),
        }
    }

    /// CPU seconds used between `self` and `later`.
    fn until(self, later: Self) -> Self {
        let d = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        Self {
            server: d(self.server, later.server),
            client: d(self.client, later.client),
            machine: d(self.machine, later.machine),
        }
    }

    /// Busy CPU seconds of everything else on the machine.
    fn other(self) -> Option<f64> {
        let own = self.server.unwrap_or(0.0) + self.client?;
        self.machine.map(|m| (m - own).max(0.0))
    }
}

/// A `/proc/<pid>/status` field in KiB (e.g. `VmHWM`).
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The pid of the `nexa-server serve` using `data_dir` (the kit keeps its `Child` private).
fn find_server_pid(data_dir: &Path) -> Option<String> {
    let needle = data_dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mut args = cmdline.split(|&b| b == 0);
            let is_server = args.next()?.ends_with(b"nexa-server");
            let mut has_dir = false;
            let mut serves = false;
            for a in args {
                has_dir |= a == needle;
                serves |= a == b"serve";
            }
            (is_server && has_dir && serves).then_some(name)
        })
}

/// Filesystem type holding `path`, from `/proc/self/mounts` (longest mount-point prefix).
fn fs_type(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
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
    server_pid: Option<&str>,
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
        let cpu0 = CpuSnapshot::take(server_pid);
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
        Ok((total, wall, cpu0.until(CpuSnapshot::take(server_pid))))
    })
}

fn device_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-{prefix}-{i:06}")).collect()
}

fn print_table(reports: &[RoundReport], cores: usize) {
    println!();
    println!(
        "{:>5} {:>11} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>11}",
        "conc",
        "enrollments",
        "wall s",
        "enroll/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "srv CPU µs",
        "cli CPU µs",
        "other CPU",
        "srv HWM MiB"
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
    for r in reports {
        let per = |cpu: Option<f64>| cpu.map(|s| s * 1e6 / r.enrollments.max(1) as f64);
        println!(
            "{:>5} {:>11} {:>8.2} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>10} {:>9} {:>11}",
            r.concurrency,
            r.enrollments,
            r.wall.as_secs_f64(),
            r.rate(),
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.max),
            opt(per(r.cpu.server)),
            opt(per(r.cpu.client)),
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
    println!("srv/cli CPU µs = CPU time (user+system, all threads) per enrollment of the server /");
    println!(
        "this client process during the timed part; other CPU = busy CPU of everything else on"
    );
    println!(
        "the machine, in % of all cores (should be ~0%: more means the figures are disturbed);"
    );
    println!("srv HWM = server VmHWM (peak RSS) so far.");
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    let total = config.total_devices();
    let subnet = subnet_for(total)?;
    let bin = server_bin();

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
        "  server:      {} (release build, HTTPS, HTTP/1.1 keep-alive)",
        bin.display()
    );
    println!(
        "  note:        the client runs on the same {} cores as the server and competes with it for CPU;",
        config.cores
    );
    println!(
        "               CSRs, keys and bodies are prepared before timing so the client only does HTTPS I/O."
    );

    let server = TestServer::start_with(&["--wg-subnet", &subnet], &[("NEXA_LOG", "warn")]);
    let pid = find_server_pid(&server.data_dir);
    println!(
        "  store:       SQLite (WAL, synchronous=FULL) in {} on {}; WireGuard subnet {subnet}",
        server.data_dir.display(),
        fs_type(&server.data_dir)
    );
    println!(
        "  server pid:  {}",
        pid.as_deref().unwrap_or("not found (no CPU / RSS figures)")
    );

    // Every device id of the run, registered in one CLI call.
    let warmup_ids = device_ids("w", config.warmup);
    let round_ids: Vec<Vec<String>> = (1..=config.rounds.len())
        .map(|r| device_ids(&format!("r{r}"), config.devices))
        .collect();
    let list: PathBuf = server.tmp.path().join("bench-devices.txt");
    let mut text = String::with_capacity(total * 20);
    for id in warmup_ids.iter().chain(round_ids.iter().flatten()) {
        text.push_str(id);
        text.push('\n');
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

    let t = Instant::now();
    let gen_threads = config.cores.max(1);
    let warmup_jobs = prepare(&server.url, &warmup_ids, gen_threads)?;
    let mut round_jobs = Vec::with_capacity(round_ids.len());
    for ids in &round_ids {
        round_jobs.push(prepare(&server.url, ids, gen_threads)?);
    }
    println!(
        "  prepared:    {total} CSRs (EC P-256) + WireGuard keys + bodies in {:.2} s on {gen_threads} threads",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.client_threads)
        .enable_all()
        .build()
        .context("client tokio runtime")?;
    let client = server.http_client();
    let health_url = format!("{}/healthz", server.url);

    let max_conc = config.rounds.iter().copied().max().unwrap_or(1);
    if !warmup_jobs.is_empty() {
        let n = warmup_jobs.len();
        let (stats, wall, _) = run_round(
            &rt,
            &client,
            &health_url,
            warmup_jobs,
            max_conc,
            true,
            pid.as_deref(),
        )?;
        println!(
            "  warm-up:     {n} enrollments at concurrency {max_conc} in {:.2} s, answers checked, {} failed",
            wall.as_secs_f64(),
            stats.failures()
        );
        if stats.failures() > 0 {
            bail!(
                "warm-up failed: {} of {n} enrollments; first: {}\n--- server log\n{}",
                stats.failures(),
                stats.first_error.unwrap_or_default(),
                server.log()
            );
        }
    }

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (&concurrency, jobs) in config.rounds.iter().zip(round_jobs) {
        let n = jobs.len();
        let (stats, wall, cpu) = run_round(
            &rt,
            &client,
            &health_url,
            jobs,
            concurrency,
            false,
            pid.as_deref(),
        )?;
        let mut lat = stats.latencies_us;
        lat.sort_unstable();
        let failed = n - lat.len();
        let report = RoundReport {
            concurrency,
            enrollments: lat.len(),
            wall,
            p50: percentile(&lat, 50.0),
            p90: percentile(&lat, 90.0),
            p99: percentile(&lat, 99.0),
            max: lat.last().copied().unwrap_or(0),
            failures: failed,
            cpu,
            server_hwm_kib: pid.as_deref().and_then(|p| status_kib(p, "VmHWM")),
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
            failures.push(format!(
                "concurrency {concurrency}: {failed} of {n} failed ({}{} transport errors); first: {}",
                if statuses.is_empty() {
                    String::new()
                } else {
                    format!("{}, ", statuses.join(", "))
                },
                stats.transport_errors,
                stats.first_error.unwrap_or_default()
            ));
        }
        reports.push(report);
    }

    print_table(&reports, config.cores);
    if let Some(hwm) = pid.as_deref().and_then(|p| status_kib(p, "VmRSS")) {
        println!("server VmRSS at the end: {:.1} MiB", hwm as f64 / 1024.0);
    }
    let best = reports.iter().map(RoundReport::rate).fold(0.0, f64::max);
    println!("best round: {best:.0} enrollments/s (target on a 2-core machine: >= 2000/s)");

    if !failures.is_empty() {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{} enrollment(s) failed:\n  {}\n--- server log (last lines)\n{}",
            reports.iter().map(|r| r.failures).sum::<usize>(),
            failures.join("\n  "),
            tail.join("\n")
        );
    }
    if let Some(min) = config.min_rate
        && let Some(slow) = reports.iter().find(|r| r.rate() < min)
    {
        bail!(
            "concurrency {} reached {:.0} enrollments/s, below NEXA_BENCH_MIN_RATE={min}",
            slow.concurrency,
            slow.rate()
        );
    }
    Ok(())
}
