package main

import "github.com/marvelo/marvelo/pipeline/builtin"

// registry holds the Go job types this marvelo binary carries: the builtin ones.
var registry = builtin.Registry()

// knownJobType reports whether a Go job type is carried by this binary (marvelo run, validate).
func knownJobType(name string) bool { return registry.Has(name) }
