package main

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/lbdproj/lbd/internal/testbed"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// LBMetrics scrapes LB node i's /metrics from inside its namespace, as a Gatherer for
// prometheus/testutil.
func (s *sandbox) LBMetrics(ctx context.Context, i int) (prometheus.Gatherer, error) {
	return scrape(ctx, s.fleet.LBs[i], s.cfg.Node.APIAddr.String())
}

// BackendMetrics scrapes lbd backend's /metrics on backend i.
func (s *sandbox) BackendMetrics(ctx context.Context, i int) (prometheus.Gatherer, error) {
	h := s.fleet.Backends[i]
	return scrape(ctx, h, s.backendAPI(h).String())
}

// scrape reads http://addr/metrics from h's namespace.
func scrape(ctx context.Context, h *testbed.Host, addr string) (prometheus.Gatherer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.HTTPClient(3 * time.Second).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		out := make([]*dto.MetricFamily, 0, len(fams))
		for _, name := range slices.Sorted(maps.Keys(fams)) {
			out = append(out, fams[name])
		}
		return out, nil
	}), nil
}
