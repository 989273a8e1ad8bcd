package configs_test

import (
	"os"
	"os/exec"
	"path/filepath"
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

// The BIRD example is a config BIRD accepts (bird -p parses it and exits).
func TestBIRDExampleParses(t *testing.T) {
	bird, err := exec.LookPath("bird")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/bird"); serr != nil {
			t.Skip("bird is not installed (Debian package bird2; scripts/deps.sh installs it)")
		}
		bird = "/usr/sbin/bird"
	}
	path := filepath.Join(t.TempDir(), "bird.conf")
	if err := os.WriteFile(path, configs.BIRD, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bird, "-p", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("bird -p: %v\n%s", err, out)
	}
	// and a broken one is refused, so the check means something
	if err := os.WriteFile(path, append(slices.Clone(configs.BIRD), "protocol nonsense {\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bird, "-p", "-c", path).CombinedOutput(); err == nil {
		t.Fatalf("bird -p accepted a broken config:\n%s", out)
	}
}
