package config

import (
	"strings"
	"testing"
	"time"
)

func TestCertificatesDefaults(t *testing.T) {
	c := DefaultControlPlane().Certificates
	if c.LeafLifetime.Duration != 365*24*time.Hour || c.RenewBefore.Duration != 90*24*time.Hour ||
		c.CheckInterval.Duration != time.Hour || c.SigningDuration.Duration != 365*24*time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
	if errs := validateCertificates(&c); len(errs) != 0 {
		t.Fatalf("defaults invalid: %v", errs)
	}
}

func TestCertificatesValidation(t *testing.T) {
	// The short test-only values are accepted.
	short := `certificates: {leafLifetime: 2m, renewBefore: 90s, checkInterval: 10s, signingDuration: 2m}`
	c, err := Parse("test", []byte(short))
	if err != nil {
		t.Fatal(err)
	}
	SetDefaults(c, nil)
	if errs := validateCertificates(&c.Certificates); len(errs) != 0 {
		t.Fatalf("short values refused: %v", errs)
	}
	for _, tc := range []struct{ yaml, want string }{
		{`{leafLifetime: 30s}`, `certificates.leafLifetime: invalid value "30s": must be between 1m0s and 43800h0m0s`},
		{`{signingDuration: 87600h}`, `certificates.signingDuration: invalid value "87600h0m0s": must be between`},
		{`{checkInterval: 48h}`, `certificates.checkInterval: invalid value "48h0m0s": must be between 1s and 24h0m0s`},
		{`{checkInterval: 1h, renewBefore: 90m}`, `certificates.renewBefore: invalid value "1h30m0s": must be at least 2 times certificates.checkInterval (1h0m0s)`},
		{`{leafLifetime: 2m, renewBefore: 2m, checkInterval: 10s}`, `and less than certificates.leafLifetime (2m0s)`},
	} {
		c, err := Parse("test", []byte("certificates: "+tc.yaml))
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		SetDefaults(c, nil)
		errs := validateCertificates(&c.Certificates)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s: got %v, want one error containing %q", tc.yaml, errs, tc.want)
		}
	}
}
