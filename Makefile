# dwp-sre — see README.md. The two set-up commands on a fresh machine: `make run`, `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
GOTEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: run test build cluster services lint bench fuzz clean reset

## run: the whole backend on the local control plane (builds what it needs first)
run: services build
	@bash sandbox/scripts/run.sh

## test: unit and integration tests on a fresh local control plane
test: services
	@bash sandbox/scripts/with-cluster.sh $(GO) test $(GOTEST_FLAGS) ./...

## bench: benchmarks (on a fresh local control plane)
bench: services
	@bash sandbox/scripts/with-cluster.sh $(GO) test -run '^$$' -bench . -benchmem $(GOTEST_FLAGS) ./...
	@bash sandbox/scripts/with-cluster.sh $(GO) run ./sandbox/cmd/dwp-ssebench $(SSEBENCH_FLAGS)

## build: the project's binaries and the control plane's components into bin/
build:
	$(GO) build -o $(BIN)/ ./cmd/... ./sandbox/cmd/... ./watcher ./sse-router
	@$(BIN)/dwp-cluster build

## cluster: the local control plane alone, in the foreground (Ctrl-C stops it)
cluster: services
	$(GO) build -o $(BIN)/dwp-cluster ./sandbox/cmd/dwp-cluster
	@$(BIN)/dwp-cluster up --dir .state/cluster

## services: Redis and Postgres on their default loopback ports
services:
	@bash sandbox/scripts/services.sh

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## reset: forget the local control plane's state (it must be stopped)
reset:
	$(GO) run ./sandbox/cmd/dwp-cluster reset --dir .state/cluster

clean:
	rm -rf $(BIN)
