# dwp-sre — see README.md. The two set-up commands on a fresh machine: `make run`, `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
GOTEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: run test build cluster services lint bench fuzz clean reset apidocs console images

## run: the whole backend on the local control plane (builds what it needs first)
run: services apidocs console build
	@bash sandbox/scripts/run.sh

## test: unit and integration tests on a fresh local control plane
test: services apidocs console
	@bash sandbox/scripts/with-cluster.sh $(GO) test $(GOTEST_FLAGS) ./...

## bench: benchmarks (on a fresh local control plane)
bench: services
	@bash sandbox/scripts/with-cluster.sh $(GO) test -run '^$$' -bench . -benchmem $(GOTEST_FLAGS) ./...
	@bash sandbox/scripts/with-cluster.sh $(GO) run ./sandbox/cmd/dwp-ssebench $(SSEBENCH_FLAGS)

## build: the project's binaries and the control plane's components into bin/
build: apidocs console
	$(GO) build -o $(BIN)/ ./cmd/... ./sandbox/cmd/... ./watcher ./sse-router
	@$(BIN)/dwp-cluster build

## images: OCI images of the function, the watcher and the router, built without a container engine, into .state/images/<name>.tar; deploy/overlays/production/images names them by digest
IMAGES_CA_CERTS ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
# The version is `git describe --always`, with -dirty when tracked files differ from HEAD; the
# component this target writes does not count, or a second run would name other images.
IMAGES_COMPONENT := deploy/overlays/production/images
images: apidocs console
	$(GO) run ./sandbox/cmd/dwp-images -out .state/images \
		-version "$$(v=$$(git describe --always 2>/dev/null) || v=dev; git diff --quiet HEAD -- . ':(exclude)$(IMAGES_COMPONENT)' 2>/dev/null || v=$$v-dirty; echo $$v)" \
		-revision "$$(git rev-parse --verify -q HEAD 2>/dev/null)" \
		-ca-certs "$(IMAGES_CA_CERTS)"

## apidocs: the /docs page's Swagger UI, pinned by internal/apidocs/package-lock.json, into internal/apidocs/dist (embedded; never committed)
APIDOCS := internal/apidocs
apidocs: $(APIDOCS)/dist/.built

$(APIDOCS)/dist/.built: $(APIDOCS)/package.json $(APIDOCS)/package-lock.json
	@command -v npm >/dev/null || { . sandbox/scripts/apt.sh; apt_install npm; }
	cd $(APIDOCS) && npm ci --ignore-scripts --no-audit --no-fund
	cp $(addprefix $(APIDOCS)/node_modules/swagger-ui-dist/,swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE) $(APIDOCS)/dist/
	@touch $@

## console: the router's web console, bundled by esbuild (pinned by sse-router/console/package-lock.json) into sse-router/console/dist (embedded; never committed)
CONSOLE := sse-router/console
console: $(CONSOLE)/dist/.built

$(CONSOLE)/dist/.built: $(CONSOLE)/package.json $(CONSOLE)/package-lock.json $(wildcard $(CONSOLE)/src/*)
	@command -v npm >/dev/null || { . sandbox/scripts/apt.sh; apt_install npm; }
	cd $(CONSOLE) && npm ci --ignore-scripts --no-audit --no-fund
	cd $(CONSOLE) && node_modules/.bin/esbuild src/main.js --bundle --minify --format=esm --target=es2022 --legal-comments=linked --outfile=dist/console.js
	cd $(CONSOLE) && node_modules/.bin/esbuild src/console.css --bundle --minify --outfile=dist/console.css
	cp $(CONSOLE)/node_modules/uplot/dist/uPlot.min.css $(CONSOLE)/node_modules/uplot/LICENSE $(CONSOLE)/dist/
	@touch $@

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
	rm -rf $(BIN) $(APIDOCS)/node_modules $(CONSOLE)/node_modules
	find $(APIDOCS)/dist $(CONSOLE)/dist -mindepth 1 ! -name README.md -delete
