// Command marvelo-worker runs the jobs a marvelo broker assigns to this machine. It carries the
// builtin Go job types; to add your own, write a main of your own like this one (see command.Main).
package main

import (
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/worker/command"
)

func main() { command.Main(builtin.Registry()) }
