# Included by the top Makefile (`-include test/cis/cis.mk`).
#
# make cis: the CIS Kubernetes Benchmark (kube-bench) on the nspawn lab —
# master, controlplane, etcd and policies on lab-cp, node on lab-node1 — and
# a PASS/FAIL/WARN/INFO summary for each. Brings a lab up when none runs (and
# takes it down again after), leaves a running one as it was. See "make cis" in README.md.
#
# kube-bench is built from its Go module (the proxy refuses `go install ...@latest`
# for it): the module directory is copied somewhere writable and built in place.
# Its control files are not committed here: test/cis/transform rewrites upstream's
# at build time (audits read our `status --args` instead of ps, our overrides).

KUBE_BENCH_VERSION := v0.15.6
# The newest benchmark kube-bench has; it maps Kubernetes 1.32-1.34 to it, 1.36 has none yet.
CIS_BENCHMARK := cis-1.12
CIS_BIN := $(BIN)/cis
CIS_DIR := $(CURDIR)/test/cis
CIS_RESULTS ?= $(CIS_BIN)/results

.PHONY: cis cis-tools

cis-tools: $(CIS_BIN)/kube-bench $(CIS_BIN)/cfg/$(CIS_BENCHMARK)/master.yaml $(CIS_BIN)/tools/kubectl $(CIS_BIN)/tools/jq

# What the audits call besides our binaries: kubectl (ours, see test/cis/kubectl)
# and jq, which the lab's rootfs lacks: the host's (both Debian bookworm) with
# its libraries (run.sh sets LD_LIBRARY_PATH).
$(CIS_BIN)/tools/kubectl: $(CIS_DIR)/kubectl
	@mkdir -p $(@D)
	cp $< $@

$(CIS_BIN)/tools/jq:
	@mkdir -p $(@D)/lib
	cp $$(command -v jq) $@.tmp
	cp $$(ldd $@.tmp | awk '/libjq|libonig/ {print $$3}') $(@D)/lib/
	mv $@.tmp $@

$(CIS_BIN)/kube-bench:
	@mkdir -p $(@D)
	dir=$$(cd / && $(GO) mod download -json github.com/aquasecurity/kube-bench@$(KUBE_BENCH_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$dir" || { echo "cis: go mod download of kube-bench $(KUBE_BENCH_VERSION) failed"; exit 1; }; \
	rm -rf $(CIS_BIN)/src && cp -r "$$dir" $(CIS_BIN)/src && chmod -R u+w $(CIS_BIN)/src
	cd $(CIS_BIN)/src && CGO_ENABLED=0 GOFLAGS=-buildvcs=false $(GO) build -trimpath \
		-ldflags '-s -w -X github.com/aquasecurity/kube-bench/cmd.KubeBenchVersion=$(KUBE_BENCH_VERSION)' -o $@.tmp .
	mv $@.tmp $@

# Our config.yaml and upstream's control files with our audits and overrides.
$(CIS_BIN)/cfg/$(CIS_BENCHMARK)/master.yaml: $(CIS_BIN)/kube-bench $(CIS_DIR)/config.yaml $(CIS_DIR)/overrides.yaml $(wildcard $(CIS_DIR)/transform/*.go)
	rm -rf $(CIS_BIN)/cfg.tmp
	$(GO) run ./test/cis/transform -upstream $(CIS_BIN)/src/cfg/$(CIS_BENCHMARK) -config $(CIS_DIR)/config.yaml \
		-overrides $(CIS_DIR)/overrides.yaml -benchmark $(CIS_BENCHMARK) -out $(CIS_BIN)/cfg.tmp
	rm -rf $(CIS_BIN)/cfg && mv $(CIS_BIN)/cfg.tmp $(CIS_BIN)/cfg

cis: build images cis-tools
	LAB=$(LAB) LAB_BIN=$(BIN) CIS_BENCHMARK=$(CIS_BENCHMARK) CIS_RESULTS=$(CIS_RESULTS) $(CIS_DIR)/run.sh
