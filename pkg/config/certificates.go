package config

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CertificatesConfig sets the lifetimes of the control plane's leaf
// certificates and how often the running control plane renews them.
type CertificatesConfig struct {
	// LeafLifetime is how long every control-plane leaf certificate is
	// valid when issued (default 8760h, one year; never beyond its CA).
	LeafLifetime metav1.Duration `json:"leafLifetime,omitempty"`
	// RenewBefore: a leaf is renewed, while the control plane runs, once
	// this little time is left (default 2160h, 90 days).
	RenewBefore metav1.Duration `json:"renewBefore,omitempty"`
	// CheckInterval is how often the running control plane checks its
	// certificates (default 1h; also at every start).
	CheckInterval metav1.Duration `json:"checkInterval,omitempty"`
	// SigningDuration is the lifetime of the certificates
	// kube-controller-manager signs for CSRs: the nodes' kubelet client and
	// serving certificates, which the kubelets rotate themselves
	// (--cluster-signing-duration; default 8760h).
	SigningDuration metav1.Duration `json:"signingDuration,omitempty"`
}

// Defaults of the certificates section.
const (
	DefaultLeafLifetime    = 365 * 24 * time.Hour
	DefaultRenewBefore     = 90 * 24 * time.Hour
	DefaultCheckInterval   = time.Hour
	DefaultSigningDuration = 365 * 24 * time.Hour
)

// Bounds of the certificates section.
const (
	minCertLifetime   = time.Minute
	maxCertLifetime   = 5 * 365 * 24 * time.Hour
	minCheckInterval  = time.Second
	maxCheckInterval  = 24 * time.Hour
	checksBeforeRenew = 2 // renewBefore holds at least this many checks
)

func setCertificateDefaults(c *CertificatesConfig) {
	for _, d := range []struct {
		field *metav1.Duration
		value time.Duration
	}{
		{&c.LeafLifetime, DefaultLeafLifetime},
		{&c.RenewBefore, DefaultRenewBefore},
		{&c.CheckInterval, DefaultCheckInterval},
		{&c.SigningDuration, DefaultSigningDuration},
	} {
		if d.field.Duration == 0 {
			d.field.Duration = d.value
		}
	}
}

// validateCertificates checks the bounds of each duration and that a leaf is
// checked at least twice between becoming due and expiring.
func validateCertificates(c *CertificatesConfig) []error {
	var errs []error
	bad := func(field string, d time.Duration, allowed string) {
		errs = append(errs, fmt.Errorf("certificates.%s: invalid value %q: %s", field, d, allowed))
	}
	lifetimes := []struct {
		field string
		d     time.Duration
	}{{"leafLifetime", c.LeafLifetime.Duration}, {"signingDuration", c.SigningDuration.Duration}}
	for _, l := range lifetimes {
		if l.d < minCertLifetime || l.d > maxCertLifetime {
			bad(l.field, l.d, fmt.Sprintf("must be between %s and %s, e.g. 8760h", minCertLifetime, maxCertLifetime))
		}
	}
	interval, before := c.CheckInterval.Duration, c.RenewBefore.Duration
	if interval < minCheckInterval || interval > maxCheckInterval {
		bad("checkInterval", interval, fmt.Sprintf("must be between %s and %s, e.g. 1h", minCheckInterval, maxCheckInterval))
	}
	if len(errs) > 0 {
		return errs // renewBefore is judged against valid values only
	}
	if before < checksBeforeRenew*interval || before >= c.LeafLifetime.Duration {
		bad("renewBefore", before, fmt.Sprintf("must be at least %d times certificates.checkInterval (%s) and less than certificates.leafLifetime (%s), e.g. 2160h",
			checksBeforeRenew, interval, c.LeafLifetime.Duration))
	}
	return errs
}
