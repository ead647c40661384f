package component

import (
	"net"
	"os"
)

// SystemdNotifier takes NOTIFY_SOCKET out of the environment and returns a
// function that sends a state (READY=1, STOPPING=1, STATUS=...) to systemd.
//
// Embedded upstream components (kube-apiserver, kubelet) send their own
// READY=1 as soon as they listen; with the socket gone from the environment
// only this process decides when the service is ready. Without a socket (not
// under systemd) the returned function does nothing.
func SystemdNotifier() func(state string) {
	socket := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return func(state string) {
		if socket == "" {
			return
		}
		addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
		if socket[0] == '@' { // abstract socket
			addr.Name = "\x00" + socket[1:]
		}
		conn, err := net.DialUnix("unixgram", nil, addr)
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write([]byte(state))
	}
}
