// Package promreg registers a component's Prometheus collectors as one: all of them or,
// on an error, none.
package promreg

import "github.com/prometheus/client_golang/prometheus"

// Register registers every collector in cs with r, or none: on an error it unregisters
// those it registered and returns the error.
func Register(r prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			Unregister(r, cs[:i]...)
			return err
		}
	}
	return nil
}

// Unregister removes every collector in cs from r.
func Unregister(r prometheus.Registerer, cs ...prometheus.Collector) {
	for _, c := range cs {
		r.Unregister(c)
	}
}
