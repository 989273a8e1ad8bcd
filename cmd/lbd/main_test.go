package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/lbdproj/lbd/internal/testbed"
)

// testPrefix names this package's namespaces, apart from other packages' fleets.
const testPrefix = "lbdcmd"

// The test binary doubles as lbd: the sandbox starts it in namespaces with LBD_TEST_MAIN=1,
// so end-to-end tests run the very code under test without a separate build.
func TestMain(m *testing.M) {
	// the fuzzing engine's workers are this binary too, and inherit the variable
	if os.Getenv("LBD_TEST_MAIN") == "1" && !slices.ContainsFunc(os.Args, func(a string) bool {
		return strings.HasPrefix(a, "-test.fuzzworker")
	}) {
		os.Exit(run(context.Background(), newEnv(), os.Args[1:]))
	}
	os.Setenv("LBD_TEST_MAIN", "1") // inherited by the lbd processes the tests start
	if os.Geteuid() == 0 {
		testbed.Cleanup(testPrefix)
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		if leaks := testbed.Leaks(testPrefix); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "leaked namespaces: %v\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}
