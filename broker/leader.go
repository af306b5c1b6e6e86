package broker

// The cluster as the brokers see it, and where its Raft leaders sit (DESIGN.md §8a). Electing
// the broker whose control plane acts is package broker/leader; what a broker does with the lead
// is leadership.go. Here: while it leads, a broker keeps the Raft leaders of the streams and
// consumers on another server (keepRaftLeadersAway), and ReadCluster shows the brokers, the one
// leading and the servers holding the state (`marvelo cluster`).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/leader"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// raftCall bounds each request about a Raft group (its info, its stepdown): one lost with a
// dying server is not waited for the client's default 5 s (as the election's calls).
const raftCall = 400 * time.Millisecond

// ClusterMember is one broker of a cluster as it announces itself.
type ClusterMember struct {
	Server  string    `json:"server"`
	URL     string    `json:"url"`
	Started time.Time `json:"started"`
	Local   bool      `json:"local,omitempty"` // started with --local: runs the LOCAL worker whoever leads
}

// ClusterPeer is one NATS server holding a copy of the control plane's state.
type ClusterPeer struct {
	Server  string `json:"server"`
	Leader  bool   `json:"leader"` // leads the state stream's replication (Raft)
	Current bool   `json:"current"`
}

// ClusterView is what `marvelo cluster` shows.
type ClusterView struct {
	Leader      string          `json:"leader"` // the broker whose control plane acts
	LeaderSince time.Time       `json:"leader_since"`
	Brokers     []ClusterMember `json:"brokers"`
	Replicas    int             `json:"replicas"`
	Peers       []ClusterPeer   `json:"peers"`
}

// keepRaftLeadersAway gathers the Raft leaders of every stream and consumer (the pipes, the
// state buckets) on one server other than this broker's, the data server (dataServer), every
// second of the term. The leader's death then costs the data path no Raft election (4–9 s in
// nats-server): its copies were followers; and so does the death of any server but the data
// server, instead of every server that happened to lead a group. Only a group whose copies are
// all online and current is moved: a stepdown while a server is away (one just died) would
// only stall the group's pipes once more. The server is in this process: its details are read
// directly; the stepdowns naming the preferred server go through the JetStream API.
func (b *Broker) keepRaftLeadersAway(term context.Context, t *leader.Term) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	data := ""
	for {
		select {
		case <-term.Done():
			return
		case <-tick.C:
		}
		if d, err := b.dataServer(term, t); err == nil {
			data = d
		} else if term.Err() == nil {
			b.log.Debug("raft leaders: brokers not read; keeping the data server", "data_server", data, "error", err)
		}
		b.moveRaftLeaders(term, data)
	}
}

// dataServer is the server that leads the Raft groups while this broker leads the control
// plane: the broker started with --local if another is (its death costs the LOCAL jobs' move
// anyway), else the first by name of the other live brokers; "" when there is none.
func (b *Broker) dataServer(ctx context.Context, t *leader.Term) (string, error) {
	announced, err := t.Members(ctx)
	if err != nil {
		return "", err
	}
	var members []ClusterMember
	for name, rec := range announced {
		if name == b.serverName() {
			continue
		}
		var m ClusterMember
		if json.Unmarshal(rec, &m) == nil {
			members = append(members, m)
		}
	}
	return pickDataServer(members), nil
}

// pickDataServer chooses the data server among the other brokers (see dataServer).
func pickDataServer(others []ClusterMember) string {
	best := ""
	bestLocal := false
	for _, m := range others {
		if best == "" || (m.Local && !bestLocal) || (m.Local == bestLocal && m.Server < best) {
			best, bestLocal = m.Server, m.Local
		}
	}
	return best
}

// moveRaftLeaders has every group led elsewhere than on the data server hand its lead to it;
// with no data server, only the groups this server leads step down, to any other copy. This
// server's details name every group's leader, but only a group's leader knows whether its
// copies are current: a group to move is asked for its info (answered by its leader) first.
func (b *Broker) moveRaftLeaders(term context.Context, data string) {
	// Consumer: true, or the details list no consumers and their Raft leaders stay here.
	jsz, err := b.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil {
		b.log.Debug("jetstream details", "error", err)
		return
	}
	away := func(ci *server.ClusterInfo) bool {
		return ci != nil && ci.Leader != "" && ci.Leader != data && len(ci.Replicas) > 0 &&
			(data != "" || ci.Leader == b.serverName())
	}
	n := 0
	for _, acc := range jsz.AccountDetails {
		for _, st := range acc.Streams {
			if term.Err() != nil {
				return
			}
			if away(st.Cluster) && b.movable(term, protocol.JSStreamInfo(st.Name), &server.JSApiStreamInfoResponse{}, data) {
				n++
				b.stepDown(term, protocol.JSStreamLeaderStepDown(st.Name), data, "stream", st.Name)
			}
			for _, ci := range st.Consumer {
				if ci != nil && away(ci.Cluster) && b.movable(term, protocol.JSConsumerInfo(st.Name, ci.Name), &server.JSApiConsumerInfoResponse{}, data) {
					n++
					b.stepDown(term, protocol.JSConsumerLeaderStepDown(st.Name, ci.Name), data, "stream", st.Name, "consumer", ci.Name)
				}
			}
		}
	}
	if n > 0 {
		b.log.Debug("moved raft leaders", "n", n, "to", data)
	}
}

