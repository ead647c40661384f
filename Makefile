# vcluster-standalone — build, test and benchmark entry points.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin

KUBE_VERSION := v1.36.3
RUNC_VERSION := v1.5.2
CONTAINERD_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/containerd/containerd/v2 2>/dev/null)
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
	-X github.com/vcluster-standalone/vcluster-standalone/pkg/version.Version=$(VERSION) \
	-X github.com/vcluster-standalone/vcluster-standalone/pkg/version.Runc=$(RUNC_VERSION) \
	-X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION:v%=%)
export LDFLAGS

.PHONY: all build test unit integration e2e lab lab-down bench vet fmt clean images system-images deps crds snapshot-crds csi-sanity

all: build

# The Debian packages the build, tests and lab need: installed when run as root,
# otherwise one line naming them and the command to run.
deps:
	@test/vm/install-deps.sh --check 2>/dev/null || test/vm/install-deps.sh

build: deps node-binaries system-images crds
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/vcluster-standalone ./cmd/vcluster-standalone
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/node-agent ./cmd/node-agent

# The programs node-agent installs in its bin dir and containerd executes:
# runc, containerd itself, its runc shim and the CNI plugin. Each is a small
# static binary of its own (never node-agent's ~70 ms of Kubernetes package
# initialisation per exec), embedded in node-agent (pkg/node/embedded,
# gitignored) with their checksums, so a start that finds them installed
# reads nothing of the embedded copies.
EMBED := pkg/node/embedded
NODE_BINARIES := containerd containerd-shim-runc-v2 vcs-cni
.PHONY: node-binaries $(addprefix $(EMBED)/,$(NODE_BINARIES))
node-binaries: $(EMBED)/runc $(addprefix $(EMBED)/,$(NODE_BINARIES))
	cd $(EMBED) && sha256sum runc $(NODE_BINARIES) >SHA256SUMS.tmp && \
		{ cmp -s SHA256SUMS.tmp SHA256SUMS && rm SHA256SUMS.tmp || mv SHA256SUMS.tmp SHA256SUMS; }

$(addprefix $(EMBED)/,$(NODE_BINARIES)): $(EMBED)/%:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

# runc, from its Go module at a pinned version: static, with seccomp
# (libseccomp-dev), embedded in node-agent which installs it at start.
$(BIN)/runc-$(RUNC_VERSION)/runc: | deps
	@mkdir -p $(@D)
	cd / && CGO_ENABLED=1 GOFLAGS= GOBIN=$(@D) $(GO) install -tags 'seccomp netgo osusergo urfave_cli_no_docs' \
		-ldflags '-s -w -extldflags -static -X main.version=$(RUNC_VERSION:v%=%)' github.com/opencontainers/runc@$(RUNC_VERSION)

$(EMBED)/runc: $(BIN)/runc-$(RUNC_VERSION)/runc
	cmp -s $< $@ || cp $< $@

# The CRDs the control plane installs, copied from their Go modules at build
# time (gitignored): ClusterNetworkPolicy's standard channel (pkg/controlplane/crds)
# and the VolumeSnapshot CRDs (pkg/csi/controller/snapshotcrds, below).
#
# module_dir,MODULE[@VERSION]: a shell command that downloads the module (at
# go.mod's version without @VERSION) and prints its directory in the module cache.
module_dir = $(GO) mod download -json $(1) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'
NETPOL_API_VERSION := v0.3.0
CRDS_EMBED := pkg/controlplane/crds
crds: $(CRDS_EMBED)/clusternetworkpolicies.yaml snapshot-crds

$(CRDS_EMBED)/clusternetworkpolicies.yaml: Makefile
	dir=$$($(call module_dir,sigs.k8s.io/network-policy-api@$(NETPOL_API_VERSION))) && \
		test -n "$$dir" && cp "$$dir/config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml" $@ && chmod 644 $@

