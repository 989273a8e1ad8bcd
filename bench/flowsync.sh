#!/usr/bin/env bash
# Flow sync's cost: flows scanned per second, and the bytes the flows at risk take on the
# wire, for a table of 100,000 flows of which about 1% are at risk. Needs root. Arguments
# go to the Go program (e.g. -flows 131072 -rounds 40).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
go run ./bench/flowsync "$@"
