package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinnode"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/nodecreds"
)

// servingCARefreshInterval is how often a running node re-reads the
// published kubelet-serving CA and cluster CA bundle (two small GETs).
const servingCARefreshInterval = 30 * time.Second

// servingCARefresh keeps the node's copy of the kubelet-serving CA, which
// verifies the other nodes' registry mirrors, as the control plane publishes
// it: at start and then periodically. containerd reads the file at every pull
// through a peer, so a rotated CA takes effect without a restart. An
// unreachable control plane is no error: the copy from join or the last
// refresh stays.
type servingCARefresh struct {
	client   kubernetes.Interface
	anon     kubernetes.Interface // no credentials: reads cluster-info
	reported string               // the TrustReport last annotated
	started  time.Time            // when the node's clients first read the CA file
	kubelet  []string             // pins of the CA file the kubelet starts with
	node     *config.Node
	interval time.Duration
	log      io.Writer

	cancel context.CancelFunc
	done   chan struct{}
}

func newServingCARefresh(cs, anon kubernetes.Interface, n *config.Node, log io.Writer) *servingCARefresh {
	return &servingCARefresh{client: cs, anon: anon, node: n, interval: servingCARefreshInterval, log: log, started: time.Now()}
}

func (r *servingCARefresh) Name() string               { return "kubelet-serving CA refresh" }
func (r *servingCARefresh) Init(context.Context) error { return nil }

func (r *servingCARefresh) Start(ctx context.Context) error {
	r.refresh(ctx)
	// Before the kubelet starts: a serving certificate the API server would
	// refuse is dropped, so the kubelet requests one from the current CA.
	if dropped, err := nodecreds.DropUnverifiableServingCert(r.node); err != nil {
		return fmt.Errorf("failed to remove the kubelet's outdated serving certificate: %w", err)
	} else if dropped {
		fmt.Fprintf(r.log, "kubelet serving certificate not signed by the kubelet-serving CA: removed, the kubelet requests a new one\n")
	}
	// Before the kubelet starts, which reads its client certificate once: a
	// restart during a CA rotation moves it to the new CA at once.
	if nodecreds.KubeletClientCertOfOutgoingCA(r.node) {
		if err := r.renewKubeletClientCert(ctx); err != nil {
			fmt.Fprintf(r.log, "kubelet client certificate of the outgoing CA not renewed (the kubelet renews it at its next rotation): %v\n", err)
		} else {
			fmt.Fprintf(r.log, "kubelet client certificate was signed by the outgoing CA: renewed by the new one\n")
		}
	}
	// The kubelet starts after this and trusts the CA file as it is now.
	if report, err := nodecreds.Trust(r.node, r.started, nil); err == nil {
		r.kubelet = report.Trusted
		r.refreshClusterCA(ctx)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		wait.UntilWithContext(runCtx, r.refresh, r.interval)
	}()
	return nil
}

func (r *servingCARefresh) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	changed, err := nodecreds.RefreshKubeletServingCA(ctx, r.client, r.node)
	switch {
	case err != nil:
		fmt.Fprintf(r.log, "kubelet-serving CA not refreshed (keeping %s): %v\n", r.node.KubeletServingCAFile(), err)
	case changed:
		fmt.Fprintf(r.log, "kubelet-serving CA updated in %s\n", r.node.KubeletServingCAFile())
	}
	r.refreshClusterCA(ctx)
}

// refreshClusterCA follows the cluster CA bundle (a CA rotation reaches the
// node this way, without a re-join) and reports the node's trust in its
// Node's annotation when it changed.
func (r *servingCARefresh) refreshClusterCA(ctx context.Context) {
	if r.anon == nil {
		return
	}
	changed, err := nodecreds.RefreshClusterCA(ctx, r.anon, r.node)
	switch {
	case err != nil:
		fmt.Fprintf(r.log, "cluster CA not refreshed (keeping %s): %v\n", r.node.CAFile(), err)
	case changed:
		fmt.Fprintf(r.log, "cluster CA bundle updated in %s\n", r.node.CAFile())
	}
	report, err := nodecreds.Trust(r.node, r.started, r.kubelet)
	if err != nil {
		return
	}
	if key := fmt.Sprint(report); key != r.reported {
		if err := nodecreds.ReportTrust(ctx, r.client, r.node, r.started, r.kubelet); err == nil {
			r.reported = key
		}
	}
}

// Stop ends the refresh loop; safe in any state.
func (r *servingCARefresh) Stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	<-r.done
	r.cancel = nil
	return nil
}

// renewKubeletClientCert requests a kubelet client certificate with the
// node's current one (a renewal, approved like the kubelet's own) and stores
// it in the kubelet's layout.
func (r *servingCARefresh) renewKubeletClientCert(ctx context.Context) error {
	cas, err := certutil.CertsFromFile(r.node.CAFile())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cert, err := joinnode.RequestKubeletClientCert(ctx, r.client, r.node.NodeName, cas[:1])
	if err != nil {
		return err
	}
	_, err = nodecreds.StoreKubeletClientCert(r.node.PKIDir(), cert)
	return err
}
