package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Annotation is set on a Node whose mirror serves; its value is the URL the
// other nodes pull through.
const Annotation = "registry-mirror.vcluster-standalone.io/endpoint"

// Options configure the mirror component.
type Options struct {
	NodeName string
	Enabled  bool
	Port     int
	Client   kubernetes.Interface
	// Connect returns a client of this node's containerd (k8s.io namespace).
	Connect func(ctx context.Context) (*client.Client, error)
	TLS     TLSFiles
	// WritePeers renders containerd's registry hosts with these peer
	// endpoints, in order (none when the mirror is disabled).
	WritePeers func(endpoints []string) error
	Log        io.Writer
}

// Mirror is the registry mirror component: the server, this Node's
// annotation, and the peer list kept in containerd's hosts files.
type Mirror struct {
	o Options

	cancel  context.CancelFunc
	done    sync.WaitGroup
	server  *http.Server
	cd      *client.Client
	failed  chan error
	stopped sync.Once
	peers   []string
}

// New returns the mirror component.
func New(o Options) *Mirror {
	if o.Log == nil {
		o.Log = io.Discard
	}
	return &Mirror{o: o, failed: make(chan error, 1)}
}

func (m *Mirror) Name() string { return "registry mirror" }

func (m *Mirror) Init(context.Context) error { return nil }

// Start serves the node's images (when enabled) and keeps the peer list and
// this Node's annotation current. It needs no control plane to start: the
// annotation and peers follow once the API answers.
func (m *Mirror) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	if !m.o.Enabled {
		fmt.Fprintf(m.o.Log, "registry mirror disabled: this node neither serves its images nor pulls through other nodes\n")
		m.goRun(func() { m.publish(runCtx, "") })
		return nil
	}
	cd, err := m.o.Connect(ctx)
	if err != nil {
		return err
	}
	m.cd = cd
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(m.o.Port))
	if err != nil {
		cd.Close()
		return fmt.Errorf("failed to listen on port %d for the registry mirror (set registryMirror: disabled to turn it off): %w", m.o.Port, err)
	}
	h := &Handler{Content: cd.ContentStore(), Info: cd.ContentStore(), Images: cd.ImageService(),
		Served: func(who, ref string, d ocispec.Descriptor) {
			klog.InfoS("registry mirror: served manifest", "client", who, "ref", ref, "digest", d.Digest, "mediaType", d.MediaType)
		}}
	m.server = &http.Server{Handler: h, TLSConfig: ServerTLS(m.o.TLS), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return runCtx }}
	m.goRun(func() {
		if err := m.server.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.failed <- fmt.Errorf("registry mirror stopped serving: %w", err)
		}
	})
	m.goRun(func() { m.watchNodes(runCtx) })
	fmt.Fprintf(m.o.Log, "registry mirror serving this node's images on port %d (node certificates only)\n", m.o.Port)
	return nil
}

func (m *Mirror) goRun(f func()) {
	m.done.Add(1)
	go func() { defer m.done.Done(); f() }()
}

// Failed reports a server that stopped on its own.
func (m *Mirror) Failed() <-chan error { return m.failed }

// Stop closes the server and the watch; the Node keeps its annotation so a
// restart is seamless (peers skip an endpoint that does not answer).
func (m *Mirror) Stop() error {
	var err error
	m.stopped.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		if m.server != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = m.server.Shutdown(ctx)
			cancel()
		}
		m.done.Wait()
		if m.cd != nil {
			err = errors.Join(err, m.cd.Close())
		}
	})
	return err
}

// watchNodes keeps containerd's peer list equal to the other Nodes'
// annotations and publishes this Node's own once it has an address.
func (m *Mirror) watchNodes(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(m.o.Client, 0)
	nodes := factory.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	_, _ = nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: poke,
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
		return
	}
	published := ""
	for {
		list, err := nodes.Lister().List(labels.Everything())
		if err == nil {
			m.syncPeers(list)
			if self := find(list, m.o.NodeName); self != nil {
				if want := Endpoint(self, m.o.Port); want != "" && want != published && m.patch(ctx, want) == nil {
					published = want
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(30 * time.Second): // retry a failed write or patch
		}
	}
}

func (m *Mirror) syncPeers(list []*corev1.Node) {
	peers := Peers(list, m.o.NodeName)
	if slices.Equal(peers, m.peers) && m.peers != nil {
		return
	}
	if err := m.o.WritePeers(peers); err != nil {
		klog.ErrorS(err, "registry mirror: failed to write containerd's registry hosts")
		return
	}
	m.peers = append([]string{}, peers...)
	klog.InfoS("registry mirror: peers", "endpoints", peers)
}

// publish sets (or, with "", removes) this Node's annotation, retrying until
// the API answers or ctx ends.
func (m *Mirror) publish(ctx context.Context, endpoint string) {
	_ = wait.PollUntilContextCancel(ctx, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		node, err := m.o.Client.CoreV1().Nodes().Get(ctx, m.o.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if node.Annotations[Annotation] == endpoint {
			return true, nil
		}
		return m.patch(ctx, endpoint) == nil, nil
	})
}

func (m *Mirror) patch(ctx context.Context, endpoint string) error {
	var value any = endpoint
	if endpoint == "" {
		value = nil
	}
	data, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{Annotation: value}}})
	if _, err := m.o.Client.CoreV1().Nodes().Patch(ctx, m.o.NodeName, types.MergePatchType, data, metav1.PatchOptions{}); err != nil {
		klog.ErrorS(err, "registry mirror: failed to annotate the Node", "node", m.o.NodeName)
		return err
	}
	klog.InfoS("registry mirror: published", "node", m.o.NodeName, "endpoint", endpoint)
	return nil
}

// Endpoint is the URL a Node's mirror is reached at: its InternalIP (the
// address its kubelet serving certificate names) and port; "" without one.
func Endpoint(n *corev1.Node, port int) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address != "" {
			return "https://" + net.JoinHostPort(a.Address, strconv.Itoa(port))
		}
	}
	return ""
}

// Peers are the mirror endpoints of every Node but self, ordered by Node name.
func Peers(list []*corev1.Node, self string) []string {
	sorted := slices.Clone(list)
	slices.SortFunc(sorted, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	peers := []string{}
	for _, n := range sorted {
		if e := n.Annotations[Annotation]; n.Name != self && e != "" && n.DeletionTimestamp == nil {
			peers = append(peers, e)
		}
	}
	return peers
}

func find(list []*corev1.Node, name string) *corev1.Node {
	for _, n := range list {
		if n.Name == name {
			return n
		}
	}
	return nil
}
