package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/announce"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// Node annotations through which nodes learn how to reach each other.
const (
	AnnotationPrefix = "network.vcluster-standalone.io/"
	// AnnotationVTEPMAC is the MAC address of the node's VXLAN device.
	AnnotationVTEPMAC = AnnotationPrefix + "vtep-mac"
	// AnnotationNodeIP is the node's VTEP address / host-gw next hop.
	AnnotationNodeIP = AnnotationPrefix + "node-ip"
	// AnnotationBackend is the backend the node runs.
	AnnotationBackend = AnnotationPrefix + "backend"
)

// DefaultResync is how often the data path is re-checked against the Nodes
// even when nothing changed, repairing drift (a route deleted by hand...).
const DefaultResync = 30 * time.Second

// retryAfterError is how soon a failed sync is tried again.
const retryAfterError = 5 * time.Second

// Controller is the node's network controller component: it publishes this
// node's annotations, waits for its pod CIDR, sets up the data path, writes
// the CNI config and keeps routes to every other node in step with the
// Nodes. Stop leaves the data path in place (pods keep working across a
// restart); Reset removes it.
type Controller struct {
	// Resync is the period of full re-checks; DefaultResync when zero.
	Resync time.Duration
	// WriteCNIConfig writes the CNI config; cni.WriteConfList when nil.
	WriteCNIConfig func(dir string, c cni.NetConf) error

	client   kubernetes.Interface
	node     *config.Node
	settings config.ClusterSettings

	local Local
	dp    dataplane

	cancel  context.CancelFunc
	done    chan struct{}
	ready   chan struct{}
	failed  chan error
	trigger chan struct{}
	stopMu  sync.Mutex
}

// dataplane is what the controller needs of *Dataplane.
type dataplane interface {
	EnsureLocal(Local) error
	SyncPeers(Local, []Peer) error
}

// New returns the controller for the node described by node, in the cluster
// described by settings, using client (the node's own credential: it may
// get, list and watch Nodes and patch its own Node).
func New(client kubernetes.Interface, node *config.Node, settings config.ClusterSettings) *Controller {
	return &Controller{client: client, node: node, settings: settings}
}

func (c *Controller) Name() string { return "network controller" }

// Init checks the settings and picks the uplink; it changes nothing.
func (c *Controller) Init(context.Context) error {
	l := Local{Backend: c.settings.Backend, VNI: c.settings.VNI}
	var err error
	if l.ClusterCIDR, err = netip.ParsePrefix(c.settings.PodCIDR); err != nil || !l.ClusterCIDR.Addr().Is4() {
		return fmt.Errorf("cluster pod CIDR %q is not an IPv4 CIDR", c.settings.PodCIDR)
	}
	l.ClusterCIDR = l.ClusterCIDR.Masked()
	if c.settings.ServiceCIDR != "" {
		if l.ServiceCIDR, err = netip.ParsePrefix(c.settings.ServiceCIDR); err != nil {
			return fmt.Errorf("service CIDR %q is not a CIDR", c.settings.ServiceCIDR)
		}
		l.ServiceCIDR = l.ServiceCIDR.Masked()
	}
	if l.Uplink, err = FindUplink(c.node.Iface, c.node.NodeIP); err != nil {
		return err
	}
	if err := checkLocal(l); err != nil {
		return err
	}
	if l.MTU() < 576 {
		return fmt.Errorf("uplink %s has MTU %d: too small for pods (%d after overhead)", l.Uplink.Name, l.Uplink.MTU, l.MTU())
	}
	if c.dp, err = NewDataplane(); err != nil {
		return err
	}
	c.local = l
	klog.InfoS("network uplink", "iface", l.Uplink.Name, "address", l.Uplink.IP, "mtu", l.Uplink.MTU, "backend", l.Backend)
	return nil
}

// Start sets up the local data path (device, masquerade, forwarding) at
// once, then works on in the background: annotations, pod CIDR, CNI config,
// routes to peers.
func (c *Controller) Start(context.Context) error {
	if c.dp == nil {
		return errors.New("network controller: Start before Init")
	}
	if err := c.dp.EnsureLocal(c.local); err != nil {
		return err
	}
	// Own context: the manager's ends before Stop is called.
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	c.ready = make(chan struct{})
	c.failed = make(chan error, 1)
	c.trigger = make(chan struct{}, 1)
	go c.run(ctx)
	return nil
}

