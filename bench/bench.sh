#!/usr/bin/env bash
# make bench: one report, side by side, with plots. Runs the data-path figures
# (bench/datapath, both methods), the forwarding rate (bench/throughput) and new TCP
# connections per second against direct, HAProxy, nftables and an XDP floor (bench/conns),
# then writes bench/results/<date>-<host>/: each program's JSON and output, machine.txt,
# summary.md and the plots (bench/report). Needs root; about 8 minutes on 2 CPUs.
#
#   bench/bench.sh [--long]       --long: about 4 times as many rounds and samples
#   DATAPATH_ARGS=… THROUGHPUT_ARGS=… CONNS_ARGS=… bench/bench.sh   add flags to one program
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
if [ "$(id -u)" -ne 0 ]; then
  echo "bench: needs root (BPF, network namespaces)" >&2
  exit 1
fi

datapath=(-method both)
throughput=(-duration 4s -rounds 4)
conns=(-rounds 5 -duration 5s)
if [ "${1:-}" = "--long" ]; then
  datapath+=(-rounds 80)
  throughput=(-duration 16s -rounds 8)
  conns=(-rounds 15 -duration 10s)
elif [ -n "${1:-}" ]; then
  echo "usage: bench/bench.sh [--long]" >&2
  exit 2
fi
# shellcheck disable=SC2206 # the extra flags are split on purpose
datapath+=(${DATAPATH_ARGS:-}) throughput+=(${THROUGHPUT_ARGS:-}) conns+=(${CONNS_ARGS:-})

out="bench/results/$(date -u +%Y-%m-%d)-$(hostname -s)"
[ -e "$out" ] && out="$out-$(date -u +%H%M%S)"
mkdir -p "$out"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
{
  echo "date        $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit      $commit$(git diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "kernel      $(uname -r)"
  echo "cpu         $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cores       $(nproc)"
  echo "memory      $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo ?)"
  echo "load avg    $(cut -d' ' -f1-3 /proc/loadavg) at the start"
} >"$out/machine.txt"
cat "$out/machine.txt"

go build -o bin/lbd ./cmd/lbd
echo "== data path (bench/datapath ${datapath[*]})"
go run ./bench/datapath "${datapath[@]}" -json "$out/datapath.json" | tee "$out/datapath.txt"
echo "== forwarding rate (bench/throughput ${throughput[*]})"
go run ./bench/throughput "${throughput[@]}" -json "$out/throughput.json" | tee "$out/throughput.txt"
echo "== connections per second (bench/conns ${conns[*]})"
go run ./bench/conns -lbd bin/lbd "${conns[@]}" -json "$out/conns.json" | tee "$out/conns.txt"
echo "load avg    $(cut -d' ' -f1-3 /proc/loadavg) at the end" >>"$out/machine.txt"
go run ./bench/report -dir "$out" -commit "$commit"
echo "report: $out/summary.md"
