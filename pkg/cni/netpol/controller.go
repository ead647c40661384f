package netpol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/announce"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
)

// bridgeNFSysctl makes bridged (same-node) pod traffic pass the inet forward
// hook; without it same-node traffic would bypass every policy.
const bridgeNFSysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"

var errNoPodCIDR = errors.New("node has no pod CIDR yet")

// programTimeout bounds how long a CNI ADD waits for its pod's isolation.
const programTimeout = 30 * time.Second

// clusterPolicySyncTimeout bounds the first wait for the ClusterNetworkPolicy cache.
const clusterPolicySyncTimeout = 20 * time.Second

// Controller is node-agent's NetworkPolicy component. Stop leaves the table
// in place: while node-agent restarts, pods keep their isolation and known
// pods their connectivity; Start rebuilds it whole once the caches are synced.
type Controller struct {
	// Socket and StateFile default to announce.SocketPath and <RunDir>/netpol-announced.json.
	Socket    string
	StateFile string

	client   kubernetes.Interface
	dynamic  dynamic.Interface
	nodeName string
	settings config.ClusterSettings

	factory         informers.SharedInformerFactory
	clusterPolicies cache.SharedIndexInformer
	listener        net.Listener
	logs            *LogReader
	cancel          context.CancelFunc
	done            chan struct{}

	mu        sync.Mutex
	announced map[types.UID]netip.Addr
	wanted    uint64 // generation asked for
	applied   uint64 // generation last applied
	lastErr   error
	changed   *sync.Cond
	trigger   chan struct{}
}

// New returns the component for node nodeName; it enforces only when
// settings.NetworkPolicy.Enabled, and removes the table otherwise.
func New(client kubernetes.Interface, dyn dynamic.Interface, nodeName string, settings config.ClusterSettings) *Controller {
	return &Controller{client: client, dynamic: dyn, nodeName: nodeName, settings: settings}
}

func (c *Controller) Name() string { return "network policy" }

// Init checks what enforcement needs; it changes nothing.
func (c *Controller) Init(context.Context) error {
	if c.Socket == "" {
		c.Socket = announce.SocketPath
	}
	if c.StateFile == "" {
		c.StateFile = filepath.Join(config.RunDir, "netpol-announced.json")
	}
	c.announced = map[types.UID]netip.Addr{}
	c.changed = sync.NewCond(&c.mu)
	if !c.settings.NetworkPolicy.Enabled {
		return nil
	}
	if _, err := netip.ParsePrefix(c.settings.PodCIDR); err != nil {
		return fmt.Errorf("network policy: cluster pod CIDR %q: %w", c.settings.PodCIDR, err)
	}
	return nil
}

