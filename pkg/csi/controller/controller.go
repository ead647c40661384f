package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	snapshotclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	provisionlib "sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi/api"
)

// resyncEvery is how often capacity, events and the GC run without a change.
const resyncEvery = 30 * time.Second

// Controller is the CSI driver's control-plane half as a pkg/component
// component: the Identity and Controller services on a unix socket (for
// csi-sanity and debugging) and, in-process, the provisioner, resizer,
// snapshot controllers, capacity and garbage collection calling them.
type Controller struct {
	// Config returns the controller identity's client config.
	Config func() (*rest.Config, error)
	// Socket is where the CSI services listen (mode 0600).
	Socket  string
	Version string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	server *grpc.Server
	failed chan error
}

func (c *Controller) Name() string               { return "CSI controller" }
func (c *Controller) Init(context.Context) error { return nil }

// Failed reports the socket server ending on its own.
func (c *Controller) Failed() <-chan error { return c.failed }

func (c *Controller) Start(context.Context) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	snapshots, err := snapshotclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	st := newStore(dyn)
	service := newService(st)
	if err := c.serve(service); err != nil {
		return err
	}
	// Run on its own context: the manager's ctx ends before Stop is called.
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: csi.DriverName})

	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	capacityFactory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithNamespace(capacityNamespace))
	dynFactory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
	claimInformer := factory.Core().V1().PersistentVolumeClaims()
	pvInformer := factory.Core().V1().PersistentVolumes()
	nodeInformer := factory.Core().V1().Nodes()
	classInformer := factory.Storage().V1().StorageClasses()
	capacityInformer := capacityFactory.Storage().V1().CSIStorageCapacities()

	cluster := &clusterSync{client: client, store: st, nodes: nodeInformer.Lister(), claims: claimInformer.Lister(), pvs: pvInformer.Lister(),
		classes: classInformer.Lister(), capacities: capacityInformer.Lister(), recorder: recorder}
	rs := &resizer{service: service, client: client, pvs: pvInformer.Lister(), recorder: recorder}

	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	resizes := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "csi-resizer"})
	onClaim := func(obj any) {
		poke()
		if claim, ok := obj.(*corev1.PersistentVolumeClaim); ok {
			if _, _, wants := rs.wants(claim); wants {
				resizes.Add(claimKey(claim))
			}
		}
	}
	pokeAll := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { poke() }, UpdateFunc: func(_, _ any) { poke() }, DeleteFunc: func(any) { poke() }}
	for _, inf := range []cache.SharedIndexInformer{nodeInformer.Informer(), classInformer.Informer(), pvInformer.Informer(),
		dynFactory.ForResource(api.PoolResource).Informer(), dynFactory.ForResource(api.VolumeResource).Informer()} {
		if _, err := inf.AddEventHandler(pokeAll); err != nil {
			cancel()
			return err
		}
	}
	if _, err := claimInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onClaim, UpdateFunc: func(_, obj any) { onClaim(obj) }, DeleteFunc: func(any) { poke() },
	}); err != nil {
		cancel()
		return err
	}
	_ = capacityInformer.Informer()
	factory.Start(ctx.Done())
	capacityFactory.Start(ctx.Done())
	dynFactory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	capacityFactory.WaitForCacheSync(ctx.Done())
	dynFactory.WaitForCacheSync(ctx.Done())

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.syncLoop(ctx, cluster, kick)
	}()
	for range 4 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.resizeWorker(ctx, rs, claimInformer, resizes)
		}()
	}
	go func() { <-ctx.Done(); resizes.ShutDown() }()

	prov := provisionlib.NewProvisionController(ctx, client, csi.DriverName,
		&provisioner{service: service, client: client, snapshots: snapshots},
		provisionlib.LeaderElection(false),
		provisionlib.Threadiness(8),
		provisionlib.ClaimsInformer(claimInformer.Informer()),
		provisionlib.VolumesInformer(pvInformer.Informer()),
		provisionlib.ClassesInformer(classInformer.Informer()),
		provisionlib.AddFinalizer(true),
		provisionlib.FailedProvisionThreshold(0),
		provisionlib.FailedDeleteThreshold(0),
		provisionlib.ProvisionTimeout(2*time.Minute),
		provisionlib.DeletionTimeout(2*time.Minute),
	)
	c.wg.Add(1)
	go func() { defer c.wg.Done(); prov.Run(ctx) }()
	runSnapshotControllers(ctx, client, snapshots, service, &c.wg)
	return nil
}

// serve listens on the socket, readable by root only.
func (c *Controller) serve(service *Service) error {
	if err := os.MkdirAll(filepath.Dir(c.Socket), 0o700); err != nil {
		return err
	}
	if err := os.Remove(c.Socket); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove stale CSI socket: %w", err)
	}
	lis, err := net.Listen("unix", c.Socket)
	if err != nil {
		return fmt.Errorf("CSI controller socket: %w", err)
	}
	if err := os.Chmod(c.Socket, 0o600); err != nil {
		lis.Close()
		return err
	}
	c.server = grpc.NewServer()
	csipb.RegisterIdentityServer(c.server, &csi.IdentityServer{Version: c.Version, Controller: true})
	csipb.RegisterControllerServer(c.server, service)
	c.failed = make(chan error, 1)
	go func() {
		if err := c.server.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			c.failed <- fmt.Errorf("CSI controller socket: %w", err)
		}
	}()
	return nil
}

func (c *Controller) syncLoop(ctx context.Context, s *clusterSync, kick <-chan struct{}) {
	ticker := time.NewTicker(resyncEvery)
	defer ticker.Stop()
	for {
		if err := s.sync(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "CSI cluster sync")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-kick:
			// Let a burst of events settle into one pass.
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (c *Controller) resizeWorker(ctx context.Context, rs *resizer, claims interface {
	Lister() corelisters.PersistentVolumeClaimLister
}, queue workqueue.TypedRateLimitingInterface[string]) {
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		func() {
			defer queue.Done(key)
			ns, name, _ := cache.SplitMetaNamespaceKey(key)
			claim, err := claims.Lister().PersistentVolumeClaims(ns).Get(name)
			if err != nil {
				queue.Forget(key)
				return
			}
			if err := rs.resize(ctx, claim.DeepCopy()); err != nil {
				klog.ErrorS(err, "CSI resize", "pvc", key)
				queue.AddRateLimited(key)
				return
			}
			queue.Forget(key)
		}()
	}
}

func (c *Controller) Stop() error {
	if c.cancel != nil {
		c.cancel()
	}
	if c.server != nil {
		c.server.Stop()
	}
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		klog.InfoS("CSI controller workers still busy at stop; leaving them")
	}
	if c.Socket != "" {
		os.Remove(c.Socket)
	}
	return nil
}
