package main

import (
	"slices"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
)

// Upstream's order, as shipped with the pinned CoreDNS, is the reference: our
// list must be a subsequence of it, and every directive must have its plugin
// linked in.
func TestDirectivesFollowUpstreamOrderAndAreLinked(t *testing.T) {
	upstream := dnsserver.Directives
	last := -1
	for _, d := range directives {
		i := slices.Index(upstream, d)
		if i < 0 {
			t.Errorf("directive %q is not one of upstream's", d)
			continue
		}
		if i < last {
			t.Errorf("directive %q is out of upstream's order", d)
		}
		last = i
	}
	linked := caddy.ListPlugins()["others"] // "dns.<name>"
	for _, d := range directives {
		if !slices.Contains(linked, "dns."+d) {
			t.Errorf("directive %q has no plugin linked in (linked: %v)", d, linked)
		}
	}
	// Cloud and storage backends stay out of the image.
	for _, d := range []string{"route53", "azure", "clouddns", "etcd", "nomad"} {
		if slices.Contains(linked, "dns."+d) {
			t.Errorf("plugin %q is linked in", d)
		}
	}
	// The Corefile kubeadm writes needs these.
	for _, d := range []string{"errors", "health", "ready", "kubernetes", "prometheus", "forward", "cache", "loop", "reload", "loadbalance"} {
		if !slices.Contains(directives, d) {
			t.Errorf("kubeadm's Corefile needs %q", d)
		}
	}
}
