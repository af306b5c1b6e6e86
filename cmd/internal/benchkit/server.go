package benchkit

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is an embedded NATS server with JetStream (memory streams only), on 127.0.0.1 and a
// random port: where the baseline relays run when there is no other server to measure.
type Server struct {
	ns  *server.Server
	dir string
}

// StartServer starts an embedded server and waits until it accepts connections.
func StartServer() (*Server, error) {
	// JetStream wants a directory for its metadata even when every stream is in memory.
	dir, err := os.MkdirTemp("", "marvelo-bench-nats-*")
	if err != nil {
		return nil, fmt.Errorf("benchkit: nats server: %w", err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "marvelo-bench", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true, MaxPayload: 8 << 20,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("benchkit: nats server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("benchkit: nats server did not become ready")
	}
	return &Server{ns: ns, dir: dir}, nil
}

// URL is the server's client URL.
func (s *Server) URL() string { return s.ns.ClientURL() }

// Shutdown stops the server and removes its directory.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	os.RemoveAll(s.dir)
}
