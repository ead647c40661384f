package node

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// kubeletConfiguration is the KubeletConfiguration node-agent generates:
// secure by default (no anonymous access, no read-only port, webhook authn
// and authz, rotated client and CSR-issued serving certificates) and adapted
// to what the host allows.
func kubeletConfiguration(n *config.Node, s config.ClusterSettings, host Host) *kubeletv1beta1.KubeletConfiguration {
	driver := "cgroupfs"
	if host.SystemdCgroups {
		driver = "systemd"
	}
	kc := &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: n.CAFile()},
		},
		Authorization:      kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		ReadOnlyPort:       0,
		HealthzBindAddress: "127.0.0.1",
		HealthzPort:        ptr.To[int32](10248),
		RotateCertificates: true,
		ServerTLSBootstrap: true,
		// The cluster's AEAD-only suites, as on every other server (TLS 1.2+).
		TLSCipherSuites: pki.CipherSuiteNames(),
		TLSMinVersion:   "VersionTLS12",
		// Written out although they equal upstream's defaults, so the file an
		// auditor reads (CIS 4.2.5, 4.2.6, 4.2.8) says what the kubelet does.
		StreamingConnectionIdleTimeout: metav1.Duration{Duration: 4 * time.Hour},
		MakeIPTablesUtilChains:         ptr.To(true),
		EventRecordQPS:                 ptr.To[int32](50),
		// No pod can exhaust the node's PIDs (CIS 4.2.13); generous for real workloads.
		PodPidsLimit: ptr.To[int64](4096),
		// Pods without a seccomp profile get the runtime's default (CIS 4.2.14).
		SeccompDefault:           ptr.To(true),
		ClusterDNS:               []string{s.ClusterDNS},
		ClusterDomain:            s.ClusterDomain,
		ContainerRuntimeEndpoint: "unix://" + config.ContainerdSocket(),
		CgroupDriver:             driver,
		// cgroup v1 hosts (older distributions, containers) are accepted.
		FailCgroupV1:   ptr.To(false),
		ResolverConfig: ptr.To(host.ResolvConf),
		StaticPodPath:  "",
		// System images are pinned in containerd; the rest may be collected.
		ImageGCHighThresholdPercent:     ptr.To[int32](85),
		ImageGCLowThresholdPercent:      ptr.To[int32](80),
		SerializeImagePulls:             ptr.To(false),
		ProtectKernelDefaults:           false,
		ShutdownGracePeriod:             metav1.Duration{Duration: 30 * time.Second},
		ShutdownGracePeriodCriticalPods: metav1.Duration{Duration: 10 * time.Second},
		// Report status quickly after start: a fresh node is Ready sooner.
		NodeStatusUpdateFrequency: metav1.Duration{Duration: 10 * time.Second},
		SyncFrequency:             metav1.Duration{Duration: 30 * time.Second},
	}
	if !host.CanLowerOOMScore {
		kc.OOMScoreAdj = ptr.To[int32](0)
	}
	return kc
}

// renderKubeletConfiguration returns the YAML of the kubelet's config file.
func renderKubeletConfiguration(kc *kubeletv1beta1.KubeletConfiguration) ([]byte, error) {
	body, err := yaml.Marshal(kc)
	if err != nil {
		return nil, fmt.Errorf("failed to render kubelet config: %w", err)
	}
	return append([]byte("# Written by node-agent at every start; edits are overwritten.\n"), body...), nil
}
