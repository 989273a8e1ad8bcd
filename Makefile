# lbd: `make demo` runs the main job on the embedded default config, `make test` runs every
# test. Both install their own dependencies (scripts/deps.sh). BPF tests, the demo and the
# benchmarks need root.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
GOFLAGS_TEST ?= -count=1 -p 2 -timeout 30m

.PHONY: all deps build generate check-generated fmt-bpf check-format vet lint test rules fuzz soak demo bench bench-datapath bench-throughput bench-flowsync install clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -o bin/lbd ./cmd/lbd

# regenerate the BPF objects and their Go bindings (committed, so `go build` needs no clang)
generate: deps
	cd internal/dataplane && $(GO) generate ./...
	cd bench && $(GO) generate ./...

# fails when the committed BPF objects are not what the sources compile to
check-generated: generate
	@git diff --exit-code --stat -- internal/dataplane bench || \
	  { echo "generated BPF files are not up to date: run make generate and commit" >&2; exit 1; }

BPF_SOURCES := $(wildcard bpf/*.c bpf/*.h bench/bpf/*.c bench/bpf/*.h bench/throughput/bpf/*.c)

# format the BPF C with the project's .clang-format
fmt-bpf: deps
	clang-format-19 -i $(BPF_SOURCES)

# fails when Go or BPF C sources are not formatted
check-format: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt would change: $$out" >&2; exit 1; }
	clang-format-19 --dry-run --Werror $(BPF_SOURCES)

vet:
	$(GO) vet ./...

# the linters CI runs (.golangci.yml); installs golangci-lint into bin/ through the module proxy
lint:
	GOBIN=$(CURDIR)/bin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	bin/golangci-lint run ./...

test: deps rules
	$(GO) test $(GOFLAGS_TEST) ./...
	$(MAKE) --no-print-directory fuzz

# the alert rules: valid, and their unit tests (each alert fires and stays silent) pass
rules: deps
	promtool check rules configs/prometheus/lbd.rules.yml
	promtool test rules configs/prometheus/lbd.rules.test.yml

# the long soak (opt-in): 200 busy connections through the VIP while the config is reloaded
# every 100 ms for SOAK (5m), lbd restarted 10 times and upgraded once; make test runs 20 s
SOAK ?= 5m
soak: deps
	LBD_SOAK=$(SOAK) $(GO) test -count=1 -timeout 60m -run TestSoakReloadsRestartsUpgrade -v ./cmd/lbd

# the fuzz targets: `make test` runs each for a count of inputs, about 10 s here (a count, not
# a duration: Go 1.26's fuzz coordinator can fail a duration run at its deadline with
# "context deadline exceeded" and no failing input, golang/go#75804); FUZZTIME (a count such
# as 1000000x, or a duration) runs every target for that long instead
FUZZ_TARGETS := ./internal/dataplane:FuzzXDPLB:40000x ./internal/dataplane:FuzzBackend:25000x \
	./pkg/config:FuzzParse:8000x ./cmd/lbd:FuzzPlan:2000x ./pkg/flowsync:FuzzDecode:80000x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$(if $(FUZZTIME),$(FUZZTIME),$${rest#*:}); \
	  echo "fuzz $$name ($$pkg) for $$n"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$n -fuzzminimizetime 2s $$pkg; \
	done

demo: deps build
	./bin/lbd demo

# one report with plots in bench/results/<date>-<host>/ (bench/bench.sh; about 8 minutes):
# data path, forwarding rate, connections/s against direct, HAProxy, nftables and a floor.
# BENCH_FLAGS=--long runs about 4 times longer.
bench: deps
	bench/bench.sh $(BENCH_FLAGS)
bench-datapath: deps ; bench/datapath.sh
bench-flowsync: deps ; bench/flowsync.sh
bench-throughput: deps ; bench/throughput.sh

# lbd in $(PREFIX)/bin, its systemd units in /etc/systemd/system (ExecStart names
# $(PREFIX)/bin/lbd), /etc/lbd/example.yaml (every field, for writing /etc/lbd/lbd.yaml),
# /etc/lbd/lbd-backend.env unless there is one, and the dashboards and alert rules in
# $(PREFIX)/share/lbd. DESTDIR stages it elsewhere.
PREFIX ?= /usr/local
DESTDIR ?=
install: build
	install -D -m 0755 bin/lbd $(DESTDIR)$(PREFIX)/bin/lbd
	install -d -m 0755 $(DESTDIR)/etc/systemd/system $(DESTDIR)/etc/lbd
	for u in lbd.service lbd-backend.service; do \
	  sed 's|/usr/local/bin/lbd|$(PREFIX)/bin/lbd|g' configs/systemd/$$u >$(DESTDIR)/etc/systemd/system/$$u && \
	  chmod 0644 $(DESTDIR)/etc/systemd/system/$$u || exit 1; \
	done
	install -m 0644 configs/example.yaml $(DESTDIR)/etc/lbd/example.yaml
	test -e $(DESTDIR)/etc/lbd/lbd-backend.env || install -m 0644 configs/systemd/lbd-backend.env $(DESTDIR)/etc/lbd/lbd-backend.env
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/lbd/grafana configs/grafana/lbd-lb-nodes.json configs/grafana/lbd-backends.json
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/lbd/prometheus configs/prometheus/lbd.rules.yml
	@echo "installed; next: write /etc/lbd/lbd.yaml (see /etc/lbd/example.yaml), systemctl daemon-reload && systemctl enable --now lbd"

clean:
	rm -rf bin