// Ready returns once the CNI config is written (the node has its pod CIDR
// and the data path is set up). The kubelet registers the Node, so the
// kubelet must not wait for this component.
func (c *Controller) Ready(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failed yields an error when the cluster assigned this node a pod CIDR the
// controller cannot use.
func (c *Controller) Failed() <-chan error { return c.failed }

// Stop ends the background work; the data path stays as it is.
func (c *Controller) Stop() error {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.cancel != nil {
		c.cancel()
		<-c.done
		c.cancel = nil
	}
	return nil
}

func (c *Controller) kick() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

func (c *Controller) run(ctx context.Context) {
	defer close(c.done)
	factory := informers.NewSharedInformerFactory(c.client, 0)
	nodes := factory.Core().V1().Nodes()
	kick := func(any) { c.kick() }
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, _ any) { c.kick() }, DeleteFunc: kick,
	}); err != nil {
		c.failed <- fmt.Errorf("failed to watch Nodes: %w", err)
		return
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
		return
	}
	resync := c.Resync
	if resync <= 0 {
		resync = DefaultResync
	}
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	r := reconciler{c: c, lister: nodes.Lister()}
	force := true
	for {
		var retry <-chan time.Time
		if err := r.reconcile(ctx, force); err != nil {
			if errors.Is(err, errFatal) {
				c.failed <- err
				return
			}
			klog.ErrorS(err, "network sync failed; retrying", "in", retryAfterError)
			retry = time.After(retryAfterError)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.trigger:
			force = false
		case <-ticker.C:
			force = true
		case <-retry:
			force = true
		}
	}
}

var errFatal = errors.New("cannot continue")

// reconciler holds the state of the run loop.
type reconciler struct {
	c        *Controller
	lister   corelisters.NodeLister
	waiting  string    // what we last said we wait for
	waitSaid time.Time // when
	applied  []Peer    // the peers of the last successful sync
	synced   bool
	skipped  map[string]string // node → why it was last left out
}

// wait logs what the controller waits for: once, then every minute.
func (r *reconciler) wait(msg string) {
	if msg != r.waiting || time.Since(r.waitSaid) > time.Minute {
		klog.InfoS(msg)
		r.waiting, r.waitSaid = msg, time.Now()
	}
}

