package broker

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

func TestReplicasDefaultToThreeWithTwoOtherBrokers(t *testing.T) {
	routes := []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}
	for _, c := range []struct {
		opts Options
		want int
	}{
		{Options{}, 1},
		{Options{Cluster: "127.0.0.1:6222", Routes: routes[1:2]}, 1},
		{Options{Cluster: "127.0.0.1:6222", Routes: routes[1:]}, 3},
		{Options{Cluster: "127.0.0.1:6222", Routes: routes}, 3},     // a route to itself is not another
		{Options{Cluster: "127.0.0.1:6222", Routes: routes[:2]}, 1}, // itself and one other
		{Options{Cluster: "127.0.0.1:6222", Routes: routes, Replicas: 1}, 1},
	} {
		b := &Broker{opts: c.opts}
		if got := b.replicas(); got != c.want {
			t.Errorf("replicas(%+v) = %d, want %d", c.opts, got, c.want)
		}
	}
}

func TestClusterOptionsRefuseWhatCannotWork(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Routes: []string{"nats-route://h2:6222"}}, "--routes needs --cluster"},
		{Options{Cluster: "127.0.0.1:6222"}, "--server-name"},
		{Options{Cluster: "0.0.0.0:6222", ServerName: "h1"}, "without --auth-token"},
		{Options{Cluster: "127.0.0.1:6222", ServerName: "h1", Routes: []string{"::"}}, "not a URL"},
	} {
		b := &Broker{opts: c.opts}
		err := b.clusterOptions(&server.Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("clusterOptions(%+v) = %v, want an error naming %q", c.opts, err, c.want)
		}
	}
}

func TestClusterRoutesAuthenticateWithTheOperatorToken(t *testing.T) {
	b := &Broker{opts: Options{Cluster: "127.0.0.1:6222", ServerName: "h1", AuthToken: "s3cret", Routes: []string{"nats-route://h2:6222"}}}
	o := &server.Options{}
	if err := b.clusterOptions(o); err != nil {
		t.Fatal(err)
	}
	if o.Cluster.Password != "s3cret" || len(o.Routes) != 1 || o.Routes[0].User == nil {
		t.Fatalf("cluster %+v, routes %v: the routes do not authenticate", o.Cluster, o.Routes)
	}
	if p, _ := o.Routes[0].User.Password(); p != "s3cret" {
		t.Errorf("route password %q", p)
	}
}

// TestAControlPlaneIsFencedByItsTerm: a broker alone always acts; a term's control plane acts
// while its fence (the term's lease, broker/leader) lets it. The lease itself is tested in
// broker/leader (TestALeaseThatRanOutNoLongerHolds).
func TestAControlPlaneIsFencedByItsTerm(t *testing.T) {
	held := true
	opts := Options{fence: func() error {
		if !held {
			return errNotLeader
		}
		return nil
	}}
	if err := opts.fenced(); err != nil {
		t.Fatalf("a live term fences: %v", err)
	}
	held = false
	if err := opts.fenced(); err != errNotLeader {
		t.Fatalf("a term that no longer holds does not fence: %v", err)
	}
	if err := (&Options{}).fenced(); err != nil {
		t.Fatalf("a broker alone is fenced: %v", err)
	}
}

func TestReplicasAboveOneRefusedForABrokerAlone(t *testing.T) {
	_, err := Start(Options{Memory: true, Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "--replicas 3 needs a cluster") {
		t.Fatalf("Start with --replicas 3 and no cluster = %v, want a refusal naming --replicas", err)
	}
	if err := (&Options{Cluster: "127.0.0.1:6222", Replicas: 3}).checkReplicas(); err != nil {
		t.Fatalf("a cluster refuses --replicas 3: %v", err)
	}
}

// TestTheDataServerIsTheLocalBrokerElseTheFirstByName: the leader gathers the Raft leaders on the
// broker started with --local when another broker is, else on the first other broker by name.
func TestTheDataServerIsTheLocalBrokerElseTheFirstByName(t *testing.T) {
	for _, c := range []struct {
		others []ClusterMember
		want   string
	}{
		{nil, ""},
		{[]ClusterMember{{Server: "b3"}, {Server: "b2"}}, "b2"},
		{[]ClusterMember{{Server: "b2"}, {Server: "b3", Local: true}}, "b3"},
		{[]ClusterMember{{Server: "b4", Local: true}, {Server: "b2"}, {Server: "b3", Local: true}}, "b3"},
	} {
		if got := pickDataServer(c.others); got != c.want {
			t.Errorf("pickDataServer(%+v) = %q, want %q", c.others, got, c.want)
		}
	}
}
