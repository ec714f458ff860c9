# stowage — `make help` lists the targets.
GO      ?= go
TAGS    := containers_image_openpgp exclude_graphdriver_btrfs
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin/stowage
PREFIX  ?= /usr
DESTDIR ?=
export CGO_ENABLED := 1

.PHONY: help build run deps test unit e2e qemu bench install docs deb rpm lint clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/stowage
	$(GO) build -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/stowage

run: build ## run the daemon in the foreground on the default policy (user mode, or system mode as root)
	./$(BIN) daemon

deps: ## install the Debian packages the tests need (as root)
	bash test/deps.sh

test: deps build ## install test dependencies, run every test (unit, integration, e2e, qemu)
	STOWAGE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags "$(TAGS)" -count=1 -timeout 60m ./...
	$(MAKE) e2e
	$(MAKE) qemu

unit: build ## run the Go tests only
	STOWAGE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags "$(TAGS)" -count=1 -timeout 60m ./...

# The field matrix: Debian 12, 13 and sid, side by side; E2E_SYSTEMS=trixie
# (or any subset) selects.
E2E_SYSTEMS ?= bookworm trixie sid

e2e: deb ## end-to-end tests under a real systemd in systemd-nspawn on Debian 12, 13, sid (as root; E2E_SYSTEMS= selects)
	STOWAGE_E2E_SYSTEMS="$(E2E_SYSTEMS)" bash test/e2e/matrix.sh bin/stowage.deb

qemu: build ## prune against a kernel that enforces disk quotas: Debian 12's kernel in qemu (TCG; as root)
	bash test/qemu/quota.sh $(BIN)

bench: deps build ## benchmarks side by side with podman/skopeo; results in test/bench/results/
	@mkdir -p test/bench/results
	@set -e; for b in test/bench/*.sh; do echo "== $$b"; STOWAGE_BIN=$(CURDIR)/$(BIN) bash $$b; done

SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd
DBUSDIR     ?= $(PREFIX)/share/dbus-1
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
CATALOG     := service/journal/stowage.catalog
DOCSDIR     := bin/docs
# Units and D-Bus files name /usr/bin/stowage; point them at $(PREFIX)/bin.
FIXBIN       = sed -e 's|/usr/bin/stowage|$(PREFIX)/bin/stowage|g'

docs: build ## generate man pages and shell completions into bin/docs
	rm -rf $(DOCSDIR)
	./$(BIN) gendocs $(DOCSDIR)

install: build docs ## install into $(DESTDIR)$(PREFIX) (FHS layout; PREFIX=/usr for packages)
	install -Dm755 $(BIN) $(DESTDIR)$(PREFIX)/bin/stowage
	install -Dm644 etc/stowage/stowage.toml $(DESTDIR)$(SYSCONFDIR)/stowage/stowage.toml
	install -d $(DESTDIR)$(UNITDIR)/user $(DESTDIR)$(UNITDIR)/system $(DESTDIR)$(UNITDIR)/catalog
	for m in user system; do for u in stowage.socket stowage.service stowage.timer stowage-metrics.socket; do \
		$(FIXBIN) units/$$m/$$u >$(DESTDIR)$(UNITDIR)/$$m/$$u && chmod 644 $(DESTDIR)$(UNITDIR)/$$m/$$u; done; done
	$(FIXBIN) units/user/stowage-agent.service >$(DESTDIR)$(UNITDIR)/user/stowage-agent.service
	chmod 644 $(DESTDIR)$(UNITDIR)/user/stowage-agent.service
	install -d $(DESTDIR)$(SYSCONFDIR)/xdg/autostart
	$(FIXBIN) etc/xdg/autostart/stowage-agent.desktop >$(DESTDIR)$(SYSCONFDIR)/xdg/autostart/stowage-agent.desktop
	chmod 644 $(DESTDIR)$(SYSCONFDIR)/xdg/autostart/stowage-agent.desktop
	install -d $(DESTDIR)$(DBUSDIR)/services $(DESTDIR)$(DBUSDIR)/system-services $(DESTDIR)$(DBUSDIR)/system.d
	$(FIXBIN) units/dbus/session.service >$(DESTDIR)$(DBUSDIR)/services/io.github.stowage.Stowage1.service
	$(FIXBIN) units/dbus/system.service >$(DESTDIR)$(DBUSDIR)/system-services/io.github.stowage.Stowage1.service
	chmod 644 $(DESTDIR)$(DBUSDIR)/services/*.service $(DESTDIR)$(DBUSDIR)/system-services/*.service
	install -m644 units/dbus/io.github.stowage.Stowage1.conf $(DESTDIR)$(DBUSDIR)/system.d/
	install -Dm644 units/polkit/io.github.stowage.policy $(DESTDIR)$(PREFIX)/share/polkit-1/actions/io.github.stowage.policy
	install -Dm644 packaging/prometheus/stowage-alerts.yml $(DESTDIR)$(PREFIX)/share/stowage/prometheus/stowage-alerts.yml
	install -Dm644 packaging/prometheus/stowage-alerts_test.yml $(DESTDIR)$(PREFIX)/share/stowage/prometheus/stowage-alerts_test.yml
	install -Dm644 packaging/grafana/stowage-dashboard.json $(DESTDIR)$(PREFIX)/share/stowage/grafana/stowage-dashboard.json
	if [ -f $(CATALOG) ]; then install -m644 $(CATALOG) $(DESTDIR)$(UNITDIR)/catalog/stowage.catalog; \
		else echo "install: warning: $(CATALOG) missing, no journal catalog" >&2; fi
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	for f in $(DOCSDIR)/man1/*.1; do gzip -9nc $$f >$(DESTDIR)$(MANDIR)/man1/$${f##*/}.gz; done
	gzip -9nc $(DOCSDIR)/man5/stowage.toml.5 >$(DESTDIR)$(MANDIR)/man5/stowage.toml.5.gz
	chmod 644 $(DESTDIR)$(MANDIR)/man1/*.gz $(DESTDIR)$(MANDIR)/man5/*.gz
	install -Dm644 $(DOCSDIR)/completions/bash/stowage $(DESTDIR)$(BASHCOMPDIR)/stowage
	install -Dm644 $(DOCSDIR)/completions/zsh/_stowage $(DESTDIR)$(ZSHCOMPDIR)/_stowage
	install -Dm644 $(DOCSDIR)/completions/fish/stowage.fish $(DESTDIR)$(FISHCOMPDIR)/stowage.fish

deb: build ## build the Debian package into bin/ (dpkg-deb from a staged tree)
	VERSION=$(VERSION) bash packaging/deb/build.sh

rpm: ## build the RPM (needs rpmbuild) into bin/rpm
	VERSION=$(VERSION) bash packaging/rpm/build.sh

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet -tags "$(TAGS)" ./...

clean: ## remove build output
	rm -rf bin
