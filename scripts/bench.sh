#!/usr/bin/env bash
# Benchmarks: (1) nexa-server enrollments/s and p50/p90/p99 latency for N concurrent HTTPS
# keep-alive clients (release build, SQLite), with the built-in CA and through a real step-ca
# side by side (NEXA_BENCH_SIGNERS), for pre-registered and site-key devices (NEXA_BENCH_AUTH),
# and the site-key check alone as a share of an enrollment; (2) the agent daemon at rest: resident memory and
# CPU of the static musl release nexa-agent connected to a real mosquitto for 60 s
# (NEXA_BENCH_AGENT_SECS); (3) the agent during an update: peak memory while downloading and
# installing a NEXA_BENCH_OTA_MIB (256) MiB RAUC bundle, and download throughput vs curl.
# The gateway's 10,000-peer load is scripts/bench-wg.sh (QEMU guest).
#
# Usage: scripts/bench.sh
# Environment (all optional, passed through to the benchmark):
#   NEXA_BENCH_DEVICES=10000          enrollments per round
#   NEXA_BENCH_CONCURRENCY=32         concurrent clients, or a list: 1,8,32,64 (one round each)
#   NEXA_BENCH_WARMUP=500             untimed, checked enrollments before the first round
#   NEXA_BENCH_CLIENT_THREADS=<cores> worker threads of the client runtime
#   NEXA_BENCH_MIN_RATE=<n>           fail when a built-in round is below n enrollments/s
#   NEXA_BENCH_SIGNERS=builtin,stepca which signers to measure, one fresh server each
#   NEXA_BENCH_AUTH=preregistered,sitekey how devices are authorized, one fresh server per signer each
#   CARGO_TARGET_DIR                  cargo's target directory (default: ./target)
#   TMPDIR                            where the server's temporary data directory is made
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "bench: cargo bench -p nexa-tests --bench enroll (source: tests/benches/enroll.rs)"
echo "bench: target dir ${CARGO_TARGET_DIR:-$(pwd)/target}; server data dir under ${TMPDIR:-/tmp}"
echo "bench: figures below are measured by the benchmark client against a release nexa-server"
echo "bench: it starts (bench profile = release), on SQLite, over HTTPS with keep-alive."
echo

cargo bench -p nexa-tests --bench enroll "$@"

echo
echo "bench: agent at rest (source: tests/benches/agent_idle.rs), static musl release build"
cargo build --release --locked --target x86_64-unknown-linux-musl -p nexa-agent
target_dir="${CARGO_TARGET_DIR:-$(pwd)/target}"
NEXA_BENCH_AGENT_BIN="$target_dir/x86_64-unknown-linux-musl/release/nexa-agent" \
    cargo bench -p nexa-tests --bench agent_idle

echo
echo "bench: agent during an update (source: tests/benches/ota.rs): ${NEXA_BENCH_OTA_MIB:-256} MiB bundle,"
echo "bench: fake hawkBit on loopback, real RAUC; memory of the static musl release agent, download vs curl"
NEXA_BENCH_AGENT_BIN="$target_dir/x86_64-unknown-linux-musl/release/nexa-agent" \
    cargo bench -p nexa-tests --bench ota
