// Command vcs-cni is the node's CNI plugin (pkg/cni), which containerd runs
// for every pod sandbox. It is a binary of its own, apart from node-agent,
// so that each run starts in milliseconds: it links only pkg/cni and the CNI
// libraries (check with `go list -deps ./cmd/vcs-cni`), none of the
// Kubernetes packages whose initialisation costs node-agent ~70 ms.
// `make build` embeds it in node-agent, which installs it in its bin dir.
//
//	echo '{"cniVersion":"1.1.0"}' | CNI_COMMAND=VERSION vcs-cni
package main

import "github.com/vcluster-standalone/vcluster-standalone/pkg/cni"

func main() { cni.PluginMain() }
