# pgcloudbackup — the two set-up commands are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin/pgcloudbackup
# Tests need a few minutes on 2 cores; the deadline is a guard, not a target.
TEST_TIMEOUT ?= 40m

.PHONY: all build demo test test-unit deps vet fmt bench clean release-check release-snapshot bench-wal

all: build

# CGO_ENABLED=0 as the release archives (.goreleaser.yaml): a static binary
# maps no libc and no dynamic loader (1.5 MiB less resident).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pgcloudbackup

# A throw-away PostgreSQL cluster backed up into a local file:// bucket.
demo: build
	scripts/demo.sh

# Installs what the tests need (PostgreSQL server binaries, zstd/lz4 CLIs,
# MinIO, fake-gcs-server, Azurite), then vets and runs every test.
# Every package runs under the race detector, e2e included (its test code:
# fault proxy, output readers); the binary e2e runs is built without it, so
# the slow end-to-end cases cost little more. Measured on 2 shared cores,
# packages one at a time: e2e 5.5 min, storage 1 min, restore 1 min, engine
# 1 min, the rest 1.5 min: well inside CI's 30. RACE= turns it off.
RACE ?= -race
test: deps vet
	$(GO) test $(RACE) -count=1 -timeout $(TEST_TIMEOUT) ./...

# Fast tests only (no servers): what a laptop without them can run.
test-unit:
	$(GO) test -count=1 -short ./...

deps:
	scripts/install-test-deps.sh

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Throughput and peak memory against pg_basebackup on the same data.
bench: build deps
	scripts/bench.sh
	scripts/bench-wal.sh

# WAL archiving alone: wal-push/wal-fetch rates, a real recovery with and
# without prefetch, and whether archiving keeps up with pgbench -c 4.
bench-wal: deps
	scripts/bench-wal.sh

# Release archives (.goreleaser.yaml) with the pinned goreleaser: check the
# config, then build every archive into dist/ without publishing anything.
release-check:
	scripts/install-release-tools.sh
	$${PGCLOUDBACKUP_TOOLS:-.tools}/bin/goreleaser check

release-snapshot: release-check
	$${PGCLOUDBACKUP_TOOLS:-.tools}/bin/goreleaser release --snapshot --clean --skip=publish

clean:
	rm -rf bin dist demo
