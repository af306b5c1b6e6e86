package main

import "github.com/marvelo/marvelo/pipeline/builtin"

// registry holds the Go job types this marvelo binary carries: the builtin ones.
var registry = builtin.Registry()
