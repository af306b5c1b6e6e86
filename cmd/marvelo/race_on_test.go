//go:build race

package main

// raceEnabled: the tests that only build and run other processes skip under the race detector,
// which instruments this process only.
const raceEnabled = true
