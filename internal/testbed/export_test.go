package testbed

// For the tests in package testbed_test, which use testbedtest (that imports this package,
// so this package's own tests cannot).
const TestPrefix = testPrefix

var (
	RouterSysctls = routerSysctls
	IPNet         = ipNet
	IsExitError   = isExitError
)

const XDPPass = xdpPass
