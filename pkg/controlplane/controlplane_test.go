package controlplane

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

func TestMergeArgs(t *testing.T) {
	cases := []struct {
		name            string
		defaults, extra map[string]string
		want            []string
	}{
		{"defaults only, sorted", map[string]string{"b": "2", "a": "1"}, nil, []string{"--a=1", "--b=2"}},
		{"user overrides ours", map[string]string{"v": "0", "a": "1"}, map[string]string{"v": "4"}, []string{"--a=1", "--v=4"}},
		{"user adds flags", map[string]string{"a": "1"}, map[string]string{"enable-admission-plugins": "A,B"}, []string{"--a=1", "--enable-admission-plugins=A,B"}},
		{"empty value kept", nil, map[string]string{"x": ""}, []string{"--x="}},
	}
	for _, tc := range cases {
		if got := mergeArgs(tc.defaults, tc.extra); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testConfig() *config.ControlPlane {
	c := &config.ControlPlane{AdvertiseAddress: "192.0.2.10", DataDir: "/var/lib/x"}
	config.SetDefaults(c, nil)
	return c
}

func TestAPIServerArgsAreSecure(t *testing.T) {
	args := apiServerArgs(testConfig(), Paths{"/var/lib/x"}, true)
	want := map[string]string{
		"authorization-mode":          "Node,RBAC",
		"enable-admission-plugins":    "NodeRestriction,PodSecurity,DenyServiceExternalIPs,EventRateLimit",
		"enable-bootstrap-token-auth": "true",
		"service-cluster-ip-range":    "10.96.0.0/12",
		"etcd-servers":                "https://127.0.0.1:2379",
		"profiling":                   "false",
		"encryption-provider-config":  "/var/lib/x/etc/encryption-config.yaml",
		"service-account-issuer":      "https://kubernetes.default.svc.cluster.local",
	}
	for k, v := range want {
		if args[k] != v {
			t.Errorf("--%s=%q, want %q", k, args[k], v)
		}
	}
	if _, ok := args["anonymous-auth"]; ok {
		t.Error("anonymous access must come from the authentication config, not --anonymous-auth")
	}
	if _, ok := apiServerArgs(testConfig(), Paths{"/x"}, false)["encryption-provider-config"]; ok {
		t.Error("encryption config passed although there is no key")
	}
}

func TestControllerManagerArgs(t *testing.T) {
	args := controllerManagerArgs(testConfig(), Paths{"/d"})
	for k, v := range map[string]string{
		"controllers": "*,bootstrapsigner,tokencleaner,-root-ca-cert-publisher", "allocate-node-cidrs": "true", "cluster-cidr": "10.244.0.0/16",
		"leader-elect": "false", "use-service-account-credentials": "true", "terminated-pod-gc-threshold": "1000",
		// Serving certificates from their own CA, every client signer on the cluster CA.
		"cluster-signing-kubelet-serving-cert-file":       "/d/pki/kubelet-serving-ca.crt",
		"cluster-signing-kubelet-serving-key-file":        "/d/pki/kubelet-serving-ca.key",
		"cluster-signing-kubelet-client-cert-file":        "/d/pki/ca.crt",
		"cluster-signing-kube-apiserver-client-cert-file": "/d/pki/ca.crt",
		"cluster-signing-legacy-unknown-cert-file":        "/d/pki/ca.crt",
	} {
		if args[k] != v {
			t.Errorf("--%s=%q, want %q", k, args[k], v)
		}
	}
	if _, ok := args["cluster-signing-cert-file"]; ok {
		t.Error("--cluster-signing-cert-file would sign every signer with the cluster CA")
	}
}

func TestGeneratedFilesAreValidYAML(t *testing.T) {
	for name, content := range map[string]string{
		"authentication": authenticationConfig(),
		"admission":      admissionConfig("restricted"),
		"audit":          auditPolicy,
		"encryption":     encryptionConfig("a2V5", true),
	} {
		var v map[string]any
		if err := yaml.UnmarshalStrict([]byte(content), &v); err != nil {
			t.Errorf("%s: %v\n%s", name, err, content)
		}
		if v["apiVersion"] == nil || v["kind"] == nil {
			t.Errorf("%s lacks apiVersion/kind", name)
		}
	}
	if !strings.Contains(admissionConfig("restricted"), `enforce: "restricted"`) {
		t.Error("admission config does not enforce the configured level")
	}
}

func TestEncryptionProviderOrder(t *testing.T) {
	on, off := encryptionConfig("k", true), encryptionConfig("k", false)
	if strings.Index(on, "secretbox") > strings.Index(on, "identity") {
		t.Error("enabled: secretbox must come first so new writes are encrypted")
	}
	if strings.Index(off, "identity") > strings.Index(off, "secretbox") {
		t.Error("disabled: identity must come first, secretbox still reads old data")
	}
}

func TestEncryptionKeyIsGeneratedOnce(t *testing.T) {
	path := t.TempDir() + "/secrets/key"
	if _, ok, err := ensureEncryptionKey(path, false); ok || err != nil {
		t.Fatalf("no key wanted: ok=%v err=%v", ok, err)
	}
	k1, ok, err := ensureEncryptionKey(path, true)
	if err != nil || !ok || len(k1) != 44 {
		t.Fatalf("key %q ok=%v err=%v", k1, ok, err)
	}
	k2, _, _ := ensureEncryptionKey(path, true)
	if k1 != k2 {
		t.Fatal("key changed on second call")
	}
}

func TestLocalServer(t *testing.T) {
	c := testConfig()
	if got := LocalServer(c); got != "https://127.0.0.1:6443" {
		t.Errorf("0.0.0.0 bind: %s", got)
	}
	c.BindAddress = "192.0.2.10"
	if got := LocalServer(c); got != "https://192.0.2.10:6443" {
		t.Errorf("specific bind: %s", got)
	}
}

func TestInProcessReportsPanicsAndExits(t *testing.T) {
	p := newInProcess()
	p.run(func(context.Context) error { panic("bad state") })
	select {
	case err := <-p.Failed():
		if err == nil || err.Error() != "panic: bad state" {
			t.Fatalf("error %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("panic not reported")
	}

	p = newInProcess()
	p.run(func(context.Context) error { return errors.New("bind: address in use") })
	if err := <-p.Failed(); err == nil || err.Error() != "bind: address in use" {
		t.Fatalf("error %v", err)
	}

	// A requested stop is not a failure: Failed closes without a value.
	p = newInProcess()
	p.run(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if err := p.stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if err, ok := <-p.Failed(); ok {
		t.Fatalf("stop reported as failure: %v", err)
	}

	p = newInProcess()
	p.run(func(context.Context) error { time.Sleep(time.Hour); return nil })
	if err := p.stop(20 * time.Millisecond); err == nil {
		t.Fatal("a server that ignores its context must be reported")
	}
}
