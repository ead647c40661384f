package joinserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/klog/v2"

	"github.com/vcluster-standalone/vcluster-standalone/pkg/pki"
)

// Paths the join endpoint serves; everything else is 404.
const (
	InstallScriptPath = "/install.sh"
	NodeAgentPath     = "/bin/node-agent"
)

// NodeAgentBesideExecutable is where the join endpoint finds the node-agent
// binary it serves: the file node-agent next to the running executable.
func NodeAgentBesideExecutable() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), "node-agent")
}

// NewEndpointHandler serves exactly GET/HEAD of InstallScriptPath and
// NodeAgentPath. Paths are compared as received, never cleaned or joined to
// a directory, so no request can reach another file. A 404 says nothing
// more: which paths exist and where node-agent lives on disk are not for
// anyone who can reach the port.
func NewEndpointHandler(installScript []byte, nodeAgent string, modTime time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var serve func()
		switch {
		case r.URL.RawPath != "" || r.URL.RawQuery != "":
			// encoded characters or a query: not one of our two URLs
		case r.URL.Path == InstallScriptPath:
			serve = func() {
				w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
				http.ServeContent(w, r, "install.sh", modTime, bytes.NewReader(installScript))
			}
		case r.URL.Path == NodeAgentPath:
			serve = func() { serveNodeAgent(w, r, nodeAgent) }
		}
		if serve == nil {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		serve()
	})
}

func serveNodeAgent(w http.ResponseWriter, r *http.Request, path string) {
	f, err := os.Open(path)
	if err != nil {
		klog.InfoS("join endpoint: node-agent requested but not installed beside vcluster-standalone", "path", path, "client", r.RemoteAddr)
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		klog.InfoS("join endpoint: node-agent requested but not a regular file", "path", path, "client", r.RemoteAddr)
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "node-agent", st.ModTime(), f)
}

// Endpoint is the join endpoint component: HTTPS with the join-endpoint
// certificate, whose public key `token create` prints as the curl pin.
type Endpoint struct {
	Addr          string // host:port
	CertFile      string
	KeyFile       string
	InstallScript []byte
	NodeAgent     string // path of the node-agent binary to serve

	server *http.Server
	failed chan error
	stop   context.CancelFunc // ends the certificate reloaders
}

func (e *Endpoint) Name() string { return "join endpoint" }

func (e *Endpoint) Init(context.Context) error {
	if len(e.InstallScript) == 0 {
		return errors.New("no install.sh embedded")
	}
	return nil
}

func (e *Endpoint) Start(context.Context) error {
	// Served from the files, reloaded when they change (a renewal replaces
	// the .crt; the key, hence the printed pin, stays): the reloaders the
	// API server uses for its own serving certificate.
	content, err := dynamiccertificates.NewDynamicServingContentFromFiles("join-endpoint", e.CertFile, e.KeyFile)
	if err != nil {
		return fmt.Errorf("failed to load the join endpoint certificate: %w", err)
	}
	l, err := net.Listen("tcp", e.Addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", e.Addr, err)
	}
	tlsConfig := pki.ServerTLSConfig()
	certs := dynamiccertificates.NewDynamicServingCertificateController(tlsConfig, nil, content, nil, nil)
	content.AddListener(certs)
	if err := certs.RunOnce(); err != nil {
		l.Close()
		return fmt.Errorf("failed to load the join endpoint certificate: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	go content.Run(ctx, 1)
	go certs.Run(1, ctx.Done())
	tlsConfig = &tls.Config{GetConfigForClient: certs.GetConfigForClient}
	if _, err := os.Stat(e.NodeAgent); err != nil {
		klog.InfoS("node-agent binary not found; the join endpoint answers 404 for it until it is installed", "path", e.NodeAgent)
	}
	e.failed = make(chan error, 1)
	e.server = &http.Server{
		Handler:           NewEndpointHandler(e.InstallScript, e.NodeAgent, time.Now()),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	go func() {
		if err := e.server.ServeTLS(l, "", ""); !errors.Is(err, http.ErrServerClosed) {
			e.failed <- err
		}
	}()
	return nil
}

// Failed yields an error if the server stops on its own.
func (e *Endpoint) Failed() <-chan error { return e.failed }

func (e *Endpoint) Stop() error {
	if e.server == nil {
		return nil
	}
	defer e.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	server := e.server
	e.server = nil
	err := server.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return server.Close() // cut off downloads still running
	}
	return err
}
