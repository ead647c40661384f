package pki

import (
	"sync"
	"time"

	"k8s.io/client-go/transport"
)

var reloadMu sync.Mutex

// TuneClientCertReload makes client-go's file-based clients of this process
// look for a renewed client certificate often enough for a certificate that
// stays valid for validAfterRenewal once its successor is on disk.
//
// client-go reads the files again on each new TLS handshake, but a client
// keeps its one HTTP/2 connection open: without a new handshake it only
// notices a renewal at its periodic check (transport.CertCallbackRefreshDuration,
// 5 min upstream, the knob upstream exposes for this), then closes its
// connections to use the new certificate. Certificates renewed days before
// they expire never notice; short test lifetimes would present an expired
// certificate first. The period becomes an eighth of validAfterRenewal,
// between 1 s and upstream's 5 min; it is only ever lowered, and must be set
// before the clients are built.
func TuneClientCertReload(validAfterRenewal time.Duration) {
	period := min(max(validAfterRenewal/8, time.Second), 5*time.Minute)
	reloadMu.Lock()
	defer reloadMu.Unlock()
	if period < transport.CertCallbackRefreshDuration {
		transport.CertCallbackRefreshDuration = period
	}
}
