package main

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// LBMetrics scrapes LB node i's /metrics from inside its namespace, as a Gatherer for
// prometheus/testutil.
func (s *sandbox) LBMetrics(ctx context.Context, i int) (prometheus.Gatherer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.cfg.Node.APIAddr.String()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.fleet.LBs[i].HTTPClient(3 * time.Second).Do(req)
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
