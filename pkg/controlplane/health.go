package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"k8s.io/client-go/rest"
)

// healthProbe polls a component's health endpoint until it answers 200.
type healthProbe struct {
	client *http.Client
	url    string
}

func newHealthProbe(cfg *rest.Config, url string) (healthProbe, error) {
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return healthProbe{}, err
	}
	client.Timeout = 2 * time.Second
	return healthProbe{client: client, url: url}, nil
}

// check returns nil when the endpoint answers 200.
func (h healthProbe) check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", h.url, resp.Status)
	}
	return nil
}

// wait polls until healthy, the context ends, or the process exits.
func (h healthProbe) wait(ctx context.Context, proc *inProcess) error {
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := h.check(ctx)
		if err == nil {
			return nil
		}
		if proc != nil {
			if exitErr := proc.exitError(); exitErr != nil {
				return exitErr
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-ticker.C:
		}
	}
}
