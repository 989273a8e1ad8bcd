package testbed

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runKilledChild()
		return
	}
	if os.Geteuid() == 0 {
		Cleanup(testPrefix)
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		if leaks := Leaks(testPrefix); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "testbed: leaked namespaces: %v\n", leaks)
			code = 1
		}
		if leaks := leakedDirs(testPrefix); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "testbed: leaked temporary directories: %v\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// testPrefix keeps this package's fleets apart from other packages' in
// Cleanup and Leaks.
const testPrefix = "lbdtb"

func leakedDirs(prefix string) []string {
	var dirs []string
	for id, ds := range tempDirs(prefix) {
		if isLiveHere(prefix, id) {
			dirs = append(dirs, ds...)
		}
	}
	return dirs
}

// skipIfNotRoot is testbedtest.SkipIfNotRoot for the tests inside this package, which
// cannot import testbedtest (it imports this package).
func skipIfNotRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(ErrNotRoot)
	}
}
