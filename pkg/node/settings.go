package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// FetchClusterSettings reads the settings the control plane publishes for
// nodes and caches them, so that a node whose control plane is unreachable
// still restarts its parts and keeps its pods running. Without a cache the
// unreachable control plane is the error.
func FetchClusterSettings(ctx context.Context, cs kubernetes.Interface, n *config.Node, warn io.Writer) (config.ClusterSettings, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cm, err := cs.CoreV1().ConfigMaps(config.ClusterSettingsNamespace).Get(ctx, config.ClusterSettingsName, metav1.GetOptions{})
	if err == nil {
		data := cm.Data[config.ClusterSettingsKey]
		s, perr := config.ParseClusterSettings(data)
		if perr != nil {
			return s, perr
		}
		if werr := fsutil.WriteIfChanged(n.ClusterSettingsFile(), []byte(data), 0o644); werr != nil {
			return s, fmt.Errorf("failed to cache cluster settings: %w", werr)
		}
		return s, nil
	}
	cached, rerr := os.ReadFile(n.ClusterSettingsFile())
	if errors.Is(rerr, os.ErrNotExist) {
		return config.ClusterSettings{}, fmt.Errorf("cannot reach the control plane at %s to read %s/%s (and no cached copy): %v",
			n.Server, config.ClusterSettingsNamespace, config.ClusterSettingsName, err)
	}
	if rerr != nil {
		return config.ClusterSettings{}, rerr
	}
	fmt.Fprintf(warn, "control plane unreachable (%v); using the cluster settings cached in %s\n", err, n.ClusterSettingsFile())
	return config.ParseClusterSettings(string(cached))
}
