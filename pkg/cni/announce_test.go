package cni

import (
	"encoding/json"
	"net"
	"path/filepath"
	"testing"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/cni/announce"
)

func TestAnnouncePodReadsTheKubernetesArgs(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "netpol.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan announce.Attachment, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var a announce.Attachment
		_ = json.NewDecoder(c).Decode(&a)
		got <- a
		_, _ = c.Write([]byte("{}\n"))
	}()
	args := "IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=api-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1234-5678"
	if err := announcePod(socket, args, net.ParseIP("10.244.1.7")); err != nil {
		t.Fatal(err)
	}
	want := announce.Attachment{Namespace: "web", Name: "api-0", UID: "1234-5678", IP: "10.244.1.7"}
	if a := <-got; a != want {
		t.Fatalf("announced %+v, want %+v", a, want)
	}
	// A sandbox that is not a pod (no K8S_POD_*) is not announced: the
	// socket is not even dialled.
	if err := announcePod(filepath.Join(t.TempDir(), "absent.sock"), "IgnoreUnknown=1", net.ParseIP("10.244.1.8")); err != nil {
		t.Fatalf("non-pod sandbox: %v", err)
	}
}
