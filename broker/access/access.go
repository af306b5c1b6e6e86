// Package access is the core of the broker's access control (DESIGN.md §10, §12): who the
// enrolled identities are and how each proves it, what each may publish and subscribe to, which
// registration claims a worker identity may make, and the table of the jobs' subjects granted to
// the workers they are placed on, with the bucket writes each change makes and the generation
// counter that tells the server's configuration reloads apart.
//
// The interface:
//   - Identity (Validate, Proves, HashSecret), the roles, ConnNameFits, SenderIs and CheckClaims:
//     the identities and the checks of what a worker says it is;
//   - WorkerPermissions and ReaderPermissions: the permission sets, built from
//     pipeline/protocol's subjects;
//   - Table: the identities, grants, groups and violations, changed by its methods, each change
//     counted in Gen and its bucket writes queued for Take; Write makes them in the bucket;
//   - ParseViolation reads the server's log line of a refused publish or subscription;
//   - Applied: the bucket revision a broker of a cluster has applied, to wait on.
//
// What a broker does with them — the enrolment API, the server's reloads and accounts, the
// clusters' sharing of the bucket — is package broker's (broker/access.go, access_cluster.go,
// isolation.go). This package imports nats-server (for its permission type), nats.go/jetstream
// and pipeline/protocol, never the broker.
package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Roles of an identity.
const (
	RoleWorker   = "worker"
	RoleOperator = "operator"
	RoleReader   = "reader"
)

// Bucket is the KV bucket of the identities, and beside them the grants and the workers' groups.
const Bucket = "marvelo_identities"

// Identity is one enrolled user of the broker.
type Identity struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Hash string `json:"hash"` // hex SHA-256 of the identity's secret
	// Groups, when set at enrolment, are the only groups a worker identity may register with.
	Groups []string `json:"groups,omitempty"`
}

// Validate checks an identity to be enrolled: its name, its role, the form of its hash, and its
// groups (a worker's only).
func (id Identity) Validate() error {
	if err := protocol.CheckName("identity", id.Name); err != nil {
		return err
	}
	switch id.Role {
	case RoleWorker, RoleOperator, RoleReader:
	default:
		return fmt.Errorf("identity %s: unknown role %q (worker, operator or reader)", id.Name, id.Role)
	}
	if len(id.Hash) != 2*sha256.Size {
		return fmt.Errorf("identity %s: the secret's hash is not a hex SHA-256", id.Name)
	}
	if len(id.Groups) > 0 && id.Role != RoleWorker {
		return fmt.Errorf("identity %s: only a worker is enrolled with groups", id.Name)
	}
	for _, g := range id.Groups {
		if err := protocol.CheckName("group", g); err != nil {
			return fmt.Errorf("identity %s: %w", id.Name, err)
		}
	}
	return nil
}

// HashSecret is the hash of a secret as an Identity keeps it: hex SHA-256.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Proves reports, in constant time, whether a secret whose HashSecret is hash is the identity's.
func (id Identity) Proves(hash string) bool {
	return subtle.ConstantTimeCompare([]byte(hash), []byte(id.Hash)) == 1
}

// ConnNameFits reports whether an identity's connection may carry a client name: a worker
// connection's name (protocol.WorkerConnName) only its own, for the broker maps the server's
// event of that connection's close to the worker it names.
func ConnNameFits(identity, connName string) bool {
	w, ok := protocol.WorkerOfConnName(connName)
	return !ok || w == identity
}

// SenderIs checks that a control message published on protocol.From(subject, worker) speaks for
// the worker whose subject it came on: the server lets each worker identity publish only on its own.
func SenderIs(subject, worker string) error {
	if from := protocol.Sender(subject); from != worker {
		return fmt.Errorf("%s: sent by worker %q on behalf of %q: refused", subject, from, worker)
	}
	return nil
}

// CheckClaims refuses a registration that claims what the identity it came from may not: a worker
// identity never registers as the head node's worker (local) or as a worker of every group (any),
// and only with groups its enrolment names, when it names any. Any other identity (id is the
// zero Identity when the worker has none: a shared token) is not checked here.
func CheckClaims(id Identity, info protocol.WorkerInfo) error {
	if id.Role != RoleWorker {
		return nil
	}
	switch {
	case info.Local:
		return fmt.Errorf("register %s: worker identity %s may not register as the head node's worker (local): refused", info.Name, id.Name)
	case info.Any:
		return fmt.Errorf("register %s: worker identity %s may not register as a worker of every group (any): refused", info.Name, id.Name)
	}
	if len(id.Groups) == 0 {
		return nil
	}
	for _, g := range info.Groups {
		if !slices.Contains(id.Groups, g) {
			return fmt.Errorf("register %s: worker identity %s is enrolled for groups %s, not %s: refused",
				info.Name, id.Name, strings.Join(id.Groups, ","), g)
		}
	}
	return nil
}
