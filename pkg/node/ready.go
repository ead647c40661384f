package node

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeReady is the last component: ready when the kubelet has registered
// the Node and reports it Ready (runtime and pod network up).
type NodeReady struct {
	client kubernetes.Interface
	name   string
}

// NewNodeReady waits for Node name to be Ready.
func NewNodeReady(cs kubernetes.Interface, name string) *NodeReady {
	return &NodeReady{client: cs, name: name}
}

func (r *NodeReady) Name() string                { return "node " + r.name }
func (r *NodeReady) Init(context.Context) error  { return nil }
func (r *NodeReady) Start(context.Context) error { return nil }
func (r *NodeReady) Stop() error                 { return nil }

// Ready polls the Node's Ready condition; the last reason is in the error.
func (r *NodeReady) Ready(ctx context.Context) error {
	last := "not registered yet"
	for {
		node, err := r.client.CoreV1().Nodes().Get(ctx, r.name, metav1.GetOptions{})
		switch {
		case err != nil:
			last = err.Error()
		default:
			if ok, why := nodeIsReady(node); ok {
				return nil
			} else {
				last = why
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready: %s", r.name, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func nodeIsReady(n *corev1.Node) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue, c.Reason + ": " + c.Message
		}
	}
	return false, "no Ready condition yet"
}
