# stowage — `make help` lists the targets.
GO      ?= go
TAGS    := containers_image_openpgp exclude_graphdriver_btrfs
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/stowage
PREFIX  ?= /usr
DESTDIR ?=
export CGO_ENABLED := 1

.PHONY: help build run deps test unit e2e bench install lint clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/stowage
	$(GO) build -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/stowage

run: build ## run the daemon in the foreground on the default policy (user mode, or system mode as root)
	./$(BIN) daemon

deps: ## install the Debian packages the tests need (as root)
	bash test/deps.sh

test: deps build ## install test dependencies, run every test (unit, integration, e2e)
	STOWAGE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags "$(TAGS)" -count=1 -timeout 60m ./...
	$(MAKE) e2e

unit: build ## run the Go tests only
	STOWAGE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags "$(TAGS)" -count=1 -timeout 60m ./...

e2e: build ## end-to-end tests under a real systemd in systemd-nspawn
	@if [ -x test/e2e/run.sh ]; then bash test/e2e/run.sh; else echo "e2e: none yet"; fi

bench: deps build ## benchmarks side by side with podman/skopeo; results in test/bench/results/
	@mkdir -p test/bench/results
	@set -e; for b in test/bench/*.sh; do echo "== $$b"; STOWAGE_BIN=$(CURDIR)/$(BIN) bash $$b; done

install: build ## install into $(DESTDIR)$(PREFIX)
	install -Dm755 $(BIN) $(DESTDIR)$(PREFIX)/bin/stowage
	install -Dm644 etc/stowage/stowage.toml $(DESTDIR)/etc/stowage/stowage.toml

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet -tags "$(TAGS)" ./...

clean: ## remove build output
	rm -rf bin
