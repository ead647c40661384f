package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func TestPrintCerts(t *testing.T) {
	now := time.Now()
	certs := []pki.CertStatus{
		{Name: pki.ClusterCA, IsCA: true, NotAfter: now.Add(200 * 24 * time.Hour)},
		{Name: pki.FrontProxyCA, IsCA: true, NotAfter: now.Add(5 * 365 * 24 * time.Hour)},
		{Name: pki.APIServer, NotAfter: now.Add(90 * time.Second)},
		{Name: pki.Admin, NotAfter: now.Add(30 * time.Second)},
		{Name: pki.Scheduler, Err: errors.New("missing")},
	}
	cfg := config.DefaultControlPlane().Certificates
	cfg.LeafLifetime.Duration, cfg.RenewBefore.Duration = 2*time.Minute, 45*time.Second
	var out bytes.Buffer
	problems, warnings := printCerts(&out, certs, now, cfg)
	if problems != 2 || warnings != 1 {
		t.Fatalf("problems %d warnings %d, want 2 (admin due, scheduler missing) and 1 (ca):\n%s", problems, warnings, out.String())
	}
	lines := strings.Split(out.String(), "\n")
	for i, want := range []string{"CERTIFICATE", "ca  ", "front-proxy-ca", "apiserver ", "admin", "scheduler"} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d %q, want it to start with %q", i, lines[i], want)
		}
	}
	for _, want := range []string{"CA    " + now.Add(200*24*time.Hour).UTC().Format(time.RFC3339), "warning: CA expires in 200 days, rotate it",
		"1m30s", "due for renewal", "missing"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
