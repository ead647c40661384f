// Command pods measures pod startup latency on one node (or several), or
// keeps pods running there, for hack/bench-node.sh.
//
//	pods -kubeconfig K -node N -ns NS -n 30 latency   # prints "p50 p99 max" in seconds, deletes the pods
//	pods -kubeconfig K -node N1,N2 -ns NS -n 100 latency   # pods spread over the nodes, in turn
//	pods -kubeconfig K -node N -ns NS -n 10 run       # leaves 10 running pods
//	pods -kubeconfig K -ns NS clean                   # deletes the namespace, waits until it is gone
//	pods ... -pvc 64Mi latency                        # each pod with its own new PVC (default class), timed from the PVC's create
//
// Startup latency, as Kubernetes' pod startup SLO defines it: from the pod's
// creation (here: the moment the create request is sent, which the client
// knows to the millisecond; creationTimestamp has one-second resolution) to
// the moment a watch observes the pod Running with every container ready.
// The image is local (imagePullPolicy Never), so no pull time is included,
// as the SLO excludes it. All pods are created back to back, a burst of N
// pods on one node; with -serial each is created once the previous one runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// pvcSize, when set, gives each pod its own PersistentVolumeClaim.
var pvcSize string

func main() {
	kubeconfig := flag.String("kubeconfig", "", "admin kubeconfig")
	nodeName := flag.String("node", "", "node to run the pods on (a comma-separated list: in turn)")
	ns := flag.String("ns", "bench-pods", "namespace (created if missing)")
	image := flag.String("image", "localhost/busybox:e2e", "image already on the node")
	n := flag.Int("n", 30, "number of pods")
	serial := flag.Bool("serial", false, "latency: create each pod once the previous one runs, not all at once")
	timeout := flag.Duration("timeout", 3*time.Minute, "how long pods may take to run")
	flag.StringVar(&pvcSize, "pvc", "", "give each pod a new PVC of this size on the default StorageClass, e.g. 64Mi")
	flag.Parse()
	if flag.NArg() != 1 {
		fail(fmt.Errorf("want one of: latency, run, clean"))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail(err)
	}
	cfg.QPS, cfg.Burst = -1, 0 // measure the cluster, not client-side throttling
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+2*time.Minute)
	defer cancel()
	switch flag.Arg(0) {
	case "clean":
		fail(clean(ctx, cs, *ns))
	case "run":
		ensureNamespace(ctx, cs, *ns)
		_, err := startPods(ctx, cs, *ns, *nodeName, *image, "run", *n, *timeout)
		fail(err)
	case "latency":
		ensureNamespace(ctx, cs, *ns)
		var lat []time.Duration
		if *serial {
			for i := 0; i < *n; i++ {
				l, err := startPods(ctx, cs, *ns, *nodeName, *image, fmt.Sprintf("ser%d", i), 1, *timeout)
				if err != nil {
					fail(err)
				}
				lat = append(lat, l...)
			}
		} else {
			var err error
			if lat, err = startPods(ctx, cs, *ns, *nodeName, *image, "lat", *n, *timeout); err != nil {
				fail(err)
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Printf("%.2f %.2f %.2f\n", pct(lat, 50).Seconds(), pct(lat, 99).Seconds(), lat[len(lat)-1].Seconds())
		fail(deletePods(ctx, cs, *ns, ""))
	default:
		fail(fmt.Errorf("unknown mode %q", flag.Arg(0)))
	}
}

// startPods creates n pods named PREFIX-i on the nodes back to back and returns,
// per pod, the time from its create request to a watch seeing it running.
func startPods(ctx context.Context, cs kubernetes.Interface, ns, nodeList, image, prefix string, n int, timeout time.Duration) ([]time.Duration, error) {
	nodes := strings.Split(nodeList, ",")
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "bench=" + prefix})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	created := map[string]time.Time{}
	zero := int64(0)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": prefix}},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{"kubernetes.io/hostname": nodes[i%len(nodes)]},
				TerminationGracePeriodSeconds: &zero,
				Containers: []corev1.Container{{Name: "main", Image: image, ImagePullPolicy: corev1.PullNever,
					Command: []string{"sleep", "3600"}}},
			},
		}
		created[name] = time.Now()
		if pvcSize != "" {
			size, err := resource.ParseQuantity(pvcSize)
			if err != nil {
				return nil, fmt.Errorf("-pvc: %w", err)
			}
			claim := &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": prefix}},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
				},
			}
			if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}
			pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	lat := map[string]time.Duration{}
	deadline := time.After(timeout)
	for len(lat) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, fmt.Errorf("watch closed with %d/%d pods running", len(lat), n)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				continue
			}
			if _, done := lat[p.Name]; !done && running(p) {
				lat[p.Name] = time.Since(created[p.Name])
			}
		case <-deadline:
			return nil, fmt.Errorf("only %d/%d pods running after %s", len(lat), n, timeout)
		}
	}
	out := make([]time.Duration, 0, n)
	for _, d := range lat {
		out = append(out, d)
	}
	return out, nil
}

func running(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.ContainersReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// deletePods deletes the pods PREFIX-i ("": every pod of ns) and waits until they are gone.
func deletePods(ctx context.Context, cs kubernetes.Interface, ns, prefix string) error {
	zero := int64(0)
	sel := metav1.ListOptions{LabelSelector: "bench=" + prefix}
	if prefix == "" {
		sel.LabelSelector = "bench"
	}
	if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, sel); err != nil {
		return err
	}
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, sel)
		return err == nil && len(l.Items) == 0, nil
	}); err != nil || pvcSize == "" {
		return err
	}
	if err := cs.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, sel); err != nil {
		return err
	}
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
		return err == nil && len(l.Items) == 0, nil
	})
}

func ensureNamespace(ctx context.Context, cs kubernetes.Interface, ns string) {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		fail(err)
	}
	// Pods need the namespace's default ServiceAccount.
	fail(wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}))
}

func clean(ctx context.Context, cs kubernetes.Interface, ns string) error {
	zero := int64(0)
	if err := deletePods(ctx, cs, ns, "run"); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// pct is the p-th percentile of sorted d (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	i := (len(d)*p+99)/100 - 1
	if i < 0 {
		i = 0
	}
	return d[i]
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "pods:", err)
		os.Exit(1)
	}
}
