#!/usr/bin/env bash
# Throughput benchmark: xdp_lb's forwarding rate in Mpps with real XDP on veths
# (gen ─ lb ─ sink in network namespaces, a live-frames generator), beside two floors
# measured the same way in the same run. Needs root. Arguments go to the Go program
# (e.g. -duration 10s -rounds 10, -threads 1, -nice -10 on a machine shared with other work).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
go run ./bench/throughput "$@"
