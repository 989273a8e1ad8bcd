// Package configs holds lbd's shipped configuration files.
package configs

import _ "embed"

// Demo is demo.yaml, the config make demo runs the LB node with.
//
//go:embed demo.yaml
var Demo []byte

// DemoName is the name to parse Demo under, so errors and logs point at the file in the repo.
const DemoName = "configs/demo.yaml"

// BIRD is bird.conf, the example BIRD 2 config of the router in front of the LB nodes; the
// test bed runs it with the LB node sessions rewritten for its fleet.
//
//go:embed bird.conf
var BIRD []byte