// Start removes the table when enforcement is off; otherwise it makes
// bridged traffic visible to the table, listens for the CNI plugin and
// starts the informers and the apply loop.
func (c *Controller) Start(context.Context) error {
	if !c.settings.NetworkPolicy.Enabled {
		if err := Remove(); err != nil {
			return err
		}
		_ = os.Remove(c.Socket)
		return nil
	}
	if err := setSysctl(bridgeNFSysctl, "1"); err != nil {
		return fmt.Errorf("network policy needs net.bridge.bridge-nf-call-iptables=1 so same-node pod traffic is filtered, and it cannot be set: %w", err)
	}
	if data, err := os.ReadFile(c.StateFile); err == nil {
		var saved map[types.UID]string
		if json.Unmarshal(data, &saved) == nil {
			for uid, ip := range saved {
				if a, err := netip.ParseAddr(ip); err == nil {
					c.announced[uid] = a
				}
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(c.Socket), 0o755); err != nil {
		return err
	}
	_ = os.Remove(c.Socket)
	l, err := net.Listen("unix", c.Socket)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", c.Socket, err)
	}
	if err := os.Chmod(c.Socket, 0o600); err != nil {
		l.Close()
		return err
	}
	c.listener = l

	c.factory = informers.NewSharedInformerFactory(c.client, 0)
	c.clusterPolicies = dynamicinformer.NewFilteredDynamicInformer(c.dynamic, ClusterNetworkPolicyResource, "", 0, cache.Indexers{}, nil).Informer()
	c.trigger = make(chan struct{}, 1)
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.kick() },
		UpdateFunc: func(any, any) { c.kick() },
		DeleteFunc: func(obj any) { c.forget(obj); c.kick() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		c.factory.Core().V1().Pods().Informer(),
		c.factory.Core().V1().Namespaces().Informer(),
		c.factory.Core().V1().Nodes().Informer(),
		c.factory.Networking().V1().NetworkPolicies().Informer(),
		c.clusterPolicies,
	} {
		if _, err := inf.AddEventHandler(kick); err != nil {
			l.Close()
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	c.factory.Start(ctx.Done())
	go c.clusterPolicies.Run(ctx.Done())
	go announce.Serve(l, c.program)
	go c.run(ctx)
	if c.logs, err = OpenLogReader(LogGroupDrop, LogGroupAudit); err != nil {
		klog.ErrorS(err, "network policy: dropped packets will not be logged")
	} else {
		go c.logPackets()
	}
	return nil
}

// logPackets writes what the table logs (rate-limited there) into node-agent's log.
func (c *Controller) logPackets() {
	for {
		pkts, err := c.logs.Read()
		if err != nil {
			return
		}
		for _, p := range pkts {
			klog.InfoS("network policy: " + p.String())
		}
	}
}

// Stop ends the informers and the socket, and leaves the table.
func (c *Controller) Stop() error {
	if c.listener != nil {
		c.listener.Close()
	}
	if c.logs != nil {
		c.logs.Close()
	}
	if c.cancel != nil {
		c.cancel()
		<-c.done
		c.factory.Shutdown()
		c.cancel = nil
	}
	return nil
}

func (c *Controller) kick() {
	c.mu.Lock()
	c.wanted++
	c.mu.Unlock()
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// forget drops a deleted pod's announced address.
func (c *Controller) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.announced[p.UID]; ok {
		delete(c.announced, p.UID)
		c.saveLocked()
	}
}

func (c *Controller) saveLocked() {
	out := map[types.UID]string{}
	for uid, a := range c.announced {
		out[uid] = a.String()
	}
	data, _ := json.Marshal(out)
	tmp := c.StateFile + ".tmp"
	if os.WriteFile(tmp, data, 0o600) == nil {
		_ = os.Rename(tmp, c.StateFile)
	}
}

// program records a new pod's address and returns once a table that holds
// it is loaded: the CNI ADD waits for this.
func (c *Controller) program(a announce.Attachment) error {
	addr, _ := netip.ParseAddr(a.IP)
	deadline := time.Now().Add(programTimeout)
	lister := c.factory.Core().V1().Pods().Lister()
	// The pod object exists before its sandbox; the cache may lag a moment.
	for {
		p, err := lister.Pods(a.Namespace).Get(a.Name)
		if err == nil && p.UID == a.UID {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("network policy: pod %s/%s (uid %s) is not known to node-agent yet; it stays isolated", a.Namespace, a.Name, a.UID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	c.announced[a.UID] = addr
	c.saveLocked()
	c.mu.Unlock()
	c.kick()
	c.mu.Lock()
	defer c.mu.Unlock()
	want := c.wanted
	for c.applied < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("network policy: pod %s/%s not programmed within %s (last error: %v)", a.Namespace, a.Name, programTimeout, c.lastErr)
		}
		waitTimeout(c.changed, time.Second)
	}
	return nil
}

// waitTimeout waits on cond (whose lock is held) at most d.
func waitTimeout(cond *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, cond.Broadcast)
	cond.Wait()
	t.Stop()
}

func (c *Controller) run(ctx context.Context) {
	defer close(c.done)
	if !cache.WaitForCacheSync(ctx.Done(),
		c.factory.Core().V1().Pods().Informer().HasSynced,
		c.factory.Core().V1().Namespaces().Informer().HasSynced,
		c.factory.Core().V1().Nodes().Informer().HasSynced,
		c.factory.Networking().V1().NetworkPolicies().Informer().HasSynced) {
		return
	}
	// The control plane installs the ClusterNetworkPolicy CRD at start; a
	// cluster without it must not leave NetworkPolicy unenforced, so the
	// wait for it is bounded (its policies apply once it syncs).
	syncCtx, cancelSync := context.WithTimeout(ctx, clusterPolicySyncTimeout)
	if !cache.WaitForCacheSync(syncCtx.Done(), c.clusterPolicies.HasSynced) && ctx.Err() == nil {
		klog.InfoS("network policy: ClusterNetworkPolicies not listed yet (is the CRD installed?); enforcing without them until they are", "waited", clusterPolicySyncTimeout)
	}
	cancelSync()
	klog.InfoS("network policy: caches synced, building the table")
	// The first apply rebuilds the table whole; later ones change only
	// elements when that is all that differs.
	var applier Applier
	retry := time.NewTimer(time.Hour)
	for {
		c.mu.Lock()
		gen := c.wanted
		c.mu.Unlock()
		begin := time.Now()
		in, err := c.input()
		var stats Stats
		rebuilt := false
		if err == nil {
			t := Compile(in)
			stats = t.Stats()
			rebuilt, err = applier.Apply(t)
		}
		c.mu.Lock()
		c.lastErr = err
		if err == nil {
			c.applied = gen
		}
		c.changed.Broadcast()
		c.mu.Unlock()
		switch {
		case errors.Is(err, errNoPodCIDR):
			// A new node waits for its pod CIDR; no pod can start before it either.
			klog.InfoS("network policy: waiting for the node's pod CIDR")
			retry.Reset(2 * time.Second)
		case err != nil:
			klog.ErrorS(err, "network policy: table not applied; retrying")
			retry.Reset(2 * time.Second)
		default:
			klog.V(2).InfoS("network policy: table applied", "rebuilt", rebuilt, "took", time.Since(begin), "chains", stats.Chains, "rules", stats.Rules, "sets", stats.Sets, "elements", stats.Elements)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.trigger:
		case <-retry.C:
		}
	}
}

// input gathers the compiler's input from the caches.
func (c *Controller) input() (Input, error) {
	f := c.factory
	node, err := f.Core().V1().Nodes().Lister().Get(c.nodeName)
	if err != nil {
		return Input{}, fmt.Errorf("node %s: %w", c.nodeName, err)
	}
	if node.Spec.PodCIDR == "" {
		return Input{}, errNoPodCIDR
	}
	in := Input{NodeName: c.nodeName, PublicEgress: c.settings.NetworkPolicy.PublicEgress}
	if in.NodePodCIDR, err = netip.ParsePrefix(node.Spec.PodCIDR); err != nil {
		return Input{}, fmt.Errorf("node pod CIDR %q: %w", node.Spec.PodCIDR, err)
	}
	for _, s := range []string{c.settings.PodCIDR, c.settings.ServiceCIDR} {
		if p, err := netip.ParsePrefix(s); err == nil {
			in.ClusterRanges = append(in.ClusterRanges, p)
		}
	}
	nodes, _ := f.Core().V1().Nodes().Lister().List(labels.Everything())
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				in.ClusterRanges = append(in.ClusterRanges, netip.PrefixFrom(ip, 32))
			}
		}
	}
	in.PublicEgressCIDR, _ = netip.ParsePrefix(c.settings.NetworkPolicy.PublicEgressCIDR)
	if !in.PublicEgressCIDR.IsValid() {
		in.PublicEgressCIDR = netip.MustParsePrefix("0.0.0.0/0")
	}
	for _, s := range c.settings.NetworkPolicy.DeniedEgress {
		if p, err := netip.ParsePrefix(s); err == nil {
			in.DeniedEgress = append(in.DeniedEgress, p)
		}
	}
	if in.Pods, err = f.Core().V1().Pods().Lister().List(labels.Everything()); err != nil {
		return Input{}, err
	}
	if in.Namespaces, err = f.Core().V1().Namespaces().Lister().List(labels.Everything()); err != nil {
		return Input{}, err
	}
	var pols []*networkingv1.NetworkPolicy
	if pols, err = f.Networking().V1().NetworkPolicies().Lister().List(labels.Everything()); err != nil {
		return Input{}, err
	}
	in.Policies = pols
	for _, obj := range c.clusterPolicies.GetStore().List() {
		p, err := ClusterNetworkPolicyFrom(obj)
		if err != nil {
			klog.ErrorS(err, "network policy: ClusterNetworkPolicy not enforced")
			continue
		}
		in.ClusterPolicies = append(in.ClusterPolicies, p)
	}
	c.mu.Lock()
	in.Announced = make(map[types.UID]netip.Addr, len(c.announced))
	for k, v := range c.announced {
		in.Announced[k] = v
	}
	c.mu.Unlock()
	return in, nil
}

// setSysctl writes value to a /proc/sys file unless it already holds it.
func setSysctl(path, value string) error {
	if cur, err := os.ReadFile(path); err == nil && string(cur) == value+"\n" {
		return nil
	}
	return os.WriteFile(path, []byte(value), 0o644)
}
