package mirror

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPeersAndEndpoint(t *testing.T) {
	node := func(name, endpoint, ip string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if endpoint != "" {
			n.Annotations = map[string]string{Annotation: endpoint}
		}
		if ip != "" {
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
		}
		return n
	}
	gone := node("lab-node0", "https://10.0.0.9:6445", "")
	gone.DeletionTimestamp = &metav1.Time{}
	list := []*corev1.Node{
		node("lab-node2", "https://10.0.0.12:6445", ""),
		node("lab-cp", "https://10.0.0.10:6445", ""),
		node("lab-node1", "https://10.0.0.11:6445", ""), // self
		node("lab-node3", "", ""),                       // mirror disabled or not up yet
		gone,
	}
	if got, want := Peers(list, "lab-node1"), []string{"https://10.0.0.10:6445", "https://10.0.0.12:6445"}; !slices.Equal(got, want) {
		t.Errorf("peers: %v, want %v", got, want)
	}
	if got := Peers(nil, "x"); got == nil || len(got) != 0 {
		t.Errorf("no nodes: %#v", got)
	}
	if got := Endpoint(node("a", "", "10.0.0.11"), 6445); got != "https://10.0.0.11:6445" {
		t.Errorf("endpoint: %s", got)
	}
	if got := Endpoint(node("a", "", "fd00::11"), 6445); got != "https://[fd00::11]:6445" {
		t.Errorf("IPv6 endpoint: %s", got)
	}
	if got := Endpoint(node("a", "", ""), 6445); got != "" {
		t.Errorf("endpoint without an address: %s", got)
	}
}
