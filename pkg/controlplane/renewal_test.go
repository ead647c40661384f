package controlplane

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

func renewalTestConfig(t *testing.T) (*config.ControlPlane, Paths) {
	dir := t.TempDir()
	c := config.DefaultControlPlane()
	c.AdvertiseAddress = "192.0.2.10"
	c.DataDir = filepath.Join(dir, "data")
	c.AdminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	c.Certificates.LeafLifetime.Duration = 2 * time.Minute
	c.Certificates.RenewBefore.Duration = 90 * time.Second
	c.Certificates.CheckInterval.Duration = 10 * time.Second
	return c, Paths{DataDir: c.DataDir}
}

func recorded(r *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// TestRenewalCheck: a check past the threshold renews every leaf, records
// an Event for each and rewrites the admin kubeconfig; the components'
// kubeconfigs name the files and stay as they are.
func TestRenewalCheck(t *testing.T) {
	c, paths := renewalTestConfig(t)
	bundle, err := preparePKI(c, paths, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKubeconfigs(c, paths, bundle); err != nil {
		t.Fatal(err)
	}
	adminBefore, _ := os.ReadFile(c.AdminKubeconfig)
	cmBefore, _ := os.ReadFile(paths.Kubeconfig(pki.ControllerManager))

	var progress bytes.Buffer
	r := newCertRenewal(c, paths, &progress)
	if err := r.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(100)
	r.recorder = rec
	r.now = func() time.Time { return time.Now() }
	r.check()
	if events := recorded(rec); len(events) != 0 {
		t.Fatalf("a check right after start renewed: %v", events)
	}
	r.now = func() time.Time { return time.Now().Add(45 * time.Second) }
	r.check()
	events := recorded(rec)
	if len(events) != len(pki.Leaves(r.params)) || !strings.HasPrefix(events[0], "Normal "+ReasonCertificateRenewed+" certificate ") {
		t.Fatalf("events %v, want one %s per leaf", events, ReasonCertificateRenewed)
	}
	if !strings.Contains(progress.String(), "renewed ") {
		t.Errorf("no progress line: %q", progress.String())
	}
	if after, _ := os.ReadFile(c.AdminKubeconfig); bytes.Equal(after, adminBefore) {
		t.Error("the admin kubeconfig still holds the old certificate")
	}
	if after, _ := os.ReadFile(paths.Kubeconfig(pki.ControllerManager)); !bytes.Equal(after, cmBefore) {
		t.Error("the controller-manager kubeconfig changed: it must name the files")
	}
	cfg, err := clientcmd.LoadFromFile(paths.Kubeconfig(pki.ControllerManager))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		if a.ClientCertificate != paths.Cert(pki.ControllerManager) || a.ClientKey != paths.Key(pki.ControllerManager) || len(a.ClientCertificateData) > 0 {
			t.Errorf("controller-manager kubeconfig: %+v, want the certificate files", a)
		}
	}
}

// TestRenewalWarnsAboutCAs: less than a year before the CAs expire, every
// check records a Warning Event per CA.
func TestRenewalWarnsAboutCAs(t *testing.T) {
	c, paths := renewalTestConfig(t)
	if _, err := preparePKI(c, paths, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	r := newCertRenewal(c, paths, &bytes.Buffer{})
	if err := r.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(100)
	r.recorder = rec
	r.now = func() time.Time { return time.Now().Add(pki.CALifetime - 100*24*time.Hour) }
	r.check()
	var warnings []string
	for _, e := range recorded(rec) {
		if strings.HasPrefix(e, "Warning "+ReasonCAExpiringSoon) {
			warnings = append(warnings, e)
		}
	}
	if len(warnings) != len(pki.CAs) || !strings.Contains(warnings[0], "(in 99 days)") && !strings.Contains(warnings[0], "(in 100 days)") {
		t.Fatalf("warnings %v, want one per CA saying how many days are left", warnings)
	}
}
