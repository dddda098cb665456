# seatd: `make run` runs the whole system, `make test` runs every test.
GO      ?= go
FUZZTIME ?= 5s
export PATH := $(PATH):/usr/local/go/bin

.PHONY: run test check unit fuzz bench build clean

run:
	$(GO) run ./cmd/seatd serve

build:
	$(GO) build -o bin/ ./cmd/...

# Every test: formatting, vet, the race-enabled suite against real Postgres
# and JetStream, then each fuzz target for $(FUZZTIME).
test: check unit fuzz

check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...

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
	./cmd/internal/importfile:FuzzParse

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

# Throughput measurements (not part of `make test`).
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout 30m ./...

clean:
	rm -rf bin .seatd
