package node

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The kubelet's file states the CIS-relevant settings explicitly: kube-bench
// and auditors read the file, not the kubelet's defaults.
func TestKubeletConfigFileStatesTheBenchmarkSettings(t *testing.T) {
	body, err := renderKubeletConfiguration(kubeletConfiguration(testNode(t), testSettings(), Host{}))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(body, &file); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"makeIPTablesUtilChains":         true,
		"seccompDefault":                 true,
		"rotateCertificates":             true,
		"serverTLSBootstrap":             true,
		"streamingConnectionIdleTimeout": "4h0m0s",
		"eventRecordQPS":                 float64(50),
		"podPidsLimit":                   float64(4096),
		"tlsMinVersion":                  "VersionTLS12",
	} {
		if file[key] != want {
			t.Errorf("%s: %v, want %v", key, file[key], want)
		}
	}
	if _, set := file["readOnlyPort"]; set {
		t.Errorf("readOnlyPort set: %v", file["readOnlyPort"])
	}
	suites, _ := file["tlsCipherSuites"].([]any)
	if len(suites) == 0 {
		t.Fatal("no tlsCipherSuites")
	}
	for _, s := range suites {
		if name := s.(string); !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("cipher suite %s is not ECDHE with an AEAD cipher", name)
		}
	}
}