# The VolumeSnapshot CRDs of the external-snapshotter client module go.mod
# pins, embedded in the control plane (pkg/csi/controller/snapshotcrds).
SNAPSHOT_CRDS := pkg/csi/controller/snapshotcrds
snapshot-crds:
	@dir=$$($(call module_dir,github.com/kubernetes-csi/external-snapshotter/client/v8)) && \
	test -n "$$dir" && \
	for k in volumesnapshotclasses volumesnapshotcontents volumesnapshots; do \
		cmp -s $$dir/config/crd/snapshot.storage.k8s.io_$$k.yaml $(SNAPSHOT_CRDS)/$$k.yaml || \
		install -m 0644 $$dir/config/crd/snapshot.storage.k8s.io_$$k.yaml $(SNAPSHOT_CRDS)/$$k.yaml; done

# csi-sanity from the csi-test module go.mod pins (hack/tools), for the
# storage e2e test, which runs it inside lab-cp (/run/lab/bin/csi-sanity).
csi-sanity:
	$(GO) build -o $(BIN)/csi-sanity github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity

# Unit tests run beside the code; integration tests start the real binary on free ports.
test: build vet
	VCS_BINARY=$(BIN)/vcluster-standalone $(GO) test -ldflags '$(LDFLAGS)' -count=1 -timeout 30m ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

bench: build images
	hack/bench-controlplane.sh $(BIN)/vcluster-standalone
	hack/bench-snapshot.sh $(BIN)/vcluster-standalone
	LAB_BIN=$(BIN) hack/bench-node.sh
	LAB_BIN=$(BIN) hack/bench-network.sh
	LAB_BIN=$(BIN) hack/bench-storage.sh
	LAB_BIN=$(BIN) hack/bench-netpol.sh

clean:
	rm -rf $(BIN)

# ---- system images (owned by images/, hack/ociimage, pkg/node/images) --------
# pause and CoreDNS are built from Go sources into OCI archives and embedded
# in node-agent (pkg/node/images/embedded), which imports them at start; the
# busybox image (from Debian's busybox-static) is for tests only. Names come
# from pkg/config/images.go; CoreDNS's version from images/coredns/go.mod.
IMAGES := $(BIN)/images
IMAGES_EMBED := pkg/node/images/embedded
PAUSE_IMAGE = $(shell sed -n 's/^[[:space:]]*PauseImage[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' pkg/config/images.go)
COREDNS_IMAGE = $(shell sed -n 's/^[[:space:]]*CoreDNSImage[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' pkg/config/images.go)
BUSYBOX_IMAGE := localhost/busybox:e2e
IMAGE_GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w'

images: $(IMAGES)/pause.tar $(IMAGES)/coredns.tar $(IMAGES)/busybox.tar

system-images: $(IMAGES_EMBED)/pause.tar $(IMAGES_EMBED)/coredns.tar

$(IMAGES_EMBED)/%.tar: $(IMAGES)/%.tar
	cp $< $@

