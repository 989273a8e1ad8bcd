// Command lbd is an XDP/TC layer-4 load balancer: `lbd run` on LB nodes, `lbd backend`
// on backends. See `lbd help`.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), newEnv(), os.Args[1:]))
}
