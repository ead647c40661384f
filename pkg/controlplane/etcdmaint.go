package controlplane

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/snapshot"
)

// Compaction is kube-apiserver's: it compacts etcd every 5 minutes
// (--etcd-compaction-interval), so etcd's own auto-compaction stays off.
// What compaction frees stays inside the database file until a
// defragmentation returns it, and a database that reaches its quota raises
// NOSPACE and takes only reads and deletes. etcdMaintenance does those two:
// it defragments when etcd.defrag.threshold percent of the file is free (at
// start and every etcd.defrag.interval) and, after a NOSPACE alarm, once
// the database is back under 90% of its quota, disarms the alarm.
type etcdMaintenance struct {
	c        *config.ControlPlane
	progress io.Writer

	stop func()
	done chan struct{}
	once sync.Once
}

// disarmBelow is the share of the quota the database must be under before a
// NOSPACE alarm is disarmed (writes would raise it again at once otherwise).
const disarmBelow = 0.9

func (m *etcdMaintenance) Name() string               { return "etcd maintenance" }
func (m *etcdMaintenance) Init(context.Context) error { return nil }

func (m *etcdMaintenance) Start(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	m.stop, m.done = cancel, make(chan struct{})
	go m.loop(ctx)
	return nil
}

func (m *etcdMaintenance) loop(ctx context.Context) {
	defer close(m.done)
	interval := m.c.Etcd.DefragInterval()
	for {
		if err := m.check(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "etcd maintenance check failed")
		}
		if interval == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (m *etcdMaintenance) check(ctx context.Context) error {
	client, endpoint, err := newEtcdClient(m.c)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return maintainEtcd(ctx, client, endpoint, int64(m.c.Etcd.QuotaBackendBytes), m.c.Etcd.Defrag.Threshold, m.progress)
}

// maintainEtcd defragments when needed and disarms a NOSPACE alarm once the
// database is back under its quota.
func maintainEtcd(ctx context.Context, client *clientv3.Client, endpoint string, quota int64, threshold int, progress io.Writer) error {
	st, err := client.Status(ctx, endpoint)
	if err != nil {
		return fmt.Errorf("etcd status: %w", err)
	}
	nospace, err := hasNOSPACE(ctx, client)
	if err != nil {
		return err
	}
	if !nospace && !needsDefrag(st.DbSize, st.DbSizeInUse, threshold) {
		return nil
	}
	begin := time.Now()
	if _, err := client.Defragment(ctx, endpoint); err != nil {
		return fmt.Errorf("etcd defragmentation: %w", err)
	}
	after, err := client.Status(ctx, endpoint)
	if err != nil {
		return fmt.Errorf("etcd status: %w", err)
	}
	fmt.Fprintf(progress, "etcd defragmented: %s -> %s in %.2fs\n", snapshot.HumanBytes(st.DbSize), snapshot.HumanBytes(after.DbSize), time.Since(begin).Seconds())
	if nospace {
		if float64(after.DbSize) >= disarmBelow*float64(quota) {
			klog.InfoS("etcd NOSPACE alarm stays: the database is still near its quota; delete objects or raise etcd.quotaBackendBytes", "size", after.DbSize, "quota", quota)
			return nil
		}
		if _, err := client.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: after.Header.MemberId, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			return fmt.Errorf("etcd alarm disarm: %w", err)
		}
		fmt.Fprintf(progress, "etcd NOSPACE alarm disarmed: the database is %s of a %s quota\n", snapshot.HumanBytes(after.DbSize), snapshot.HumanBytes(quota))
	}
	return nil
}

// needsDefrag: at least threshold percent of the database file is free.
func needsDefrag(size, inUse int64, threshold int) bool {
	return size > 0 && (size-inUse)*100 >= int64(threshold)*size
}

func hasNOSPACE(ctx context.Context, client *clientv3.Client) (bool, error) {
	alarms, err := client.AlarmList(ctx)
	if err != nil {
		return false, fmt.Errorf("etcd alarms: %w", err)
	}
	for _, a := range alarms.Alarms {
		if a.Alarm == pb.AlarmType_NOSPACE {
			return true, nil
		}
	}
	return false, nil
}

func (m *etcdMaintenance) Stop() error {
	m.once.Do(func() {
		if m.stop != nil {
			m.stop()
			<-m.done
		}
	})
	return nil
}

// EtcdState is what `status` shows of etcd: its database against its quota
// and its alarms.
type EtcdState struct {
	Version             string
	DBSize, DBSizeInUse int64
	Quota               int64
	Revision            int64
	Alarms              []string
}

// EtcdStatus reads the running etcd's state.
func EtcdStatus(ctx context.Context, c *config.ControlPlane) (*EtcdState, error) {
	client, endpoint, err := newEtcdClient(c)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := client.Status(ctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("etcd does not answer on %s: %w", endpoint, err)
	}
	alarms, err := client.AlarmList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd alarms: %w", err)
	}
	s := &EtcdState{Version: st.Version, DBSize: st.DbSize, DBSizeInUse: st.DbSizeInUse, Quota: int64(c.Etcd.QuotaBackendBytes), Revision: st.Header.Revision}
	for _, a := range alarms.Alarms {
		s.Alarms = append(s.Alarms, a.Alarm.String())
	}
	return s, nil
}
