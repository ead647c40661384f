package runner

import (
	"flag"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	api "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/network-policy-api/conformance/tests"
	"sigs.k8s.io/network-policy-api/conformance/utils/flags"
	"sigs.k8s.io/network-policy-api/conformance/utils/suite"
)

// The upstream flags (flags.SupportedFeatures, …) are registered by importing
// their package; these are ours.
var skipTests = flag.String("skip-tests", "", "comma-separated ShortNames of conformance tests not to run")

// TestConformance is upstream's conformance entry point with two differences:
// the manifests come from Manifests (no SCTP servers) and the namespaces the
// tests create are labelled privileged for Pod Security, as their host-network
// pods need and as e2e.test does for its own namespaces.
func TestConformance(t *testing.T) {
	cfg, err := config.GetConfig()
	if err != nil {
		t.Fatalf("loading the kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("creating a client: %v", err)
	}
	if err := api.Install(c.Scheme()); err != nil {
		t.Fatalf("installing the ClusterNetworkPolicy scheme: %v", err)
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("creating a clientset: %v", err)
	}
	var skip []string
	if *skipTests != "" {
		skip = strings.Split(*skipTests, ",")
	}
	t.Logf("supported features: [%s], skipped tests: %v", *flags.SupportedFeatures, skip)
	s := suite.New(suite.Options{
		Client:                     c,
		ClientSet:                  clientset,
		KubeConfig:                 *cfg,
		Debug:                      *flags.ShowDebug,
		CleanupBaseResources:       *flags.CleanupBaseResources,
		SupportedFeatures:          suite.ParseSupportedFeatures(*flags.SupportedFeatures),
		ExemptFeatures:             suite.ParseSupportedFeatures(*flags.ExemptFeatures),
		EnableAllSupportedFeatures: *flags.EnableAllSupportedFeatures,
		NamespaceLabels:            map[string]string{"pod-security.kubernetes.io/enforce": "privileged"},
		SkipTests:                  skip,
		FS:                         &Manifests,
	})
	s.Setup(t)
	s.Run(t, tests.ConformanceTests)
}
