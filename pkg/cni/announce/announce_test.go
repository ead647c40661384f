package announce

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAnnounceWaitsForTheAnswer(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "netpol.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	programmed := make(chan Attachment, 4)
	go Serve(l, func(a Attachment) error {
		if a.Name == "unknown" {
			return errors.New("pod x/unknown is not known to node-agent yet; it stays isolated")
		}
		time.Sleep(100 * time.Millisecond) // programming takes a while: Send must wait
		programmed <- a
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	want := Attachment{Namespace: "x", Name: "a", UID: "uid-1", IP: "10.244.1.5"}
	if err := Send(ctx, socket, want); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-programmed:
		if got != want {
			t.Fatalf("programmed %+v, want %+v", got, want)
		}
	default:
		t.Fatal("Send returned before the pod was programmed")
	}

	if err := Send(ctx, socket, Attachment{Namespace: "x", Name: "unknown", UID: "uid-2", IP: "10.244.1.6"}); err == nil || !strings.Contains(err.Error(), "stays isolated") {
		t.Fatalf("refusal not passed on: %v", err)
	}
	if err := Send(ctx, socket, Attachment{Namespace: "x", Name: "b", UID: "uid-3", IP: "not-an-ip"}); err == nil || !strings.Contains(err.Error(), "needs a uid and an IP address") {
		t.Fatalf("bad announcement accepted: %v", err)
	}
	if err := Send(ctx, filepath.Join(t.TempDir(), "none.sock"), want); err == nil || !strings.Contains(err.Error(), "failed to reach node-agent") {
		t.Fatalf("missing socket: %v", err)
	}
}
