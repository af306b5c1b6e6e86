// Package freeport finds TCP ports free on 127.0.0.1 for servers whose addresses must be known
// before they start: a NATS cluster's routes name every member, and a test that starts a broker
// as a separate process must tell it where to listen.
//
// A port found free with a listen on port 0 comes from the kernel's ephemeral range, which the
// kernel also hands to every later listen on port 0 and to the local end of every outgoing
// connection. Between the moment it is found and the moment its server binds it, any of those may
// take it: a broker's own client listener did, once, and the cluster never formed. The ports this
// package returns lie below the ephemeral range, where the kernel hands out nothing by itself; only
// another program that names its port can take one first.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port Loopback returns: above the well-known and most registered service
// ports.
const lowest = 10000

// Loopback returns n distinct ports free on 127.0.0.1 as it returns. Each is found free while the
// ones before it are still held, so no two are alike. They lie outside the kernel's ephemeral range
// where the system lets it know that range; elsewhere they are the kernel's own picks.
func Loopback(n int) ([]int, error) {
	lo, hi, ok := quietRange()
	if !ok {
		return kernelPicks(n)
	}
	return within(n, lo, hi)
}

// within returns n distinct ports free on 127.0.0.1 between lo and hi, searched from a random
// point of the span so that two programs searching at once seldom meet.
func within(n, lo, hi int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	span := hi - lo + 1
	start := rand.IntN(span)
	for i := 0; i < span && len(held) < n; i++ {
		p := lo + (start+i)%span
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // in use: the next one
		}
		held = append(held, l)
	}
	if len(held) < n {
		return nil, fmt.Errorf("freeport: %d free ports wanted on 127.0.0.1 between %d and %d, found %d", n, lo, hi, len(held))
	}
	ports := make([]int, n)
	for i, l := range held {
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// quietRange is the span of ports below the kernel's ephemeral range, from lowest up; ok is false
// where the range is unknown (not Linux) or leaves fewer than 1,000 ports below it.
func quietRange() (lo, hi int, ok bool) {
	first, err := ephemeralStart()
	if err != nil || first-1-lowest < 1000 {
		return 0, 0, false
	}
	return lowest, first - 1, true
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0, errors.New("freeport: ip_local_port_range has no two fields")
	}
	return strconv.Atoi(fields[0])
}

// kernelPicks returns n distinct ports the kernel picks, each found while the ones before it are
// still held.
func kernelPicks(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
