package join

import "time"

// TrustAnnotation is the Node annotation in which node-agent reports the
// cluster CAs its node trusts and which CA signed the kubelet's client
// certificate (a TrustReport in JSON). `certs rotate-ca --finish` reads it to
// know whether a node still depends on the old CA.
const TrustAnnotation = "vcluster-standalone.io/ca-trust"

// TrustReport is the value of TrustAnnotation.
type TrustReport struct {
	// Trusted are the CA pins (sha256:<hex>) of the node's cluster CA file.
	Trusted []string `json:"trusted"`
	// Since is when that file last changed while node-agent ran (zero when
	// it has not since node-agent started): the node's clients re-read it
	// within client-go's CA reload period after that.
	Since time.Time `json:"since"`
	// KubeletTrusted are the CA pins the kubelet trusts the API server with:
	// the CA file as node-agent started it (the upstream kubelet reads it
	// once when it rotates its own client certificate).
	KubeletTrusted []string `json:"kubeletTrusted,omitempty"`
	// KubeletClientCA is the pin of the CA that signed the kubelet's current
	// client certificate; empty when none of the trusted CAs did.
	KubeletClientCA string `json:"kubeletClientCA,omitempty"`
}
