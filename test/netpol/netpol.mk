# Included by the top Makefile (`-include test/netpol/netpol.mk`).
#
# Proof that NetworkPolicy is enforced, against the nspawn lab, offline:
#   make netpol               the upstream [sig-network] Netpol specs of e2e.test v1.36.3
#                             (all but SCTPConnectivity: the kernel has no SCTP); make e2e
#                             runs all of them (~5 min) on the conformance subset's lab
#   make netpol-subset        the named specs of test/netpol/subset.txt (a quick check)
#   make netpol-conformance   the network-policy-api v0.3.0 conformance tests for
#                             ClusterNetworkPolicy (standard features)
#   make netpol-conformance-subset
#                             the named tests of NETPOL_CNP_SUBSET (make e2e runs these)
# e2e.test, ginkgo, kubectl and the images (agnhost) are the ones test/conformance
# builds; see test/netpol/README.md.

NETPOL_RUN = LAB=$(LAB) LAB_BIN=$(BIN) CONFORMANCE_BIN=$(CONFORMANCE_BIN) \
	CONFORMANCE_IMAGES=$(BIN)/conformance-images $(CURDIR)/test/netpol/run.sh

.PHONY: netpol netpol-subset netpol-conformance netpol-conformance-subset

netpol: build images conformance-images $(CONFORMANCE_TOOLS)
	$(NETPOL_RUN)

netpol-subset: build images conformance-images $(CONFORMANCE_TOOLS)
	NETPOL_SUBSET=$(CURDIR)/test/netpol/subset.txt $(NETPOL_RUN)

# ---- network-policy-api conformance -----------------------------------------------
# The test binary of sigs.k8s.io/network-policy-api v0.3.0's conformance tests, run
# by our own entry point (test/netpol/cnp/runner) over base/ derived from the
# module: every agnhost container serving SCTP dropped (no SCTP in the kernel; its
# porter exits and the pods never become ready). The agnhost image they name is
# the same build as the conformance agnhost, under their tag.
NETPOL_CNP := test/netpol/cnp
NETPOL_BIN := $(BIN)/netpol
NETPOL_CNP_MOD := $(NETPOL_CNP)/go.mod $(NETPOL_CNP)/go.sum $(wildcard $(NETPOL_CNP)/runner/*.go)
NETPOL_CNP_SRC = $(shell cd $(NETPOL_CNP) && $(GO) list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)/conformance

$(NETPOL_BIN)/cnp-conformance.test: $(NETPOL_CNP_MOD)
	@mkdir -p $(@D)
	rm -rf $(NETPOL_CNP)/runner/base && cp -r $(NETPOL_CNP_SRC)/base $(NETPOL_CNP)/runner/base && chmod -R u+w $(NETPOL_CNP)/runner/base
	awk 'function flush() { if (blk != "" && blk !~ /SERVE_SCTP_PORT_/) printf "%s", blk; blk = ""; inblk = 0 } \
		/^        - name: / { flush(); inblk = 1; blk = $$0 "\n"; next } \
		inblk && /^         / { blk = blk $$0 "\n"; next } \
		{ flush(); print } END { flush() }' $(NETPOL_CNP_SRC)/base/manifests.yaml >$(NETPOL_CNP)/runner/base/manifests.yaml
	! grep -q SCTP $(NETPOL_CNP)/runner/base/manifests.yaml
	cd $(NETPOL_CNP) && $(GO) test -c -o $@.tmp ./runner
	mv $@.tmp $@

$(NETPOL_BIN)/agnhost-cnp.tar: $(CIMG_AGNHOST_DEPS) $(NETPOL_CNP_MOD)
	@mkdir -p $(@D)
	name=$$(grep -ho 'registry.k8s.io/e2e-test-images/agnhost:[0-9.]*' $(NETPOL_CNP_SRC)/base/manifests.yaml | sort -u); \
	[ "$$(echo "$$name" | wc -l)" = 1 ] || { echo "netpol: want one agnhost tag in the manifests, got: $$name" >&2; exit 1; }; \
	$(CIMG_OCI) -o $@ -name $$name $(CIMG_AGNHOST_LAYERS) -cmd '["pause"]'

netpol-conformance: build $(NETPOL_BIN)/cnp-conformance.test $(NETPOL_BIN)/agnhost-cnp.tar
	LAB=$(LAB) LAB_BIN=$(BIN) NETPOL_CNP_TEST=$(NETPOL_BIN)/cnp-conformance.test \
		NETPOL_CNP_IMAGE=$(NETPOL_BIN)/agnhost-cnp.tar $(CURDIR)/test/netpol/cnp-run.sh

# A few tests of every kind (admin and baseline tier, ingress and egress, TCP and
# UDP, priorities, selectors): what make e2e runs; the whole set takes ~8 min.
NETPOL_CNP_SUBSET := CNPAdminTierPriorityField CNPAdminTierSamePriority CNPAdminTierIngressTCP \
	CNPAdminTierEgressUDP CNPAdminTierPodSelector CNPBaselineTierIngressUDP CNPBaselineTierEgressTCP
netpol-conformance-subset:
	@NETPOL_CNP_RUN='^TestConformance$$/^($(subst $(eval) ,|,$(strip $(NETPOL_CNP_SUBSET))))$$' \
		$(MAKE) --no-print-directory netpol-conformance
