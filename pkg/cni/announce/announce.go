// Package announce is the CNI plugin's line to node-agent: after ADD gives a
// pod its address, the plugin announces it and waits until node-agent has
// programmed the pod's network policies. It is a leaf package (standard
// library and the UID type only), because the plugin runs as a short-lived
// process that must start in milliseconds.
package announce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// SocketPath is where node-agent listens for the CNI plugin's announcements.
const SocketPath = "/run/node-agent/netpol.sock"

// Attachment is what the CNI plugin tells node-agent about a new pod: the
// sandbox's pod (from CNI_ARGS K8S_POD_*) and the address it got.
type Attachment struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
	IP        string    `json:"ip"`
}

type announceReply struct {
	Error string `json:"error,omitempty"`
}

// Send tells node-agent about a pod's address and waits until its
// isolation is programmed. Until then the pod's address is unknown to the
// table, which drops all of its traffic but the node's own (fail closed).
func Send(ctx context.Context, socket string, a Attachment) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("failed to reach node-agent's network policy socket %s: %w", socket, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if err := json.NewEncoder(conn).Encode(a); err != nil {
		return fmt.Errorf("failed to announce pod %s/%s: %w", a.Namespace, a.Name, err)
	}
	var reply announceReply
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		return fmt.Errorf("no answer from node-agent for pod %s/%s: %w", a.Namespace, a.Name, err)
	}
	if reply.Error != "" {
		return errors.New(reply.Error)
	}
	return nil
}

// Serve answers each connection on l with program's result, until l is
// closed.
func Serve(l net.Listener, program func(Attachment) error) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(time.Minute))
			var a Attachment
			var reply announceReply
			if err := json.NewDecoder(conn).Decode(&a); err != nil {
				reply.Error = fmt.Sprintf("bad announcement: %v", err)
			} else if _, perr := netip.ParseAddr(a.IP); perr != nil || a.UID == "" {
				reply.Error = fmt.Sprintf("bad announcement for pod %s/%s: needs a uid and an IP address", a.Namespace, a.Name)
			} else if err := program(a); err != nil {
				reply.Error = err.Error()
			}
			_ = json.NewEncoder(conn).Encode(reply)
		}()
	}
}
