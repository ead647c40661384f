package pki

import (
	"testing"
	"time"

	"k8s.io/client-go/transport"
)

func TestTuneClientCertReload(t *testing.T) {
	saved := transport.CertCallbackRefreshDuration
	t.Cleanup(func() { transport.CertCallbackRefreshDuration = saved })
	transport.CertCallbackRefreshDuration = 5 * time.Minute
	TuneClientCertReload(RenewalThreshold) // 90 days: upstream's 5 min stays
	if got := transport.CertCallbackRefreshDuration; got != 5*time.Minute {
		t.Fatalf("default threshold: %s, want 5m", got)
	}
	TuneClientCertReload(40 * time.Second)
	if got := transport.CertCallbackRefreshDuration; got != 5*time.Second {
		t.Fatalf("40s: %s, want 5s", got)
	}
	TuneClientCertReload(time.Hour) // never raised again
	if got := transport.CertCallbackRefreshDuration; got != 5*time.Second {
		t.Fatalf("raised to %s", got)
	}
	TuneClientCertReload(time.Millisecond)
	if got := transport.CertCallbackRefreshDuration; got != time.Second {
		t.Fatalf("floor: %s, want 1s", got)
	}
}
