package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryLinksNoTestCode: the shipped lbd links no test code. The demo's fleet comes from
// internal/testbed; the testing.TB helpers live apart in internal/testbed/testbedtest.
func TestBinaryLinksNoTestCode(t *testing.T) {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list lbd's dependencies: %v", err)
	}
	out, err := exec.Command(gocmd, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if dep == "testing" || strings.HasPrefix(dep, "testing/") || strings.HasSuffix(dep, "/testbedtest") {
			t.Errorf("cmd/lbd depends on %s: test code in the binary", dep)
		}
	}
	if !strings.Contains(string(out), "github.com/lbdproj/lbd/internal/testbed\n") {
		t.Errorf("go list -deps does not list internal/testbed (the demo's fleet): is the list right?\n%s", out)
	}
}
