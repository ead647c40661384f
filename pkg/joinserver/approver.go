package joinserver

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
)

// CSRApprover decides the CSRs of joining and joined kubelets:
//   - kubelet client CSRs made with a join token are approved when no Node
//     holds the name they ask for, else denied (DecideBootstrapClientCSR);
//     a node renewing its own is left to kube-controller-manager;
//   - kubelet serving CSRs are approved when their SANs are exactly the
//     requesting Node's name and addresses and none is the API server's, a
//     service IP or another Node's (DecideServingCSR); others stay pending
//     with an Event saying why, and are checked again when Nodes change.
type CSRApprover struct {
	Client func() (kubernetes.Interface, error)
	// APIServerCert is the API server's serving certificate file: no kubelet
	// serving certificate may name what it names.
	APIServerCert string
	// ServiceCIDR is the service IP range, e.g. 10.96.0.0/12 ("": not checked).
	ServiceCIDR string
	// HostNode returns the control-plane host's own Node name ("" or nil:
	// none); asked at each decision, as the host's node is set up after Start.
	HostNode func() string

	policy   ServingPolicy
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	reported map[string]string // CSR name -> the last reason an Event was sent for
}

func (a *CSRApprover) Name() string { return "kubelet CSR approver" }

// Init reads what the serving policy refuses.
func (a *CSRApprover) Init(context.Context) error {
	p, err := servingPolicy(a.APIServerCert, a.ServiceCIDR)
	if err != nil {
		return err
	}
	a.policy = p
	return nil
}

func servingPolicy(apiServerCert, serviceCIDR string) (ServingPolicy, error) {
	var p ServingPolicy
	if apiServerCert != "" {
		certs, err := certutil.CertsFromFile(apiServerCert)
		if err != nil {
			return p, fmt.Errorf("failed to read the API server certificate for the kubelet CSR approver: %w", err)
		}
		p.ForbiddenDNS, p.ForbiddenIPs = certs[0].DNSNames, certs[0].IPAddresses
	}
	if serviceCIDR != "" {
		_, cidr, err := net.ParseCIDR(serviceCIDR)
		if err != nil {
			return p, fmt.Errorf("service CIDR %q: %w", serviceCIDR, err)
		}
		p.ServiceCIDR = cidr
	}
	return p, nil
}

// decides reports whether csr is one this approver decides and still waits.
func decides(csr *certv1.CertificateSigningRequest) bool {
	return isPending(csr) && (csr.Spec.SignerName == certv1.KubeletServingSignerName || isBootstrapClientCSR(csr))
}

func (a *CSRApprover) Start(context.Context) error {
	client, err := a.Client()
	if err != nil {
		return err
	}
	// Run on its own context: the manager's ctx ends before Stop is called.
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done, a.reported = cancel, make(chan struct{}), map[string]string{}

	factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
	csrInformer := factory.Certificates().V1().CertificateSigningRequests()
	nodeInformer := factory.Core().V1().Nodes()
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubelet-csr-approver"})
	enqueueCSR := func(obj any) {
		if csr, ok := obj.(*certv1.CertificateSigningRequest); ok && decides(csr) {
			queue.Add(csr.Name)
		}
	}
	if _, err := csrInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueCSR,
		UpdateFunc: func(_, obj any) { enqueueCSR(obj) },
		DeleteFunc: func(obj any) {
			if csr, ok := obj.(*certv1.CertificateSigningRequest); ok {
				a.forget(csr.Name)
			}
		},
	}); err != nil {
		cancel()
		return err
	}
	csrLister := csrInformer.Lister()
	// A Node's change can settle its own pending serving CSRs; a Node gone
	// frees its names for any other's.
	enqueueServing := func(nodeName string) {
		csrs, _ := csrLister.List(labels.Everything())
		for _, csr := range csrs {
			if isPendingServing(csr) && (nodeName == "" || csr.Spec.Username == join.NodeUserPrefix+nodeName) {
				queue.Add(csr.Name)
			}
		}
	}
	onNode := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			enqueueServing(n.Name)
		}
	}
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onNode,
		UpdateFunc: func(_, obj any) { onNode(obj) },
		DeleteFunc: func(any) { enqueueServing("") },
	}); err != nil {
		cancel()
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vcluster-standalone-csr-approver"})
	w := &approverWorker{a: a, client: client, csrs: csrLister, nodes: nodeInformer.Lister(), recorder: recorder}

	factory.Start(ctx.Done())
	go func() {
		defer close(a.done)
		defer broadcaster.Shutdown()
		defer factory.Shutdown()
		defer queue.ShutDown()
		if !cache.WaitForCacheSync(ctx.Done(), csrInformer.Informer().HasSynced, nodeInformer.Informer().HasSynced) {
			return
		}
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for w.processNext(ctx, queue) {
			}
		}, time.Second)
		<-ctx.Done()
	}()
	return nil
}

