# vcluster-standalone — build, test and benchmark entry points.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin

KUBE_VERSION := v1.36.3
KUBE_MAJOR := 1
KUBE_MINOR := 36
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The last commit's date, not now: rebuilding unchanged sources gives the same binary.
BUILD_DATE := $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)

# Every embedded Kubernetes component reports KUBE_VERSION; without these the
# components say v0.0.0-master and version-skew checks misbehave.
VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
LDFLAGS := -s -w \
	$(foreach p,$(VERSION_PKGS),-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=$(KUBE_MAJOR) -X $(p).gitMinor=$(KUBE_MINOR) -X $(p).gitTreeState=clean -X $(p).buildDate=$(BUILD_DATE)) \
	-X github.com/vcluster-standalone/vcluster-standalone/pkg/version.Version=$(VERSION)
export LDFLAGS

.PHONY: all build test unit integration e2e lab lab-down bench vet fmt clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vcluster-standalone ./cmd/vcluster-standalone
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/node-agent ./cmd/node-agent

# Unit tests run beside the code; integration tests start the real binary on free ports.
test: build vet
	VCS_BINARY=$(BIN)/vcluster-standalone $(GO) test -ldflags '$(LDFLAGS)' -count=1 -timeout 30m ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

bench: build
	hack/bench-controlplane.sh $(BIN)/vcluster-standalone

clean:
	rm -rf $(BIN)

# ---- lab and end-to-end suite (owned by test/vm, test/e2e) -------------------
# `make lab` boots 1 control plane + 2 nodes as systemd-nspawn machines and
# installs the freshly built binaries with packaging/install.sh; `make lab-down`
# removes everything it made. `make e2e` runs test/e2e against its own lab
# (always torn down) and keeps node logs in $(E2E_LOGS) when a test fails.
LAB := $(CURDIR)/test/vm/lab
E2E_LOGS ?= $(CURDIR)/test/e2e/logs

lab: build
	LAB_BIN=$(BIN) $(LAB) up

lab-down:
	$(LAB) down

e2e: build
	@if [ -f /run/vcluster-standalone-lab/nodes ]; then echo "e2e: removing the running lab first (the suite brings up its own)"; $(LAB) down; fi
	@rc=0; \
	LAB_BIN=$(BIN) LAB_JOIN=0 VCS_LAB=$(LAB) VCS_E2E_LOGS=$(E2E_LOGS) VCS_BINARY=$(BIN)/vcluster-standalone \
		$(GO) test -tags e2e -count=1 -timeout 40m -v ./test/e2e/ || rc=$$?; \
	if [ -f /run/vcluster-standalone-lab/nodes ]; then \
		[ $$rc -eq 0 ] || $(LAB) logs $(E2E_LOGS) || true; \
		$(LAB) down || rc=1; \
	fi; \
	[ $$rc -eq 0 ] || echo "e2e failed; node logs (if any) in $(E2E_LOGS)"; \
	exit $$rc
# ---- end of lab and end-to-end block -----------------------------------------
