# Included by the top Makefile (`-include test/conformance/conformance.mk`).
#
# The upstream Kubernetes [Conformance] suite against the nspawn lab, offline:
#   make conformance          every [Conformance] spec: the parallel part, then [Serial]
#   make conformance-subset   the named specs of test/conformance/subset.txt (make e2e runs it)
#   make conformance-tools    only build e2e.test, ginkgo and kubectl
# e2e.test, ginkgo and kubectl are built from their Go modules at Kubernetes
# $(KUBE_VERSION) (test/conformance/suite is a nested module pinning them) into
# $(BIN)/conformance; they are rebuilt only when that module's go.mod/go.sum change.
# The images the specs run come from `make conformance-images` (test/conformance/images).
# See test/conformance/README.md.

CONFORMANCE_SUITE := $(CURDIR)/test/conformance/suite
CONFORMANCE_BIN := $(BIN)/conformance
CONFORMANCE_MOD := $(CONFORMANCE_SUITE)/go.mod $(CONFORMANCE_SUITE)/go.sum $(CONFORMANCE_SUITE)/tools.go
# The same version stamps as the product's LDFLAGS: without them kubectl and
# e2e.test report v0.0.0-master and the version specs fail.
CONFORMANCE_LDFLAGS := -s -w \
	$(foreach p,$(VERSION_PKGS),-X $(p).gitVersion=$(KUBE_VERSION) -X $(p).gitMajor=$(KUBE_MAJOR) -X $(p).gitMinor=$(KUBE_MINOR) -X $(p).gitTreeState=clean -X $(p).buildDate=$(BUILD_DATE))
CONFORMANCE_TOOLS := $(CONFORMANCE_BIN)/e2e.test $(CONFORMANCE_BIN)/ginkgo $(CONFORMANCE_BIN)/kubectl $(CONFORMANCE_BIN)/report
CONFORMANCE_RUN = LAB=$(LAB) LAB_BIN=$(BIN) CONFORMANCE_BIN=$(CONFORMANCE_BIN) \
	CONFORMANCE_IMAGES=$(BIN)/conformance-images $(CURDIR)/test/conformance/run.sh

.PHONY: conformance conformance-subset conformance-tools

conformance-tools: $(CONFORMANCE_TOOLS)

# Built one after the other (each is big on 2 cores); written under a temporary
# name first so an interrupted build never leaves a file make takes as up to date.
$(CONFORMANCE_BIN)/e2e.test: $(CONFORMANCE_MOD)
	@mkdir -p $(@D)
	cd $(CONFORMANCE_SUITE) && $(GO) test -c -ldflags '$(CONFORMANCE_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/test/e2e
	mv $@.tmp $@

$(CONFORMANCE_BIN)/kubectl: $(CONFORMANCE_MOD) | $(CONFORMANCE_BIN)/e2e.test
	cd $(CONFORMANCE_SUITE) && $(GO) build -ldflags '$(CONFORMANCE_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/cmd/kubectl
	mv $@.tmp $@

$(CONFORMANCE_BIN)/ginkgo: $(CONFORMANCE_MOD) | $(CONFORMANCE_BIN)/kubectl
	cd $(CONFORMANCE_SUITE) && $(GO) build -ldflags '-s -w' -o $@.tmp github.com/onsi/ginkgo/v2/ginkgo
	mv $@.tmp $@

# Summarises the JUnit reports (standard library only, builds in seconds).
$(CONFORMANCE_BIN)/report: $(CONFORMANCE_MOD) $(CONFORMANCE_SUITE)/report/main.go
	@mkdir -p $(@D)
	cd $(CONFORMANCE_SUITE) && $(GO) build -o $@ ./report

conformance: build images conformance-images $(CONFORMANCE_TOOLS)
	$(CONFORMANCE_RUN)

conformance-subset: build images conformance-images $(CONFORMANCE_TOOLS)
	CONFORMANCE_SUBSET=$(CURDIR)/test/conformance/subset.txt $(CONFORMANCE_RUN)