// movable asks a group's leader for its info (subject) and reports whether every copy is online
// and current and, with a data server, whether it holds a copy.
func (b *Broker) movable(ctx context.Context, subject string, resp any, data string) bool {
	rctx, cancel := context.WithTimeout(ctx, raftCall)
	defer cancel()
	m, err := b.nc.RequestWithContext(rctx, subject, nil)
	if err != nil || json.Unmarshal(m.Data, resp) != nil {
		return false
	}
	var ci *server.ClusterInfo
	switch r := resp.(type) {
	case *server.JSApiStreamInfoResponse:
		if r.StreamInfo != nil {
			ci = r.StreamInfo.Cluster
		}
	case *server.JSApiConsumerInfoResponse:
		if r.ConsumerInfo != nil {
			ci = r.ConsumerInfo.Cluster
		}
	}
	if ci == nil || ci.Leader == "" || ci.Leader == data || len(ci.Replicas) == 0 {
		return false
	}
	holds := data == ""
	for _, r := range ci.Replicas {
		if r.Offline || !r.Current {
			return false
		}
		holds = holds || r.Name == data
	}
	return holds
}

// stepDown asks a stream's or consumer's Raft leader to hand its lead to the server preferred
// ("": any other copy).
func (b *Broker) stepDown(ctx context.Context, subject, preferred string, what ...any) {
	req := []byte("{}")
	if preferred != "" {
		req, _ = json.Marshal(server.JSApiLeaderStepdownRequest{Placement: &server.Placement{Preferred: preferred}})
	}
	rctx, cancel := context.WithTimeout(ctx, raftCall)
	defer cancel()
	m, err := b.nc.RequestWithContext(rctx, subject, req)
	if err == nil {
		var resp server.ApiResponse
		if err = json.Unmarshal(m.Data, &resp); err == nil && resp.Error != nil {
			err = resp.Error
		}
	}
	if err != nil && ctx.Err() == nil {
		b.log.Debug("raft leader stepdown", append(what, "to", preferred, "error", err)...)
	}
}

// ReadCluster returns the brokers of the cluster behind nc, the one leading, and the NATS
// servers holding the replicated state.
func ReadCluster(ctx context.Context, nc *nats.Conn) (ClusterView, error) {
	var v ClusterView
	js, err := jetstream.New(nc)
	if err != nil {
		return v, err
	}
	o, err := leader.Observe(ctx, js)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return v, errors.New("this broker runs alone: no cluster")
	}
	if err != nil {
		return v, fmt.Errorf("cluster: %w", err)
	}
	rec, err := o.Leader(ctx)
	if err != nil {
		return v, fmt.Errorf("cluster: leader: %w", err)
	}
	v.Leader, v.LeaderSince = rec.Server, rec.Since
	announced, err := o.Members(ctx)
	if announced == nil {
		return v, fmt.Errorf("cluster: brokers: %w", err)
	}
	// A broker whose announcement could not be read (err) is left out, as one that just expired.
	for _, data := range announced {
		var m ClusterMember
		if json.Unmarshal(data, &m) == nil {
			v.Brokers = append(v.Brokers, m)
		}
	}
	sort.Slice(v.Brokers, func(i, k int) bool { return v.Brokers[i].Server < v.Brokers[k].Server })
	st, err := js.Stream(ctx, protocol.KVStream(kvPipelines))
	if err != nil {
		return v, fmt.Errorf("cluster: state stream: %w", err)
	}
	info := st.CachedInfo()
	v.Replicas = info.Config.Replicas
	if ci := info.Cluster; ci != nil {
		if ci.Leader != "" {
			v.Peers = append(v.Peers, ClusterPeer{Server: ci.Leader, Leader: true, Current: true})
		}
		for _, r := range ci.Replicas {
			v.Peers = append(v.Peers, ClusterPeer{Server: r.Name, Current: r.Current && !r.Offline})
		}
	}
	sort.Slice(v.Peers, func(i, k int) bool { return v.Peers[i].Server < v.Peers[k].Server })
	return v, nil
}
