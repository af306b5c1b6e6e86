package broker

import (
	"crypto/subtle"
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// tokenAuth admits clients by token and gives each the permissions of its role. The operator
// token (--auth-token) may do everything: submit, stop, run the control plane. The worker token
// (--worker-token) may run jobs but not use the operator API (submit, stop, reset), nor create,
// change or delete streams, consumers or the broker's state: a compromised worker cannot take
// over the pipelines. Without a worker token, workers present the operator token.
type tokenAuth struct {
	operator, worker string
	ids              *access // enrolled nkey identities (access.go)
}

// workerDenied are the subjects a worker may not publish on. Ephemeral consumers stay allowed:
// fetching dependencies from the object store makes one.
var workerDenied = slices.Concat(
	[]string{protocol.APISubjects},
	protocol.JSChangingAPI(),
	[]string{
		protocol.KVSubjects(kvPipelines), protocol.KVSubjects(kvWorkers),
		protocol.ObjectSubjects(protocol.DepsBucket),
		subjSys, // the server's connection events (disconnect.go)
	},
)

// Check implements server.Authentication.
func (a tokenAuth) Check(c server.ClientAuthentication) bool {
	if name, secret, ok := protocol.ParseIdentityToken(c.GetOpts().Token); ok {
		return a.ids != nil && a.ids.checkIdentity(c, name, secret)
	}
	token := []byte(c.GetOpts().Token)
	switch {
	case subtle.ConstantTimeCompare(token, []byte(a.operator)) == 1:
		c.RegisterUser(&server.User{}) // no Username: see access.go
		return true
	case a.worker != "" && subtle.ConstantTimeCompare(token, []byte(a.worker)) == 1:
		// Its clients share an account of their own (isolation.go): the server answers them
		// there only, never in the global account, whatever reply subject they name.
		var acc *server.Account
		if a.ids != nil {
			acc = a.ids.iso.account(sharedWorkerAccount)
		}
		if acc == nil {
			return false // not made yet: the broker is starting
		}
		c.RegisterUser(&server.User{Account: acc, Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: workerDenied},
			// The server's connection events name every client and its address (disconnect.go).
			Subscribe: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{subjSys}},
		}})
		return true
	case a.ids != nil && a.ids.reloading.Load() && noCredentials(c.GetOpts()):
		// A configuration reload authenticates every client the server holds, those that have
		// not sent their CONNECT yet too (with no credentials): refusing them would close
		// connections just being opened. They get no permissions at all; their CONNECT is
		// authenticated as usual.
		c.RegisterUser(&server.User{Permissions: denyAll})
		return true
	}
	return false
}

var denyAll = &server.Permissions{
	Publish:   &server.SubjectPermission{Deny: []string{">"}},
	Subscribe: &server.SubjectPermission{Deny: []string{">"}},
}

func noCredentials(o *server.ClientOpts) bool {
	return o.Token == "" && o.Username == "" && o.Password == "" && o.Nkey == "" && o.JWT == ""
}
