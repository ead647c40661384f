package pki

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// TestShortLifetimes: leaves are issued for the configured lifetime and
// renewed once the threshold is reached, with only the .crt rewritten.
func TestShortLifetimes(t *testing.T) {
	p := testParams(t)
	p.Lifetimes = Lifetimes{Leaf: 2 * time.Minute, RenewBefore: 90 * time.Second}
	now := time.Now()
	b1, _, err := Ensure(p, now)
	if err != nil {
		t.Fatal(err)
	}
	cert := b1.Leaves[APIServer].Cert
	if got := cert.NotAfter.Sub(now); got < 2*time.Minute-time.Second || got > 2*time.Minute+time.Second {
		t.Fatalf("apiserver issued for %s, want 2m", got)
	}
	keyBefore, err := os.ReadFile(b1.Path(EtcdServer, ".key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, events, _ := Ensure(p, now.Add(20*time.Second)); len(events) != 0 {
		t.Fatalf("renewed before the threshold: %v", events)
	}
	later := now.Add(31 * time.Second)
	b2, events, err := Ensure(p, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != len(Leaves(p)) || !strings.HasPrefix(events[0].Action, "renewed: expires ") {
		t.Fatalf("events %v, want every leaf renewed for its expiry", events)
	}
	if got := b2.Leaves[APIServer].Cert.NotAfter.Sub(later); got < 2*time.Minute-time.Second {
		t.Errorf("renewed for %s, want 2m", got)
	}
	keyAfter, err := os.ReadFile(b1.Path(EtcdServer, ".key"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Error("the renewal rewrote etcd/server.key; only the .crt may change")
	}
}

// TestLoweredLifetimeApplies: certificates issued for a year are reissued
// at once when the configured lifetime drops, and stay once it is met.
func TestLoweredLifetimeApplies(t *testing.T) {
	p := testParams(t)
	now := time.Now()
	if _, _, err := Ensure(p, now); err != nil {
		t.Fatal(err)
	}
	p.Lifetimes = Lifetimes{Leaf: 10 * time.Minute, RenewBefore: 5 * time.Minute}
	_, events, err := Ensure(p, now)
	if err != nil || len(events) != len(Leaves(p)) || !strings.Contains(events[0].Action, "longer than the configured 10m0s") {
		t.Fatalf("events %v (%v), want every leaf reissued for the shorter lifetime", events, err)
	}
	if _, events, _ := Ensure(p, now.Add(time.Minute)); len(events) != 0 {
		t.Fatalf("reissued again: %v", events)
	}
}

func TestAttention(t *testing.T) {
	now := time.Now()
	l := Lifetimes{}
	for _, tc := range []struct {
		s    CertStatus
		want string
	}{
		{CertStatus{IsCA: true, NotAfter: now.Add(2 * CAWarnBefore)}, ""},
		{CertStatus{IsCA: true, NotAfter: now.Add(100*24*time.Hour + time.Hour)}, "warning: CA expires in 100 days, rotate it"},
		{CertStatus{IsCA: true, NotAfter: now.Add(-time.Hour)}, "expired"},
		{CertStatus{NotAfter: now.Add(RenewalThreshold + time.Hour)}, ""},
		{CertStatus{NotAfter: now.Add(RenewalThreshold - time.Hour)}, "due for renewal"},
	} {
		if got := tc.s.Attention(now, l); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.s, got, tc.want)
		}
	}
}