$(IMAGES)/ociimage: $(filter-out %_test.go,$(wildcard hack/ociimage/*.go))
	@mkdir -p $(@D)
	$(GO) build -o $@ ./hack/ociimage

$(IMAGES)/pause: $(filter-out %_test.go,$(wildcard images/pause/*.go))
	@mkdir -p $(@D)
	$(IMAGE_GOBUILD) -o $@ ./images/pause

$(IMAGES)/pause.tar: $(IMAGES)/pause $(IMAGES)/ociimage pkg/config/images.go
	$(IMAGES)/ociimage -o $@ -name $(PAUSE_IMAGE) -file $<:/pause:0755 \
		-entrypoint '["/pause"]' -user 65535:65535

$(IMAGES)/coredns: $(filter-out %_test.go,$(wildcard images/coredns/*.go)) images/coredns/go.mod images/coredns/go.sum
	cd images/coredns && $(IMAGE_GOBUILD) -o $@ .

$(IMAGES)/coredns.tar: $(IMAGES)/coredns $(IMAGES)/ociimage pkg/config/images.go
	$(IMAGES)/ociimage -o $@ -name $(COREDNS_IMAGE) -file $<:/coredns:0755 \
		-entrypoint '["/coredns"]' -cmd '["-conf","/etc/coredns/Corefile"]' \
		-expose 53/udp -expose 53/tcp -expose 9153/tcp

# busybox-static from the Debian archive (apt-get download, no root needed to
# extract); every applet is a symlink in /bin.
$(IMAGES)/busybox/bin/busybox:
	@rm -rf $(IMAGES)/busybox && mkdir -p $(IMAGES)/busybox/deb
	cd $(IMAGES)/busybox/deb && apt-get download busybox-static
	dpkg-deb -x $(IMAGES)/busybox/deb/busybox-static_*.deb $(IMAGES)/busybox/root
	mkdir -p $(@D) $(IMAGES)/busybox/etc
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >$(IMAGES)/busybox/etc/passwd
	printf 'root:x:0:\nnogroup:x:65534:\n' >$(IMAGES)/busybox/etc/group
	cp $(IMAGES)/busybox/root/bin/busybox $@

$(IMAGES)/busybox.tar: $(IMAGES)/busybox/bin/busybox $(IMAGES)/ociimage
	$(IMAGES)/ociimage -o $@ -name $(BUSYBOX_IMAGE) -file $<:/bin/busybox:0755 \
		-file $(IMAGES)/busybox/etc/passwd:/etc/passwd -file $(IMAGES)/busybox/etc/group:/etc/group \
		$$($< --list | grep -vx busybox | sed 's|.*|-link /bin/&=busybox|') \
		-dir /tmp -dir /root -dir /usr/bin -dir /usr/sbin -dir /sbin \
		-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -cmd '["sh"]'
# ---- end of system images block ----------------------------------------------

# ---- lab and end-to-end suite (owned by test/vm, test/e2e) -------------------
# `make lab` boots 1 control plane + 2 nodes as systemd-nspawn machines and
# installs the freshly built binaries with packaging/install.sh; `make lab-down`
# removes everything it made. `make e2e` runs test/e2e against its own lab
# (always torn down) and keeps node logs in $(E2E_LOGS) when a test fails.
LAB := $(CURDIR)/test/vm/lab
E2E_LOGS ?= $(CURDIR)/test/e2e/logs

lab: build images
	LAB_BIN=$(BIN) $(LAB) up

lab-down:
	$(LAB) down

e2e: build images csi-sanity
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
	@rc=0; CONFORMANCE_KEEP_LAB=1 $(MAKE) --no-print-directory conformance-subset || rc=$$?; \
	[ $$rc -ne 0 ] || NETPOL_KEEP_LAB=1 $(MAKE) --no-print-directory netpol || rc=$$?; \
	[ $$rc -ne 0 ] || $(MAKE) --no-print-directory netpol-conformance-subset || rc=$$?; \
	[ $$rc -ne 0 ] || $(MAKE) --no-print-directory cis || rc=$$?; \
	if [ -f /run/vcluster-standalone-lab/nodes ]; then $(LAB) down || rc=1; fi; exit $$rc
# ---- end of lab and end-to-end block -----------------------------------------

# ---- conformance (owned by test/conformance) ----------------------------------
# The images the upstream [Conformance] specs run, built from sources, and the
# suite itself (e2e.test, ginkgo, kubectl v1.36.3 from their Go modules).
-include test/conformance/images/images.mk
-include test/conformance/conformance.mk
# ---- end of conformance block --------------------------------------------------

# ---- network policy (owned by test/netpol) -------------------------------------
# The upstream Netpol specs and the network-policy-api conformance tests.
-include test/netpol/netpol.mk
# ---- end of network policy block -------------------------------------------------

# ---- CIS benchmark (owned by test/cis) -----------------------------------------
# kube-bench v0.15.6 from its Go module, our config and transformed control files,
# run on the lab's control plane and a private node (make cis).
-include test/cis/cis.mk
# ---- end of CIS benchmark block --------------------------------------------------
