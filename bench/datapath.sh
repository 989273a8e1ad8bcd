#!/usr/bin/env bash
# Data-path benchmark: ns/packet of xdp_lb per scenario beside the XDP_PASS and IPIP floors,
# measured the same way in the same run. Needs root. Arguments go to the Go program
# (e.g. -rounds 80).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
go run ./bench/datapath "$@"
