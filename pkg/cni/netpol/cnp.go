package netpol

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ClusterNetworkPolicyResource is the API of sigs.k8s.io/network-policy-api
// v0.3.0 this package enforces. Its Go module is not a dependency (it would
// move shared libraries past what Kubernetes v1.36 builds with), so the types
// below hold just the fields the compiler reads, decoded from unstructured.
var ClusterNetworkPolicyResource = schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1beta1", Resource: "clusternetworkpolicies"}

// Tiers and actions of a ClusterNetworkPolicy.
const (
	TierAdmin    = "Admin"
	TierBaseline = "Baseline"

	ActionAccept = "Accept"
	ActionDeny   = "Deny"
	ActionPass   = "Pass"
)

// ClusterNetworkPolicy is the part of a policy.networking.k8s.io/v1beta1
// ClusterNetworkPolicy the compiler evaluates.
type ClusterNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              CNPSpec `json:"spec"`
}

// CNPSpec: tier and priority order the policy; subject picks the pods it
// applies to; rules are evaluated in the order written.
type CNPSpec struct {
	Tier     string     `json:"tier"`
	Priority int32      `json:"priority"`
	Subject  CNPSubject `json:"subject"`
	Ingress  []CNPRule  `json:"ingress,omitempty"`
	Egress   []CNPRule  `json:"egress,omitempty"`
}

// CNPSubject: exactly one of its fields is set.
type CNPSubject struct {
	Namespaces *metav1.LabelSelector `json:"namespaces,omitempty"`
	Pods       *CNPPods              `json:"pods,omitempty"`
}

// CNPPods selects pods by namespace labels and pod labels together.
type CNPPods struct {
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`
	PodSelector       metav1.LabelSelector `json:"podSelector"`
}

// CNPRule is an ingress rule (From) or an egress rule (To).
type CNPRule struct {
	Name      string        `json:"name,omitempty"`
	Action    string        `json:"action"`
	From      []CNPPeer     `json:"from,omitempty"`
	To        []CNPPeer     `json:"to,omitempty"`
	Protocols []CNPProtocol `json:"protocols,omitempty"`
}

// CNPPeer: exactly one field is set. Nodes and DomainNames are decoded only
// to recognise them: they are experimental features this package does not
// enforce, and a peer it cannot evaluate fails closed.
type CNPPeer struct {
	Namespaces  *metav1.LabelSelector `json:"namespaces,omitempty"`
	Pods        *CNPPods              `json:"pods,omitempty"`
	Networks    []string              `json:"networks,omitempty"`
	Nodes       *metav1.LabelSelector `json:"nodes,omitempty"`
	DomainNames []string              `json:"domainNames,omitempty"`
}

// CNPProtocol: exactly one field is set.
type CNPProtocol struct {
	TCP                  *CNPPortMatch `json:"tcp,omitempty"`
	UDP                  *CNPPortMatch `json:"udp,omitempty"`
	SCTP                 *CNPPortMatch `json:"sctp,omitempty"`
	DestinationNamedPort string        `json:"destinationNamedPort,omitempty"`
}

// CNPPortMatch is a protocol's destination port: a number or a range.
type CNPPortMatch struct {
	DestinationPort *CNPPort `json:"destinationPort,omitempty"`
}

// CNPPort holds Number or Range.
type CNPPort struct {
	Number int32         `json:"number,omitempty"`
	Range  *CNPPortRange `json:"range,omitempty"`
}

// CNPPortRange is Start..End inclusive.
type CNPPortRange struct {
	Start int32 `json:"start"`
	End   int32 `json:"end"`
}

// ClusterNetworkPolicyFrom decodes an object of the dynamic informer.
func ClusterNetworkPolicyFrom(obj any) (*ClusterNetworkPolicy, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("a ClusterNetworkPolicy must be unstructured, not %T", obj)
	}
	var p ClusterNetworkPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return nil, fmt.Errorf("ClusterNetworkPolicy %s: %w", u.GetName(), err)
	}
	return &p, nil
}
