// Package csi holds what both halves of the distribution's CSI driver share:
// its name, its topology key and the Identity service.
package csi

import (
	"context"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	// DriverName is the CSI driver name in StorageClasses, PVs and the CSIDriver object.
	DriverName = "csi.vcluster-standalone.io"
	// TopologyKey labels a node's topology segment; its value is the node name.
	TopologyKey = "topology.csi.vcluster-standalone.io/node"
	// Finalizer keeps a Volume or Snapshot object until its node removed the data.
	Finalizer = "csi.vcluster-standalone.io/node"
	// PoolRoot is where a node's pool is mounted; it holds volumes/<id> and snapshots/<id>.
	PoolRoot = "/var/lib/node-agent/csi"
)

// IdentityServer answers the CSI Identity service for either half. Ready,
// when set, reports whether the half can serve (probe); nil means always.
type IdentityServer struct {
	csipb.UnimplementedIdentityServer
	Version    string
	Controller bool
	Ready      func() bool
}

func (s *IdentityServer) GetPluginInfo(context.Context, *csipb.GetPluginInfoRequest) (*csipb.GetPluginInfoResponse, error) {
	version := s.Version
	if version == "" {
		version = "dev"
	}
	return &csipb.GetPluginInfoResponse{Name: DriverName, VendorVersion: version}, nil
}

func (s *IdentityServer) GetPluginCapabilities(context.Context, *csipb.GetPluginCapabilitiesRequest) (*csipb.GetPluginCapabilitiesResponse, error) {
	// Every volume lives on one node, so both halves report topology.
	caps := []*csipb.PluginCapability{
		serviceCapability(csipb.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
		{Type: &csipb.PluginCapability_VolumeExpansion_{
			VolumeExpansion: &csipb.PluginCapability_VolumeExpansion{Type: csipb.PluginCapability_VolumeExpansion_ONLINE}}},
	}
	if s.Controller {
		caps = append(caps, serviceCapability(csipb.PluginCapability_Service_CONTROLLER_SERVICE))
	}
	return &csipb.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

func (s *IdentityServer) Probe(context.Context, *csipb.ProbeRequest) (*csipb.ProbeResponse, error) {
	ready := s.Ready == nil || s.Ready()
	return &csipb.ProbeResponse{Ready: wrapperspb.Bool(ready)}, nil
}

func serviceCapability(t csipb.PluginCapability_Service_Type) *csipb.PluginCapability {
	return &csipb.PluginCapability{Type: &csipb.PluginCapability_Service_{Service: &csipb.PluginCapability_Service{Type: t}}}
}
