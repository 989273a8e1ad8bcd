# lbd: `make demo` runs the main job on the embedded default config, `make test` runs every
# test. Both install their own dependencies (scripts/deps.sh). BPF tests, the demo and the
# benchmarks need root.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
GOFLAGS_TEST ?= -count=1 -p 2 -timeout 30m

.PHONY: all deps build generate check-generated fmt-bpf check-format vet lint test fuzz demo bench bench-throughput bench-flowsync clean

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

test: deps
	$(GO) test $(GOFLAGS_TEST) ./...
	$(MAKE) --no-print-directory fuzz

# the fuzz targets, each for FUZZTIME (a duration, or a count of inputs: 1000000x);
# `make test` runs them briefly, the seed corpora run in every `go test`
FUZZTIME ?= 10s
FUZZ_TARGETS := ./internal/dataplane:FuzzXDPLB ./internal/dataplane:FuzzBackend ./pkg/config:FuzzParse ./pkg/flowsync:FuzzDecode
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg; \
	done

demo: deps build
	./bin/lbd demo

bench: deps
	bench/datapath.sh
bench-throughput: deps ; bench/throughput.sh
bench-flowsync: deps ; bench/flowsync.sh

clean:
	rm -rf bin
