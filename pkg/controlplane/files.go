package controlplane

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// anonymousPaths are the only requests served without credentials: health
// checks, the version, and the cluster-info ConfigMap nodes discover with.
var anonymousPaths = []string{"/livez", "/readyz", "/healthz", "/version", "/api/v1/namespaces/kube-public/configmaps/cluster-info"}

func authenticationConfig() string {
	var b strings.Builder
	b.WriteString("apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\nanonymous:\n  enabled: true\n  conditions:\n")
	for _, p := range anonymousPaths {
		fmt.Fprintf(&b, "  - path: %s\n", p)
	}
	return b.String()
}

// admissionConfig makes the PodSecurity plugin enforce level by default;
// namespaces may still choose their own level with labels. Warnings and audit
// annotations always use restricted so users see what would break there.
func admissionConfig(level string) string {
	return fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: %q
      enforce-version: latest
      audit: restricted
      audit-version: latest
      warn: restricted
      warn-version: latest
    exemptions:
      namespaces: [kube-system]
- name: EventRateLimit
  configuration:
    apiVersion: eventratelimit.admission.k8s.io/v1alpha1
    kind: Configuration
    limits:
    # One namespace flooding events cannot starve etcd or the others; the
    # limits are far above what a busy node or a controller sends.
    - type: Namespace
      qps: 100
      burst: 500
      cacheSize: 4096
    - type: Server
      qps: 1000
      burst: 5000
`, level)
}

// auditPolicy records who changed what without logging secret contents and
// skips the high-volume read-only noise of health checks and events. Request
// bodies are kept only for writes to the built-in groups whose objects we
// know carry no credentials; any other group (custom resources, aggregated
// APIs) may hold a password or a token in a spec, so it is logged at
// Metadata.
var auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/metrics"]
- level: None
  resources:
  - group: ""
    resources: [events]
  - group: coordination.k8s.io
    resources: [leases]
- level: None
  verbs: [get, list, watch]
  users: ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"]
- level: Metadata
  resources:
  - group: ""
    resources: [secrets, configmaps, serviceaccounts/token]
  - group: authentication.k8s.io
    resources: [tokenreviews]
- level: Request
  verbs: [create, update, patch, delete, deletecollection]
  resources:
` + auditRequestGroups + `- level: Metadata
`

// auditRequestGroups are the built-in API groups whose writes are logged
// with their request body.
var auditRequestGroups = func() string {
	var b strings.Builder
	for _, g := range []string{"", "apps", "batch", "autoscaling", "policy", "rbac.authorization.k8s.io",
		"networking.k8s.io", "storage.k8s.io", "scheduling.k8s.io", "node.k8s.io", "discovery.k8s.io",
		"admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io", "certificates.k8s.io",
		"flowcontrol.apiserver.k8s.io", "resource.k8s.io", "events.k8s.io", "authorization.k8s.io"} {
		fmt.Fprintf(&b, "  - group: %q\n", g)
	}
	return b.String()
}()

// encryptionConfig encrypts Secrets with secretbox (XSalsa20-Poly1305). When
// encryption is turned off after having been on, identity writes first but the
// old key still reads what was stored encrypted.
func encryptionConfig(key string, enabled bool) string {
	secretbox := fmt.Sprintf("    - secretbox:\n        keys:\n        - name: key1\n          secret: %s\n", key)
	identity := "    - identity: {}\n"
	providers := secretbox + identity
	if !enabled {
		providers = identity + secretbox
	}
	return "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n" + providers
}

// ensureEncryptionKey returns the base64 secretbox key, generating it once.
// ok is false when there is no key and none was wanted.
func ensureEncryptionKey(path string, create bool) (key string, ok bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(data)), true, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("failed to read encryption key: %w", err)
	}
	if !create {
		return "", false, nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	key = base64.StdEncoding.EncodeToString(raw)
	if err := fsutil.WriteFileAtomic(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("failed to write encryption key: %w", err)
	}
	return key, true, nil
}
