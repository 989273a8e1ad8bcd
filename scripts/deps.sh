#!/usr/bin/env bash
# Installs what lbd's build, tests, demo and benchmarks need on Debian 12, and nothing that
# is already there: safe to run again. Go itself (1.26) is expected on PATH or in
# /usr/local/go.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have nft || need+=(nftables)
have clang-19 || need+=(clang-19)
have llc-19 || need+=(llvm-19)
have clang-format-19 || need+=(clang-format-19)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/x86_64-linux-gnu/asm/types.h ] || [ -f /usr/include/asm/types.h ] || need+=(linux-libc-dev)
have curl || need+=(curl)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! have go && [ ! -x /usr/local/go/bin/go ]; then
  echo "deps: Go 1.26 is required (https://go.dev/dl/); not found on PATH or in /usr/local/go" >&2
  exit 1
fi
