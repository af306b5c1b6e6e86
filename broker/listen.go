package broker

import (
	"fmt"
	"net"
	"strings"
)

// checkListen fails at once when the address cannot be listened on (a port in use, an address
// not of this host): NATS would only log it and leave Start waiting for a server that never
// becomes ready. A random port ("-1" or "0") is not checked. The check releases the port again,
// so a race with another process remains possible; it is then reported by the ready timeout.
func checkListen(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "-1" || port == "0" {
		return nil // the server's own options report malformed addresses
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "address already in use") {
			return fmt.Errorf("broker: %s %s: address already in use (another broker or program listens there; pick another port)", flag, addr)
		}
		return fmt.Errorf("broker: %s %s: %w", flag, addr, err)
	}
	return l.Close()
}
