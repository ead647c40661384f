package config

// System images: built from source by the Makefile into OCI archives,
// embedded in node-agent and imported at start; never pulled. The names are
// the ones kubeadm clusters use, so manifests written for them work unchanged.
const (
	PauseImage   = "registry.k8s.io/pause:3.10.1"
	CoreDNSImage = "registry.k8s.io/coredns/coredns:v1.14.7"
)
