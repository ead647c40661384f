package component

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSystemdNotifierOwnsTheSocket(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", socket)

	notify := SystemdNotifier()
	if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		t.Fatalf("NOTIFY_SOCKET still set (%q): embedded components would announce readiness", v)
	}
	notify("READY=1")
	buf := make([]byte, 64)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "READY=1" {
		t.Fatalf("got %q, want READY=1", got)
	}
	if _, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		t.Fatal("notifying put NOTIFY_SOCKET back into the environment")
	}
}

func TestSystemdNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	SystemdNotifier()("READY=1") // must not panic or block
}
