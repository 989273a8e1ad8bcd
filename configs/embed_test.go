package configs_test

import (
	"slices"
	"testing"

	"github.com/lbdproj/lbd/configs"
	"github.com/lbdproj/lbd/pkg/config"
)

func TestDemo(t *testing.T) {
	c, err := config.Parse(configs.DemoName, configs.Demo)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(c.VIPs, func(v config.VIP) bool { return v.Name == "web" })
	if i < 0 {
		t.Fatalf("demo config has no VIP web: %+v", c)
	}
	web := c.VIPs[i]
	if c.Node.Interface != "eth0" || len(web.Backends) != 3 || web.Address.String() != "198.18.0.10" ||
		web.Port != 80 || web.Proto != 6 || web.Health.Type != "tcp" {
		t.Errorf("demo config: %+v", c)
	}
	if len(c.Warnings) > 0 {
		t.Errorf("warnings: %q", c.Warnings)
	}
}
