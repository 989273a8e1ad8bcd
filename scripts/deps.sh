#!/usr/bin/env bash
# Installs what lbd's build, tests, demo and benchmarks need on Debian 12 (BIRD 2 included:
# the test bed's router), and nothing that is already there: safe to run again. Go itself (1.26) is expected on PATH or in
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
# promtool checks the alert rules; the Prometheus end-to-end test runs prometheus itself
have promtool && have prometheus || need+=(prometheus)
# BIRD 2: the test bed's router (BGP from the LB nodes, ECMP into its kernel)
have bird || [ -x /usr/sbin/bird ] || need+=(bird2)
# make bench: the load generator and the load balancers lbd is compared with (their
# services stay stopped: the benchmark starts its own copies in the test bed's namespaces)
have wrk || need+=(wrk)
have haproxy || need+=(haproxy)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # the tests run their own copies of the daemons they need (prometheus): keep the
  # packages' services from starting on install (policy-rc.d, "action forbidden", is how
  # Debian's invoke-rc.d and deb-systemd-invoke are told so), unless a policy is already set
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the package starts BIRD as a system service; the tests run their own in a namespace
  if [[ " ${need[*]} " == *" bird2 "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now bird.service >/dev/null 2>&1 || true
    echo "deps: bird2's system service stopped and disabled (the test bed runs its own BIRD)"
  fi
fi

if ! have go && [ ! -x /usr/local/go/bin/go ]; then
  echo "deps: Go 1.26 is required (https://go.dev/dl/); not found on PATH or in /usr/local/go" >&2
  exit 1
fi
