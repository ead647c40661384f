package node

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/csi"
)

// registrar answers the kubelet's plugin watcher, which finds its socket in
// <kubelet root>/plugins_registry and learns from it where the CSI service is.
type registrar struct {
	registerapi.UnimplementedRegistrationServer
	endpoint   string
	log        io.Writer
	registered atomic.Bool
}

func (r *registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              csi.DriverName,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registrar) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.registered.Store(st.PluginRegistered)
	if st.PluginRegistered {
		fmt.Fprintf(r.log, "csi: the kubelet registered %s\n", csi.DriverName)
	} else {
		fmt.Fprintf(r.log, "csi: the kubelet refused %s: %s\n", csi.DriverName, st.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
