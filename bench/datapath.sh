#!/usr/bin/env bash
# Data-path benchmark: ns per packet of xdp_lb per scenario beside the floors (XDP_PASS,
# IPIP push + XDP_TX, and the wrapper's own cost), measured the same way in the same run,
# with the programs' sizes and each scenario's map lookups. Needs root. Arguments go to the
# Go program: -method wrap (default: Repeat through a restoring wrapper), call (one packet
# per call) or both; -rounds 40 for a longer run; -json FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
go run ./bench/datapath "$@"
