package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func TestNeedsDefrag(t *testing.T) {
	for _, tc := range []struct {
		size, inUse int64
		threshold   int
		want        bool
	}{
		{100, 50, 50, true},
		{100, 51, 50, false},
		{100, 10, 90, true},
		{0, 0, 50, false},
		{100, 100, 1, false},
	} {
		if got := needsDefrag(tc.size, tc.inUse, tc.threshold); got != tc.want {
			t.Errorf("needsDefrag(%d, %d, %d) = %t", tc.size, tc.inUse, tc.threshold, got)
		}
	}
}

// startTestEtcd runs a real etcd with the given quota on free loopback ports.
func startTestEtcd(t *testing.T, quota int64) (*clientv3.Client, string) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	ports := make([]url.URL, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = url.URL{Scheme: "http", Host: l.Addr().String()}
		l.Close()
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = ports[:1], ports[:1]
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = ports[1:], ports[1:]
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = quota
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{ports[0].String()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client, ports[0].String()
}

// A database filled to its quota raises NOSPACE and refuses writes; once the
// objects are deleted and compacted (as kube-apiserver compacts), maintenance
// defragments and disarms the alarm, and writes work again.
func TestMaintainEtcdRecoversFromNOSPACE(t *testing.T) {
	const quota = 16 << 20
	client, endpoint := startTestEtcd(t, quota)
	ctx := context.Background()
	value := strings.Repeat("x", 256<<10)
	var i int
	for i = 0; ; i++ {
		_, err := client.Put(ctx, fmt.Sprintf("/registry/configmaps/big-%d", i), value)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i > 1000 {
			t.Fatal("no NOSPACE after 250 MiB")
		}
	}
	if nospace, err := hasNOSPACE(ctx, client); err != nil || !nospace {
		t.Fatalf("NOSPACE alarm: %t, %v", nospace, err)
	}
	// Still over the quota: the alarm stays.
	var progress bytes.Buffer
	if err := maintainEtcd(ctx, client, endpoint, quota, 50, &progress); err != nil {
		t.Fatal(err)
	}
	if nospace, _ := hasNOSPACE(ctx, client); !nospace {
		t.Fatalf("alarm disarmed while the database is still full:\n%s", progress.String())
	}

	resp, err := client.Delete(ctx, "/registry/configmaps/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	progress.Reset()
	if err := maintainEtcd(ctx, client, endpoint, quota, 50, &progress); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "etcd defragmented") || !strings.Contains(progress.String(), "NOSPACE alarm disarmed") {
		t.Errorf("maintenance output:\n%s", progress.String())
	}
	if nospace, _ := hasNOSPACE(ctx, client); nospace {
		t.Fatalf("alarm still raised after the cleanup")
	}
	if _, err := client.Put(ctx, "/registry/configmaps/after", "v"); err != nil {
		t.Fatalf("write after the recovery: %v", err)
	}

	// Nothing free: no defragmentation.
	progress.Reset()
	if err := maintainEtcd(ctx, client, endpoint, quota, 90, &progress); err != nil || progress.Len() != 0 {
		t.Errorf("maintenance of a compact database: %v, %q", err, progress.String())
	}
}
