package node

import (
	"io"
	"path/filepath"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/component"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// ArgsComponents are the node's parts that run from a command line, in the
// order `status --args` prints them.
var ArgsComponents = []string{"kubelet", "kube-proxy"}

// EffectiveArgsFile is where `node-agent run` records the kubelet's and
// kube-proxy's command lines; `node-agent status --args` reads it.
func EffectiveArgsFile(n *config.Node) string { return filepath.Join(n.DataDir, "effective-args.yaml") }

// PrintEffectiveArgs prints the command line of the running kubelet and
// kube-proxy (or of the one named) as `name --flag=value ...`.
func PrintEffectiveArgs(w io.Writer, n *config.Node, name string) error {
	return component.PrintArgsFile(w, EffectiveArgsFile(n), name, ArgsComponents)
}
