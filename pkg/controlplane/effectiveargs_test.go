package controlplane

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// etcd's record names the same TLS settings a standalone etcd's flags would,
// so checks written for `etcd --flag` apply unchanged.
func TestEtcdArgsRenderItsEffectiveTLSConfig(t *testing.T) {
	paths := Paths{DataDir: "/var/lib/x"}
	e := newEtcd(paths, 2379, 2380)
	if e.Args() != nil {
		t.Fatal("args before Init")
	}
	if err := e.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := " " + strings.Join(e.Args(), " ") + " "
	for _, want := range []string{
		"--cert-file=" + paths.Cert(pki.EtcdServer), "--key-file=" + paths.Key(pki.EtcdServer),
		"--trusted-ca-file=" + paths.Cert(pki.EtcdCA), "--client-cert-auth=true", "--auto-tls=false",
		"--peer-cert-file=" + paths.Cert(pki.EtcdPeer), "--peer-key-file=" + paths.Key(pki.EtcdPeer),
		"--peer-trusted-ca-file=" + paths.Cert(pki.EtcdCA), "--peer-client-cert-auth=true", "--peer-auto-tls=false",
		"--data-dir=" + paths.Etcd(), "--listen-client-urls=https://127.0.0.1:2379", "--listen-peer-urls=https://127.0.0.1:2380",
	} {
		if !strings.Contains(got, " "+want+" ") {
			t.Errorf("etcd args lack %s:%s", want, got)
		}
	}
	e.cfg.CipherSuites = []string{"TLS_A", "TLS_B"}
	if got := strings.Join(e.Args(), " "); !strings.Contains(got, "--cipher-suites=TLS_A,TLS_B") {
		t.Errorf("cipher suites not rendered: %s", got)
	}
}

func TestPrintEffectiveArgs(t *testing.T) {
	c := testConfig()
	c.DataDir = t.TempDir()
	data, _ := component.RenderArgs(component.EffectiveArgs{PID: os.Getpid(), Components: []component.ComponentArgs{
		{Name: "etcd", Args: []string{"--client-cert-auth=true"}},
		{Name: "kube-apiserver", Args: []string{"--anonymous-auth=false", "--profiling=false"}},
	}})
	if err := os.MkdirAll(Paths{DataDir: c.DataDir}.Generated(""), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(Paths{DataDir: c.DataDir}.EffectiveArgsFile(), data, 0o600)
	var out bytes.Buffer
	if err := PrintEffectiveArgs(&out, c, "kube-apiserver"); err != nil || out.String() != "kube-apiserver --anonymous-auth=false --profiling=false\n" {
		t.Errorf("got %q, %v", out.String(), err)
	}
	err := PrintEffectiveArgs(&out, c, "apiserver")
	if err == nil || err.Error() != `unknown component "apiserver": one of etcd, kube-apiserver, kube-controller-manager, kube-scheduler` {
		t.Errorf("bad name: %v", err)
	}
}