func (r *reconciler) reconcile(ctx context.Context, force bool) error {
	c := r.c
	self, err := r.lister.Get(c.node.NodeName)
	if apierrors.IsNotFound(err) {
		r.wait(fmt.Sprintf("waiting for the kubelet to register Node %s", c.node.NodeName))
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.publish(ctx, self); err != nil {
		return err
	}
	if self.Spec.PodCIDR == "" {
		r.wait(fmt.Sprintf("waiting for Node %s to get a pod CIDR (spec.podCIDR) from kube-controller-manager's node IPAM (--allocate-node-cidrs, --cluster-cidr=%s)", self.Name, c.local.ClusterCIDR))
		return nil
	}
	podCIDR, err := netip.ParsePrefix(self.Spec.PodCIDR)
	if err != nil || !podCIDR.Addr().Is4() || !contains(c.local.ClusterCIDR, podCIDR) {
		return fmt.Errorf("%w: Node %s has pod CIDR %q, which is not an IPv4 CIDR inside the cluster pod CIDR %s", errFatal, self.Name, self.Spec.PodCIDR, c.local.ClusterCIDR)
	}
	c.local.PodCIDR = podCIDR.Masked()

	all, err := r.lister.List(labels.Everything())
	if err != nil {
		return err
	}
	peers, skipped := PeersFromNodes(self.Name, c.local.Backend, all)
	for name, why := range skipped {
		if r.skipped[name] != why {
			klog.InfoS("not routing to node yet", "node", name, "reason", why)
		}
	}
	r.skipped = skipped
	if !force && r.synced && slices.EqualFunc(peers, r.applied, samePeer) {
		return nil
	}
	r.synced = false
	if err := c.dp.EnsureLocal(c.local); err != nil {
		return err
	}
	select {
	case <-c.ready:
	default:
		write := c.WriteCNIConfig
		if write == nil {
			write = cni.WriteConfList
		}
		conf := cni.NetConf{MTU: c.local.MTU(), Subnet: c.local.PodCIDR.String(), IPAMDir: c.node.IPAMDir()}
		if c.settings.NetworkPolicy.Enabled {
			conf.PolicySocket = announce.SocketPath
		}
		if err := write(c.node.CNIConfDir(), conf); err != nil {
			return err
		}
		klog.InfoS("network ready: CNI config written", "dir", c.node.CNIConfDir(), "podCIDR", c.local.PodCIDR, "mtu", conf.MTU)
		close(c.ready)
	}
	if err := c.dp.SyncPeers(c.local, peers); err != nil {
		return err
	}
	r.applied, r.synced = peers, true
	return nil
}

// annotations are what this node publishes.
func (c *Controller) annotations() map[string]string {
	a := map[string]string{
		AnnotationNodeIP:  c.local.Uplink.IP.String(),
		AnnotationBackend: c.local.Backend,
	}
	if b, err := backendOf(c.local.Backend); err == nil {
		b.annotate(c.local, a)
	}
	return a
}

// publish patches this node's annotations when they differ.
func (c *Controller) publish(ctx context.Context, self *corev1.Node) error {
	want := c.annotations()
	patch := map[string]any{}
	for k, v := range want {
		if self.Annotations[k] != v {
			patch[k] = v
		}
	}
	if _, ok := want[AnnotationVTEPMAC]; !ok && self.Annotations[AnnotationVTEPMAC] != "" {
		patch[AnnotationVTEPMAC] = nil // host-gw: no VTEP
	}
	if len(patch) == 0 {
		return nil
	}
	data, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
	if err != nil {
		return err
	}
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, self.Name, types.MergePatchType, data, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("failed to publish network annotations on Node %s: %w", self.Name, err)
	}
	klog.InfoS("published network annotations", "node", self.Name, "annotations", want)
	return nil
}

// PeersFromNodes turns Nodes into peers for a node named self running
// backend, sorted by name. Nodes not (yet) usable are left out, with the
// reason in skipped: no pod CIDR, no annotations, another backend.
func PeersFromNodes(self, backend string, nodes []*corev1.Node) (peers []Peer, skipped map[string]string) {
	skipped = map[string]string{}
	for _, n := range nodes {
		if n.Name == self || n.DeletionTimestamp != nil {
			continue
		}
		p, why := peerOf(backend, n)
		if why != "" {
			skipped[n.Name] = why
			continue
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b Peer) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return peers, skipped
}

func peerOf(backend string, n *corev1.Node) (Peer, string) {
	p := Peer{Name: n.Name}
	if n.Spec.PodCIDR == "" {
		return p, "it has no pod CIDR yet"
	}
	cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil || !cidr.Addr().Is4() {
		return p, fmt.Sprintf("its pod CIDR %q is not an IPv4 CIDR", n.Spec.PodCIDR)
	}
	p.PodCIDR = cidr.Masked()
	a := n.Annotations
	if a[AnnotationBackend] == "" {
		return p, "its network controller has not published its annotations yet"
	}
	if a[AnnotationBackend] != backend {
		return p, fmt.Sprintf("it runs backend %q, this node %q", a[AnnotationBackend], backend)
	}
	ip, err := netip.ParseAddr(a[AnnotationNodeIP])
	if err != nil || !ip.Is4() {
		return p, fmt.Sprintf("annotation %s=%q is not an IPv4 address", AnnotationNodeIP, a[AnnotationNodeIP])
	}
	p.IP = ip
	b, err := backendOf(backend)
	if err != nil {
		return p, err.Error()
	}
	return p, b.readPeer(a, &p)
}

func samePeer(a, b Peer) bool {
	return a.Name == b.Name && a.PodCIDR == b.PodCIDR && a.IP == b.IP && a.VTEPMAC.String() == b.VTEPMAC.String()
}
