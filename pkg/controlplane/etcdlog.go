package controlplane

import (
	"fmt"
	"io"
	"sync/atomic"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdLogger is etcd's own logger (warnings and up, to stderr) with two
// changes: when etcd gives up (a "fatal" entry, after which it exits the
// process) one line of ours follows, on a full disk the same line start
// prints; and once closing is set, etcd's complaints about its own listeners
// being closed (error lines with stack traces at every stop) are dropped.
func etcdLogger(dataDir string, out io.Writer, closing *atomic.Bool) (*zap.Logger, error) {
	zc := logutil.DefaultZapLoggerConfig
	zc.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	return zc.Build(
		zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietClose{Core: c, closing: closing} }),
		zap.Hooks(func(e zapcore.Entry) error {
			if e.Level < zapcore.DPanicLevel {
				return nil
			}
			if err := checkFreeSpace(dataDir); err != nil {
				fmt.Fprintf(out, "error: etcd stopped the control plane (%s): %v\n", e.Message, err)
			} else {
				fmt.Fprintf(out, "error: etcd stopped the control plane: %s (see the lines above)\n", e.Message)
			}
			return nil
		}))
}

// closeNoise are etcd's messages about its listeners closing under it.
var closeNoise = map[string]bool{
	"setting up serving from embedded etcd failed.": true,
	"stopping secure grpc server due to error":      true,
	"stopped secure grpc server due to error":       true,
}

type quietClose struct {
	zapcore.Core
	closing *atomic.Bool
}

func (q quietClose) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if q.closing.Load() && closeNoise[e.Message] {
		return ce
	}
	return q.Core.Check(e, ce)
}

func (q quietClose) With(fields []zapcore.Field) zapcore.Core {
	return quietClose{Core: q.Core.With(fields), closing: q.closing}
}