type approverWorker struct {
	a        *CSRApprover
	client   kubernetes.Interface
	csrs     certlisters.CertificateSigningRequestLister
	nodes    corelisters.NodeLister
	recorder record.EventRecorder
}

func (w *approverWorker) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) bool {
	name, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(name)
	if err := w.handle(ctx, name); err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "kubelet CSR decision failed, retrying", "csr", name)
		queue.AddRateLimited(name)
		return true
	}
	queue.Forget(name)
	return true
}

func (w *approverWorker) handle(ctx context.Context, name string) error {
	csr, err := w.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || !decides(csr) {
		return err
	}
	if csr.Spec.SignerName == certv1.KubeletServingSignerName {
		decision, err := w.decideServing(csr)
		if err != nil {
			return err
		}
		if !decision.Approve {
			if w.a.report(name, decision.Why) {
				klog.InfoS("kubelet serving CSR left pending", "csr", name, "requester", csr.Spec.Username, "reason", decision.Why)
				w.recorder.Event(csr, corev1.EventTypeWarning, ReasonServingNotApproved, decision.Why)
			}
			return nil
		}
		return w.update(ctx, csr, certv1.CertificateApproved, ReasonServingApproved, decision.Why)
	}
	// A join token's client CSR: the Node is read from the API server, not
	// the cache, so a Node registered a moment ago still counts.
	var node *corev1.Node
	if nodeName := requestedNodeName(csr); nodeName != "" {
		if node, err = w.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			node = nil
		} else if err != nil {
			return err
		}
	}
	decision := DecideBootstrapClientCSR(csr, node)
	if !decision.Approve {
		klog.InfoS("kubelet client CSR of a join token denied", "csr", name, "requester", csr.Spec.Username, "reason", decision.Why)
		w.recorder.Event(csr, corev1.EventTypeWarning, ReasonClientDenied, decision.Why)
		return w.update(ctx, csr, certv1.CertificateDenied, ReasonClientDenied, decision.Why)
	}
	return w.update(ctx, csr, certv1.CertificateApproved, ReasonClientApproved, decision.Why)
}

func (w *approverWorker) decideServing(csr *certv1.CertificateSigningRequest) (Decision, error) {
	nodes, err := w.nodes.List(labels.Everything())
	if err != nil {
		return Decision{}, err
	}
	var node *corev1.Node
	if name, ok := strings.CutPrefix(csr.Spec.Username, join.NodeUserPrefix); ok {
		for _, n := range nodes {
			if n.Name == name {
				node = n
			}
		}
	}
	p := w.a.policy
	if w.a.HostNode != nil {
		p.HostNode = w.a.HostNode()
	}
	return DecideServingCSR(csr, node, nodes, p), nil
}

// update adds an Approved or Denied condition.
func (w *approverWorker) update(ctx context.Context, csr *certv1.CertificateSigningRequest, kind certv1.RequestConditionType, reason, why string) error {
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: kind, Status: corev1.ConditionTrue, Reason: reason, Message: why, LastUpdateTime: metav1.Now(),
	})
	if _, err := w.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to set %s on CSR %s: %w", kind, csr.Name, err)
	}
	klog.InfoS("kubelet CSR decided", "csr", csr.Name, "requester", csr.Spec.Username, "condition", kind, "reason", why)
	w.a.forget(csr.Name)
	return nil
}

// report returns true when why was not yet reported for this CSR.
func (a *CSRApprover) report(name, why string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reported[name] == why {
		return false
	}
	a.reported[name] = why
	return true
}

func (a *CSRApprover) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.reported, name)
}

// Stop ends the controller and waits for it; safe in any state.
func (a *CSRApprover) Stop() error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	<-a.done
	a.cancel = nil
	return nil
}
