// Package configs holds lbd's shipped configuration files.
package configs

import _ "embed"

// Demo is demo.yaml, the config make demo runs the LB node with.
//
//go:embed demo.yaml
var Demo []byte

// DemoName is the name to parse Demo under, so errors and logs point at the file in the repo.
const DemoName = "configs/demo.yaml"
