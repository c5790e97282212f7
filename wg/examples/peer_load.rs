//! Gateway peer-load benchmark: how long the kernel takes to take N peers through
//! [`nexa_wg::reconcile`], and what one peer change costs on top of them.
//!
//! Needs root and the WireGuard module; `scripts/bench-wg.sh` runs it inside the QEMU guest.
//! Prints one `NEXA-METRIC name value unit` line per figure and `NEXA-CHECK name pass|fail`
//! lines for the properties it verifies. Usage: `peer_load [PEERS]` (default 10000).
//!
//! Loading a peer costs the kernel one Curve25519 operation (the static-static precomputation),
//! and that dominates. `peer_load --calibrate` times the same kind of operation in user space
//! (needs nothing); run in the guest and on the host it gives the emulation's slowdown, so the
//! benchmark script can also state what the load would take on the host's CPU.

use std::process::ExitCode;
use std::time::Instant;

use ipnet::IpNet;
use nexa_proto::WgPublicKey;
use nexa_wg::{IfName, InterfaceSpec, KernelLink, PeerSpec, Plan, PrivateKey, WgLink, reconcile};

fn peer(n: u32) -> PeerSpec {
    // Distinct, deterministic keys; the kernel's per-peer work does not depend on the value.
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&n.to_be_bytes());
    key[31] = 0x5a;
    let host = 2 + n;
    let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 200, 0, 0)) + host);
    PeerSpec {
        public_key: WgPublicKey::from_bytes(key),
        endpoint: None,
        allowed_ips: vec![IpNet::from(std::net::IpAddr::V4(ip))],
        persistent_keepalive: 0,
    }
}

fn metric(name: &str, value: f64, unit: &str) {
    println!("NEXA-METRIC {name} {value:.1} {unit}");
}

fn check(name: &str, ok: bool, detail: &str) -> bool {
    println!(
        "NEXA-CHECK {name} {} {detail}",
        if ok { "pass" } else { "fail" }
    );
    ok
}

/// Microseconds per X25519 scalar multiplication in user space.
fn calibrate() -> f64 {
    const ROUNDS: u32 = 2000;
    let mut sink = 0u8;
    let t = Instant::now();
    for i in 0..ROUNDS {
        let mut k = [7u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        let secret = x25519_dalek::StaticSecret::from(k);
        sink ^= x25519_dalek::PublicKey::from(&secret).as_bytes()[0];
    }
    std::hint::black_box(sink);
    t.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--calibrate") {
        metric("x25519-userspace", calibrate(), "us/op");
        return ExitCode::SUCCESS;
    }
    let peers: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    match run(peers) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("peer_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(count: u32) -> Result<bool, Box<dyn std::error::Error>> {
    let link = KernelLink::new();
    let name = IfName::parse("nexa-bench0")?;
    link.delete(&name)?;
    let mut spec = InterfaceSpec {
        name: name.clone(),
        private_key: PrivateKey::from_bytes([0x41; 32]),
        listen_port: Some(51999),
        addresses: vec![IpNet::V4(ipnet::Ipv4Net::new_assert(
            std::net::Ipv4Addr::new(10, 200, 0, 1),
            16,
        ))],
        peers: (0..count).map(peer).collect(),
        routes: Vec::new(),
    };

    metric("x25519-userspace", calibrate(), "us/op");
    let t = Instant::now();
    let plan = reconcile(&link, &spec)?;
    let load = t.elapsed();
    metric(
        &format!("gw-load-{count}-peers"),
        load.as_secs_f64() * 1000.0,
        "ms",
    );
    metric(
        "gw-load-rate",
        f64::from(count) / load.as_secs_f64(),
        "peers/s",
    );
    let mut ok = check(
        "gw-load-all-written",
        plan.upsert_peers.len() == count as usize,
        &format!("{} peers in the plan", plan.upsert_peers.len()),
    );

    let t = Instant::now();
    let state = link.read(&name)?;
    metric(
        &format!("gw-read-{count}-peers"),
        t.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    let present = state.as_ref().map_or(0, |s| s.peers.len());
    ok &= check(
        "gw-kernel-has-all-peers",
        present == count as usize,
        &format!("{present} in the kernel"),
    );

    let t = Instant::now();
    let again = reconcile(&link, &spec)?;
    metric(
        "gw-steady-full-pass",
        t.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );
    ok &= check(
        "gw-steady-pass-changes-nothing",
        again.is_empty(),
        &again.to_string(),
    );

    // One enrollment: a peer-only plan with one peer.
    let newcomer = peer(count);
    let one = Plan::peers(vec![newcomer.clone()], Vec::new());
    let t = Instant::now();
    link.apply(&name, &one)?;
    let single = t.elapsed();
    metric("gw-single-peer-add", single.as_secs_f64() * 1000.0, "ms");
    // Rewriting every peer would cost about as much as the load; one peer costs a tiny fraction.
    ok &= check(
        "gw-single-change-is-not-a-rewrite",
        single.as_secs_f64() * 100.0 < load.as_secs_f64(),
        &format!(
            "{:.1} ms for one peer vs {:.0} ms for all",
            single.as_secs_f64() * 1000.0,
            load.as_secs_f64() * 1000.0
        ),
    );

    // One revocation.
    let gone = Plan::peers(Vec::new(), vec![peer(0).public_key]);
    let t = Instant::now();
    link.apply(&name, &gone)?;
    metric(
        "gw-single-peer-remove",
        t.elapsed().as_secs_f64() * 1000.0,
        "ms",
    );

    // The full pass now sees exactly those two differences against the new spec.
    spec.peers.remove(0);
    spec.peers.push(newcomer);
    let after = reconcile(&link, &spec)?;
    ok &= check(
        "gw-incremental-matches-store",
        after.is_empty(),
        &after.to_string(),
    );
    let kept = link.read(&name)?.map_or(0, |s| s.peers.len());
    ok &= check(
        "gw-other-peers-untouched",
        kept == count as usize,
        &format!("{kept} peers"),
    );

    link.delete(&name)?;
    Ok(ok)
}
