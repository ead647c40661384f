# vcluster-standalone — build, test and benchmark entry points.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin

KUBE_VERSION := v1.36.3
KUBE_MAJOR := 1
KUBE_MINOR := 36
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUILD_DATE := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)

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
