package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubernetes/pkg/controller/certificates/rootcacertpublisher"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/joinserver"
)

// trustPollInterval is how often the trust publisher re-reads the bundle.
const trustPollInterval = 2 * time.Second

// trustPublisher publishes the cluster CA's trust bundle file wherever
// relying parties outside this process read it, and again whenever the file
// changes (a CA rotation): kube-public/cluster-info (joining nodes, and
// joined nodes refreshing their CA file) and the kube-root-ca.crt ConfigMap
// of every namespace (the ca.crt of ServiceAccount tokens). The latter is
// upstream's root-ca-cert-publisher, run here instead of in the
// controller-manager, which reads its --root-ca-file only once: it is
// re-created with the new bundle on every change.
type trustPublisher struct {
	client     func() (kubernetes.Interface, error)
	server     string // the API server URL in cluster-info
	bundleFile string
	// reissue re-issues the leaves and kubeconfigs for the rotation state
	// the changed bundle reflects, before the bundle is published.
	reissue  func() error
	interval time.Duration
	log      io.Writer

	cancel context.CancelFunc
	done   chan struct{}
}

func (t *trustPublisher) Name() string               { return "trust bundle publisher" }
func (t *trustPublisher) Init(context.Context) error { return nil }

func (t *trustPublisher) Start(ctx context.Context) error {
	client, err := t.client()
	if err != nil {
		return err
	}
	bundle, err := os.ReadFile(t.bundleFile)
	if err != nil {
		return fmt.Errorf("failed to read the cluster CA's trust bundle: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel, t.done = cancel, make(chan struct{})
	go func() {
		defer close(t.done)
		t.run(runCtx, client, bundle)
	}()
	return nil
}

// run publishes bundle and follows the file until ctx ends.
func (t *trustPublisher) run(ctx context.Context, client kubernetes.Interface, bundle []byte) {
	stopPublisher := t.publish(ctx, client, bundle)
	defer func() { stopPublisher() }()
	interval := t.interval
	if interval == 0 {
		interval = trustPollInterval
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		next, err := os.ReadFile(t.bundleFile)
		if err != nil || len(next) == 0 || bytes.Equal(next, bundle) {
			return
		}
		fmt.Fprintf(t.log, "cluster CA trust bundle changed (CA rotation): re-issuing the certificates, then publishing it in cluster-info and kube-root-ca.crt\n")
		if t.reissue != nil {
			if err := t.reissue(); err != nil {
				fmt.Fprintf(t.log, "re-issue for the CA rotation failed, retrying: %v\n", err)
				return
			}
		}
		stopPublisher()
		bundle = next
		stopPublisher = t.publish(ctx, client, bundle)
	}, interval)
}

// publish writes cluster-info (retried until it succeeds or ctx ends) and
// starts a root CA publisher for bundle; the returned func stops it.
func (t *trustPublisher) publish(ctx context.Context, client kubernetes.Interface, bundle []byte) func() {
	_ = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		err := joinserver.EnsureClusterInfo(ctx, client, t.server, bundle)
		if err != nil {
			fmt.Fprintf(t.log, "cluster-info not updated yet: %v\n", err)
		}
		return err == nil, nil
	})
	pubCtx, cancel := context.WithCancel(ctx)
	// Only the kube-root-ca.crt ConfigMaps are watched, not every ConfigMap.
	cms := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", rootcacertpublisher.RootCACertConfigMapName).String()
	}))
	nss := informers.NewSharedInformerFactory(client, 0)
	p, err := rootcacertpublisher.NewPublisher(cms.Core().V1().ConfigMaps(), nss.Core().V1().Namespaces(), client, bundle)
	if err != nil {
		fmt.Fprintf(t.log, "kube-root-ca.crt publisher not started: %v\n", err)
		return cancel
	}
	done := make(chan struct{})
	cms.Start(pubCtx.Done())
	nss.Start(pubCtx.Done())
	go func() {
		defer close(done)
		p.Run(pubCtx, 1)
	}()
	return func() {
		cancel()
		<-done
		cms.Shutdown()
		nss.Shutdown()
	}
}

// Stop ends the publisher; safe in any state.
func (t *trustPublisher) Stop() error {
	if t.cancel == nil {
		return nil
	}
	t.cancel()
	<-t.done
	t.cancel = nil
	return nil
}
