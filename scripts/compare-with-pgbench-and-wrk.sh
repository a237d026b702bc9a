#!/usr/bin/env bash
# Is the harness what it measures? labkit's seeding, query driver and HTTP driver, side by
# side with the tools a user would reach for, on the same server, interleaved.
#
#   scripts/compare-with-pgbench-and-wrk.sh [SECONDS]
#
# - seeding and query latency: `cargo run --release -p lab --example vs_pgbench` (pgbench -i,
#   pgbench -M simple; see that file);
# - HTTP: wrk against `labkit --example http_driver serve` vs labkit's load client driving the
#   same router in-process (server and driver share one runtime, as in a lab), 3 pairs.
# Run it on a quiet machine: with anything else running, the ratios mean little.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
command -v pgbench >/dev/null || export PATH="$PATH:$(ls -d /usr/lib/postgresql/*/bin | tail -1)"
command -v wrk >/dev/null || { echo "wrk is not installed (apt install wrk)"; exit 1; }

cargo build --release -p lab --example vs_pgbench -q
cargo build --release -p labkit --example http_driver -q
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
echo

./target/release/examples/vs_pgbench "$secs"
echo

driver=./target/release/examples/http_driver
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$driver serve "$port" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 0.5
for path in /hello /work; do
  echo "# HTTP $path, 8 connections, $secs s (wrk -t1 in its own process; labkit in-process)"
  for pair in 1 2 3; do
    w=$(wrk -t1 -c8 -d"${secs}s" "http://127.0.0.1:$port$path" | awk '/Requests\/sec/ {print $2}')
    l=$($driver drive lean 8 "$secs" "$path")
    echo "pair $pair: wrk $w req/s | labkit $l"
  done
  echo
done
