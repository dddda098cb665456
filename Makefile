# seatd: `make run` runs the whole system, `make test` runs every test.
GO      ?= go
# A count, not a duration: a duration-based -fuzztime can fail a target with
# a bare "context deadline exceeded" and no failing input (Go issue 75804,
# a race in the fuzz coordinator, not fixed in go1.26).
FUZZTIME ?= 100000x
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
STATICCHECK_VERSION ?= v0.8.2
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: run test check lint unit fuzz bench bench-go build clean

run:
	$(GO) run ./cmd/seatd serve

build:
	$(GO) build -o bin/ ./cmd/...

# Every test: formatting, vet, the race-enabled suite against real Postgres
# and JetStream, then each fuzz target for $(FUZZTIME) executions.
test: check lint unit fuzz

check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...
	@tmp=$$(mktemp -d); cp go.mod go.sum $$tmp/; $(GO) mod tidy; \
	if ! cmp -s go.mod $$tmp/go.mod; then cp $$tmp/go.mod $$tmp/go.sum .; echo "go mod tidy would change go.mod"; exit 1; fi; rm -rf $$tmp

# golangci-lint v2 with its default linters (errcheck, govet, ineffassign,
# staticcheck, unused), every finding listed. Installed when missing or
# older than v2. Not (yet) part of `make test`.
lint:
	@golangci-lint version 2>/dev/null | grep -q 'version v\?2\.' || \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	golangci-lint run --max-issues-per-linter=0 --max-same-issues=0 ./...

# deploy/ is a module of its own (Kubernetes, kustomize and compose
# libraries stay out of seatd's go.mod); its tests parse and run the
# deployment files. The cluster tests need nats-server >= 2.10 in GOBIN or
# PATH (.ci/run installs it).
unit:
	$(GO) test -race -count=1 -timeout 30m ./...
	cd deploy && $(GO) test -count=1 -timeout 10m ./...

FUZZ_TARGETS := \
	./events:FuzzDecodeSeatAssign \
	./events:FuzzDecodeRequest \
	./events:FuzzEdgeQueueRoundTrip \
	./ingress/importer:FuzzParse

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

# Throughput (not part of `make test`): every `seatctl bench` mode at its
# default size against the real seatd binary, next to pgbench-ceiling's tps
# from the same run. BENCHFLAGS adds flags, e.g. BENCHFLAGS='--mode queue'.
PGBENCH_CEILING ?= $(wildcard ../shared/perf/pgbench-ceiling)
bench: build
	bin/seatctl bench --mode all $(if $(PGBENCH_CEILING),--pgbench-ceiling $(PGBENCH_CEILING)) $(BENCHFLAGS)

# The Go micro-benchmarks (worker batch sizes, JetStream fsync, import).
bench-go:
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout 30m ./...

clean:
	rm -rf bin .seatd
