package joinserver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/join"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/apis/certificates"
)

const (
	// ReasonServingApproved is the Approved condition's reason.
	ReasonServingApproved = "ServingCertSANsMatchNode"
	// ReasonServingNotApproved is the reason of the Event on a CSR left pending.
	ReasonServingNotApproved = "ServingCertNotApproved"
)

// ServingDecision says whether a kubelet serving CSR may be approved; when
// not, Why says what is wrong in one line.
type ServingDecision struct {
	Approve bool
	Why     string
}

// DecideServingCSR checks a kubernetes.io/kubelet-serving CSR against the
// Node it is for (nil if there is none): the requester must be that node, the
// request a kubelet serving request, and its DNS and IP SANs exactly the
// Node's hostname and addresses.
func DecideServingCSR(csr *certv1.CertificateSigningRequest, node *corev1.Node) ServingDecision {
	deny := func(format string, a ...any) ServingDecision { return ServingDecision{Why: fmt.Sprintf(format, a...)} }
	name, ok := strings.CutPrefix(csr.Spec.Username, join.NodeUserPrefix)
	if !ok || name == "" || !slices.Contains(csr.Spec.Groups, join.NodesGroup) {
		return deny("requester %q is not a node (system:node:<name> in group %s)", csr.Spec.Username, join.NodesGroup)
	}
	req, err := certificates.ParseCSR(csr.Spec.Request)
	if err != nil {
		return deny("the request cannot be parsed: %v", err)
	}
	usages := sets.NewString()
	for _, u := range csr.Spec.Usages {
		usages.Insert(string(u))
	}
	if err := certificates.ValidateKubeletServingCSR(req, usages); err != nil {
		return deny("not a kubelet serving request: %v", err)
	}
	if req.Subject.CommonName != csr.Spec.Username {
		return deny("subject %q differs from the requesting node %q", req.Subject.CommonName, csr.Spec.Username)
	}
	if node == nil {
		return deny("Node %s does not exist", name)
	}
	wantDNS, wantIPs := sets.New[string](), sets.New[string]()
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			wantDNS.Insert(a.Address)
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				wantIPs.Insert(ip.String())
			}
		}
	}
	gotDNS, gotIPs := sets.New(req.DNSNames...), sets.New[string]()
	for _, ip := range req.IPAddresses {
		gotIPs.Insert(ip.String())
	}
	if extra := gotDNS.Difference(wantDNS).Union(gotIPs.Difference(wantIPs)); extra.Len() > 0 {
		return deny("SANs %s are not addresses of Node %s (%s)", strings.Join(sets.List(extra), ", "), name, nodeAddresses(wantDNS, wantIPs))
	}
	if missing := wantDNS.Difference(gotDNS).Union(wantIPs.Difference(gotIPs)); missing.Len() > 0 {
		return deny("SANs lack %s of Node %s; they must be exactly its hostname and addresses", strings.Join(sets.List(missing), ", "), name)
	}
	return ServingDecision{Approve: true, Why: fmt.Sprintf("SANs match the hostname and addresses of Node %s", name)}
}

func nodeAddresses(dns, ips sets.Set[string]) string {
	all := append(sets.List(dns), sets.List(ips)...)
	if len(all) == 0 {
		return "it has none yet"
	}
	return "it has " + strings.Join(all, ", ")
}

// isPendingServing reports whether csr is a kubelet serving CSR still waiting.
func isPendingServing(csr *certv1.CertificateSigningRequest) bool {
	if csr.Spec.SignerName != certv1.KubeletServingSignerName || len(csr.Status.Certificate) > 0 {
		return false
	}
	for _, c := range csr.Status.Conditions {
		if c.Type == certv1.CertificateApproved || c.Type == certv1.CertificateDenied || c.Type == certv1.CertificateFailed {
			return false
		}
	}
	return true
}

// ServingApprover approves kubelet serving CSRs whose SANs are exactly the
// requesting Node's hostname and addresses; others stay pending with an Event
// saying why. It re-checks pending CSRs when their Node changes.
type ServingApprover struct {
	Client func() (kubernetes.Interface, error)

	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	reported map[string]string // CSR name -> the last reason an Event was sent for
}

func (a *ServingApprover) Name() string               { return "kubelet serving CSR approver" }
func (a *ServingApprover) Init(context.Context) error { return nil }

func (a *ServingApprover) Start(context.Context) error {
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
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "serving-csr-approver"})
	enqueueCSR := func(obj any) {
		if csr, ok := obj.(*certv1.CertificateSigningRequest); ok && isPendingServing(csr) {
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
	enqueueNode := func(obj any) {
		node, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		csrs, _ := csrLister.List(labels.Everything())
		for _, csr := range csrs {
			if csr.Spec.Username == join.NodeUserPrefix+node.Name && isPendingServing(csr) {
				queue.Add(csr.Name)
			}
		}
	}
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueNode,
		UpdateFunc: func(_, obj any) { enqueueNode(obj) },
	}); err != nil {
		cancel()
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "vcluster-standalone-serving-csr-approver"})

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
			for a.processNext(ctx, client, queue, csrLister.Get, nodeInformer.Lister(), recorder) {
			}
		}, time.Second)
		<-ctx.Done()
	}()
	return nil
}

func (a *ServingApprover) processNext(ctx context.Context, client kubernetes.Interface, queue workqueue.TypedRateLimitingInterface[string],
	getCSR func(string) (*certv1.CertificateSigningRequest, error), nodes corelisters.NodeLister, recorder record.EventRecorder) bool {
	name, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(name)
	if err := a.handle(ctx, client, name, getCSR, nodes, recorder); err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "serving CSR approval failed, retrying", "csr", name)
		queue.AddRateLimited(name)
		return true
	}
	queue.Forget(name)
	return true
}

func (a *ServingApprover) handle(ctx context.Context, client kubernetes.Interface, name string,
	getCSR func(string) (*certv1.CertificateSigningRequest, error), nodes corelisters.NodeLister, recorder record.EventRecorder) error {
	csr, err := getCSR(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || !isPendingServing(csr) {
		return err
	}
	var node *corev1.Node
	if nodeName, ok := strings.CutPrefix(csr.Spec.Username, join.NodeUserPrefix); ok {
		if node, err = nodes.Get(nodeName); apierrors.IsNotFound(err) {
			node = nil
		} else if err != nil {
			return err
		}
	}
	decision := DecideServingCSR(csr, node)
	if !decision.Approve {
		if a.report(name, decision.Why) {
			klog.InfoS("kubelet serving CSR left pending", "csr", name, "requester", csr.Spec.Username, "reason", decision.Why)
			recorder.Event(csr, corev1.EventTypeWarning, ReasonServingNotApproved, decision.Why)
		}
		return nil
	}
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: ReasonServingApproved, Message: decision.Why, LastUpdateTime: metav1.Now(),
	})
	if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to approve CSR %s: %w", name, err)
	}
	klog.InfoS("approved kubelet serving CSR", "csr", name, "requester", csr.Spec.Username)
	a.forget(name)
	return nil
}

// report returns true when why was not yet reported for this CSR.
func (a *ServingApprover) report(name, why string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reported[name] == why {
		return false
	}
	a.reported[name] = why
	return true
}

func (a *ServingApprover) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.reported, name)
}

// Stop ends the controller and waits for it; safe in any state.
func (a *ServingApprover) Stop() error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	<-a.done
	a.cancel = nil
	return nil
}
