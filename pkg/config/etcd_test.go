package config

import (
	"strings"
	"testing"
	"time"
)

func TestEtcdDefaults(t *testing.T) {
	c := &ControlPlane{DataDir: "/srv/cluster"}
	SetDefaults(c, noAddress)
	e := c.Etcd
	if e.QuotaBackendBytes != 2<<30 || e.Defrag.Threshold != 50 || e.DefragInterval() != time.Hour ||
		e.SnapshotInterval() != 12*time.Hour || e.Snapshots.Retention != 5 || e.Snapshots.Dir != "/srv/cluster/snapshots" || e.Snapshots.PassphraseFile != "" {
		t.Errorf("etcd defaults: %+v", e)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Errorf("defaults do not validate: %v", errs)
	}
}

func TestEtcdValidation(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{"quotaBackendBytes: 1000", "etcd.quotaBackendBytes: invalid value \"1000\": must be between"},
		{"quotaBackendBytes: 17179869184", "8 GiB"},
		{"defrag: {interval: 5s}", "etcd.defrag.interval: invalid value \"5s\": must be 0 or a duration of at least 1m0s"},
		{"defrag: {threshold: 101}", "etcd.defrag.threshold"},
		{"snapshots: {interval: daily}", "etcd.snapshots.interval: invalid value \"daily\""},
		{"snapshots: {interval: 1s}", "at least 10s"},
		{"snapshots: {retention: -1}", "etcd.snapshots.retention: invalid value \"-1\": must be at least 1"},
		{"snapshots: {dir: snaps}", "etcd.snapshots.dir: invalid value \"snaps\": must be an absolute path"},
		{"snapshots: {dir: /var}", "etcd.snapshots.dir: invalid value \"/var\""},
		{"snapshots: {passphraseFile: pass.txt}", "etcd.snapshots.passphraseFile"},
	} {
		c, err := Parse("test", []byte("apiVersion: vcluster-standalone.io/v1alpha1\nkind: ControlPlaneConfig\netcd:\n  "+tc.yaml+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		SetDefaults(c, noAddress)
		errs := c.Validate()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s: errors %v, want one with %q", tc.yaml, errs, tc.want)
		}
	}
	// 0 turns scheduled snapshots off and defragments at start only.
	c, _ := Parse("test", []byte("apiVersion: vcluster-standalone.io/v1alpha1\nkind: ControlPlaneConfig\netcd:\n  snapshots: {interval: \"0\"}\n  defrag: {interval: \"0\"}\n"))
	SetDefaults(c, noAddress)
	if errs := c.Validate(); len(errs) > 0 || c.Etcd.SnapshotInterval() != 0 || c.Etcd.DefragInterval() != 0 {
		t.Errorf("interval 0: %v", errs)
	}
}
