#!/usr/bin/env bash
# Enrollment benchmark of nexa-server (release build, SQLite): enrollments/s and p50/p90/p99
# latency for N concurrent HTTPS keep-alive clients.
#
# Usage: scripts/bench.sh
# Environment (all optional, passed through to the benchmark):
#   NEXA_BENCH_DEVICES=10000          enrollments per round
#   NEXA_BENCH_CONCURRENCY=32         concurrent clients, or a list: 1,8,32,64 (one round each)
#   NEXA_BENCH_WARMUP=500             untimed, checked enrollments before the first round
#   NEXA_BENCH_CLIENT_THREADS=<cores> worker threads of the client runtime
#   NEXA_BENCH_MIN_RATE=<n>           fail when a round is below n enrollments/s
#   CARGO_TARGET_DIR                  cargo's target directory (default: ./target)
#   TMPDIR                            where the server's temporary data directory is made
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "bench: cargo bench -p nexa-tests --bench enroll (source: tests/benches/enroll.rs)"
echo "bench: target dir ${CARGO_TARGET_DIR:-$(pwd)/target}; server data dir under ${TMPDIR:-/tmp}"
echo "bench: figures below are measured by the benchmark client against a release nexa-server"
echo "bench: it starts (bench profile = release), on SQLite, over HTTPS with keep-alive."
echo

exec cargo bench -p nexa-tests --bench enroll "$@"
