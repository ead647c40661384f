# Included by the top Makefile (`-include test/netpol/netpol.mk`).
#
# Proof that NetworkPolicy is enforced, against the nspawn lab, offline:
#   make netpol               the upstream [sig-network] Netpol specs of e2e.test v1.36.3
#                             (all but SCTPConnectivity: the kernel has no SCTP)
#   make netpol-subset        the named specs of test/netpol/subset.txt (make e2e runs it)
#   make netpol-conformance   the network-policy-api v0.3.0 conformance tests for
#                             ClusterNetworkPolicy (standard features)
# e2e.test, ginkgo, kubectl and the images (agnhost) are the ones test/conformance
# builds; see test/netpol/README.md.

NETPOL_RUN = LAB=$(LAB) LAB_BIN=$(BIN) CONFORMANCE_BIN=$(CONFORMANCE_BIN) \
	CONFORMANCE_IMAGES=$(BIN)/conformance-images $(CURDIR)/test/netpol/run.sh

.PHONY: netpol netpol-subset netpol-conformance

netpol: build images conformance-images $(CONFORMANCE_TOOLS)
	$(NETPOL_RUN)

netpol-subset: build images conformance-images $(CONFORMANCE_TOOLS)
	NETPOL_SUBSET=$(CURDIR)/test/netpol/subset.txt $(NETPOL_RUN)
