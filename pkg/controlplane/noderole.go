package controlplane

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// controlPlaneTaint keeps ordinary workloads off the control-plane node
// while other nodes can take them.
var controlPlaneTaint = corev1.Taint{Key: controlPlaneRole, Effect: corev1.TaintEffectNoSchedule}

// withControlPlaneRole returns a copy of node carrying the control-plane role
// label and, only while other nodes exist, the NoSchedule taint; nil when
// node already is so. A lone control-plane node stays schedulable, so a
// one-machine cluster runs workloads.
func withControlPlaneRole(node *corev1.Node, otherNodes bool) *corev1.Node {
	_, labelled := node.Labels[controlPlaneRole]
	tainted := slices.ContainsFunc(node.Spec.Taints, isControlPlaneTaint)
	if labelled && tainted == otherNodes {
		return nil
	}
	out := node.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[controlPlaneRole] = ""
	out.Spec.Taints = slices.DeleteFunc(out.Spec.Taints, isControlPlaneTaint)
	if otherNodes {
		out.Spec.Taints = append(out.Spec.Taints, controlPlaneTaint)
	}
	return out
}

func isControlPlaneTaint(t corev1.Taint) bool {
	return t.Key == controlPlaneTaint.Key && t.Effect == controlPlaneTaint.Effect
}

// nodeRole keeps the control-plane host's Node labelled and tainted as
// withControlPlaneRole says, from an informer on Nodes: the kubelet may not
// set node-role labels on itself (NodeRestriction).
type nodeRole struct {
	client   func() (kubernetes.Interface, error)
	nodeName func() string // the local node's name, known once localNode ran Init

	stopOnce sync.Once
	cancel   context.CancelFunc
	queue    workqueue.TypedRateLimitingInterface[string]
	done     chan struct{}
}

func (r *nodeRole) Name() string               { return "control-plane node role" }
func (r *nodeRole) Init(context.Context) error { return nil }

func (r *nodeRole) Start(ctx context.Context) error {
	client, err := r.client()
	if err != nil {
		return err
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "control-plane-node-role"})
	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	nodes := factory.Core().V1().Nodes()
	enqueue := func(any) { r.queue.Add("nodes") } // one decision covers every node
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		defer factory.Shutdown()
		if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
			return
		}
		for r.processNext(ctx, client, nodes.Lister()) {
		}
	}()
	return nil
}

func (r *nodeRole) processNext(ctx context.Context, client kubernetes.Interface, lister corelisters.NodeLister) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	if err := r.sync(ctx, client, lister); err != nil {
		klog.ErrorS(err, "Failed to set the control-plane node role; retrying", "node", r.nodeName())
		r.queue.AddRateLimited(key)
		return true
	}
	r.queue.Forget(key)
	return true
}

func (r *nodeRole) sync(ctx context.Context, client kubernetes.Interface, lister corelisters.NodeLister) error {
	name := r.nodeName()
	all, err := lister.List(labels.Everything())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(n *corev1.Node) bool { return n.Name == name })
	if name == "" || i < 0 {
		return nil // not registered (yet)
	}
	updated := withControlPlaneRole(all[i], len(all) > 1)
	if updated == nil {
		return nil
	}
	_, err = client.CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to update Node %s: %w", name, err)
	}
	return nil
}

// Stop ends the loop; safe before Start and more than once.
func (r *nodeRole) Stop() error {
	r.stopOnce.Do(func() {
		if r.cancel == nil {
			return
		}
		r.cancel()
		r.queue.ShutDown()
		if r.done != nil {
			<-r.done
		}
	})
	return nil
}
