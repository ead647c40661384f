package node

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/config"
	"github.com/vcluster-standalone/vcluster-standalone/pkg/fsutil"
)

// DefaultRegistriesFile is where users describe registry mirrors and
// credentials; node-agent renders it into containerd's hosts directory.
const DefaultRegistriesFile = "/etc/node-agent/registries.yaml"

// Registries is the registries.yaml file.
type Registries struct {
	// Mirrors maps a registry host (docker.io, registry.k8s.io, ...) to the
	// endpoints tried in order before the registry itself.
	Mirrors map[string]Mirror `json:"mirrors,omitempty"`
	// Configs maps a registry or mirror host to its credentials and TLS.
	Configs map[string]RegistryConfig `json:"configs,omitempty"`
}

// Mirror lists the endpoints (https://host[:port]) serving a registry.
type Mirror struct {
	Endpoints []string `json:"endpoints"`
}

// RegistryConfig holds one host's credentials and TLS settings.
type RegistryConfig struct {
	Username           string `json:"username,omitempty"`
	Password           string `json:"password,omitempty"`
	CAFile             string `json:"caFile,omitempty"`
	CertFile           string `json:"certFile,omitempty"`
	KeyFile            string `json:"keyFile,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// registryHostsDir is containerd's registry config_path for this node.
func registryHostsDir(n *config.Node) string { return filepath.Join(n.DataDir, "registry.d") }

// LoadRegistries reads registries.yaml strictly; a missing file means none.
func LoadRegistries(path string) (*Registries, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Registries{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	r := &Registries{}
	if err := yaml.UnmarshalStrict(data, r); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.ReplaceAll(err.Error(), "error unmarshaling JSON: while decoding JSON: ", ""))
	}
	for host, m := range r.Mirrors {
		if len(m.Endpoints) == 0 {
			return nil, fmt.Errorf("%s: mirrors.%s.endpoints: empty; list at least one https://host[:port]", path, host)
		}
		for _, e := range m.Endpoints {
			if u, err := url.Parse(e); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("%s: mirrors.%s.endpoints: invalid value %q: must be an http(s)://host[:port] URL", path, host, e)
			}
		}
	}
	for host, c := range r.Configs {
		if (c.CertFile == "") != (c.KeyFile == "") {
			return nil, fmt.Errorf("%s: configs.%s: certFile and keyFile go together", path, host)
		}
	}
	return r, nil
}

// PeerMirrors are the registry mirrors of the cluster's other nodes: tried for
// every registry after the mirrors of registries.yaml and before the registry
// itself, with the node's own client certificate.
type PeerMirrors struct {
	Endpoints []string // https://ip:port, in the order they are tried
	CAFile    string   // verifies the peers' serving certificates
	CertFile  string   // the node's client certificate and key in one file
}

// peerDialTimeout bounds a connection attempt to a peer that is gone, so a
// pull moves on to the next endpoint instead of hanging.
const peerDialTimeout = "3s"

// defaultHostsDir is containerd's hosts directory for registries that have
// none of their own.
const defaultHostsDir = "_default"

// WriteHostsDir renders r and the peers as containerd hosts.toml files under
// dir. Files are replaced one by one (a pull running meanwhile reads either
// the old or the new file) and directories nothing asks for any more are
// removed.
func (r *Registries) WriteHostsDir(dir string, peers PeerMirrors) error {
	want := map[string]string{}
	for h := range r.Mirrors {
		want[h] = r.hostsTOML(h, peers)
	}
	for h := range r.Configs {
		want[h] = r.hostsTOML(h, peers)
	}
	if len(peers.Endpoints) > 0 {
		want[defaultHostsDir] = r.hostsTOML("", peers)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}
	for host, body := range want {
		if err := os.MkdirAll(filepath.Join(dir, host), 0o700); err != nil {
			return err
		}
		if err := fsutil.WriteIfChanged(filepath.Join(dir, host, "hosts.toml"), []byte(body), 0o600); err != nil {
			return fmt.Errorf("failed to write registry config for %s: %w", host, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", dir, err)
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("failed to remove stale registry config %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

// hostsTOML is one registry's hosts.toml: its mirrors in order, each with
// the settings configured for the mirror's host, then the peers, then the
// registry itself. host "" is the default for every other registry: no
// server line, so containerd falls back to the registry named in the image.
func (r *Registries) hostsTOML(host string, peers PeerMirrors) string {
	var b strings.Builder
	b.WriteString("# Written by node-agent from " + DefaultRegistriesFile + " and the cluster's nodes; edits are overwritten.\n")
	if host != "" {
		server := "https://" + host
		if host == "docker.io" {
			server = "https://registry-1.docker.io"
		}
		b.WriteString("server = " + strconv.Quote(server) + "\n")
		writeHostSettings(&b, "", r.Configs[host])
	}
	for _, e := range r.Mirrors[host].Endpoints {
		section := "host." + strconv.Quote(e)
		b.WriteString("\n[" + section + "]\n  capabilities = [\"pull\", \"resolve\"]\n")
		u, _ := url.Parse(e)
		writeHostSettings(&b, section, r.Configs[u.Host])
	}
	peerTLS := RegistryConfig{CAFile: peers.CAFile, CertFile: peers.CertFile, KeyFile: peers.CertFile}
	for _, e := range peers.Endpoints {
		section := "host." + strconv.Quote(e)
		b.WriteString("\n[" + section + "]\n  capabilities = [\"pull\", \"resolve\"]\n  dial_timeout = " + strconv.Quote(peerDialTimeout) + "\n")
		writeHostSettings(&b, section, peerTLS)
	}
	return b.String()
}

func writeHostSettings(b *strings.Builder, section string, c RegistryConfig) {
	indent := ""
	if section != "" {
		indent = "  "
	}
	if c.CAFile != "" {
		fmt.Fprintf(b, "%sca = %s\n", indent, strconv.Quote(c.CAFile))
	}
	if c.CertFile != "" {
		fmt.Fprintf(b, "%sclient = [[%s, %s]]\n", indent, strconv.Quote(c.CertFile), strconv.Quote(c.KeyFile))
	}
	if c.InsecureSkipVerify {
		fmt.Fprintf(b, "%sskip_verify = true\n", indent)
	}
	if c.Username != "" || c.Password != "" {
		header := "header"
		if section != "" {
			header = section + ".header"
		}
		auth := base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))
		fmt.Fprintf(b, "%s[%s]\n%s  authorization = %s\n", indent, header, indent, strconv.Quote("Basic "+auth))
	}
}

// registryHosts lists configured registries, for status output.
func (r *Registries) registryHosts() []string {
	var hosts []string
	for h := range r.Mirrors {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	return hosts
}
