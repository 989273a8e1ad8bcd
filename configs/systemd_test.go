package configs_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lbdproj/lbd/pkg/config"
)

var units = []string{"systemd/lbd.service", "systemd/lbd-backend.service"}

// unitKeys reads a unit file's [Service] section: key → values, in order.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			keys[k] = append(keys[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// What the units promise: Type=notify (lbd speaks sd_notify), the same three capabilities
// bounding and ambient, the pin directory the only writable path and the config's default,
// restarts on failure but not on a bad config.
func TestSystemdUnits(t *testing.T) {
	for _, u := range units {
		k := unitKeys(t, u)
		one := func(key, want string) {
			t.Helper()
			if got := k[key]; len(got) != 1 || got[0] != want {
				t.Errorf("%s: %s=%q, want %q", u, key, got, want)
			}
		}
		one("Type", "notify")
		one("NotifyAccess", "main")
		one("Restart", "on-failure")
		one("RestartPreventExitStatus", "2")
		one("CapabilityBoundingSet", "CAP_BPF CAP_NET_ADMIN CAP_PERFMON")
		one("AmbientCapabilities", "CAP_BPF CAP_NET_ADMIN CAP_PERFMON")
		one("LimitMEMLOCK", "infinity")
		one("ProtectSystem", "strict")
		one("ReadWritePaths", config.DefaultPinDir)
		one("NoNewPrivileges", "yes")
		if !slices.Contains(k["ExecStartPre"], "+/bin/mkdir -p "+config.DefaultPinDir) {
			t.Errorf("%s: the pin directory is not made before the read-only view: ExecStartPre=%q", u, k["ExecStartPre"])
		}
	}
	if got := unitKeys(t, units[0])["ExecReload"]; len(got) != 1 || got[0] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("lbd.service: ExecReload=%q", got)
	}
}

// systemd-analyze verify passes on both units, with no warning. It checks that commands
// exist, so the copies verified here name an executable (this test) instead of
// /usr/local/bin/lbd, which make install provides.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("skipping: systemd-analyze is not installed (Debian: apt-get install systemd)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/local/bin/lbd ") {
			t.Fatalf("%s: ExecStart does not run /usr/local/bin/lbd", u)
		}
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/lbd", exe)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, paths...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
