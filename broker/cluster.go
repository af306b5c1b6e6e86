package broker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// clusterName is the NATS cluster the embedded servers of marvelo brokers form.
const clusterName = "marvelo"

// clusterOptions joins the embedded server to the other brokers' servers (--cluster, --routes):
// one NATS cluster with clustered JetStream. With an operator token the routes authenticate with
// it too, so a stranger cannot join the cluster.
func (b *Broker) clusterOptions(o *server.Options) error {
	if b.opts.Cluster == "" {
		if len(b.opts.Routes) > 0 {
			return errors.New("broker: --routes needs --cluster (this broker's own route address)")
		}
		return nil
	}
	if b.opts.ServerName == "" {
		return errors.New("broker: --cluster needs --server-name, unique in the cluster")
	}
	host, port, err := splitHostPort(b.opts.Cluster)
	if err != nil {
		return fmt.Errorf("broker: --cluster %q: %w", b.opts.Cluster, err)
	}
	if b.opts.AuthToken == "" && !b.opts.AllowInsecure && !isLoopback(host) {
		return fmt.Errorf("broker: refusing to accept routes on %s without --auth-token: anyone on the network could join the cluster", b.opts.Cluster)
	}
	o.Cluster = server.ClusterOpts{Name: clusterName, Host: host, Port: port}
	for _, r := range b.opts.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return fmt.Errorf("broker: --routes %q: not a URL like nats-route://HOST:PORT", r)
		}
		if b.opts.AuthToken != "" {
			u.User = url.UserPassword("marvelo", b.opts.AuthToken)
		}
		o.Routes = append(o.Routes, u)
	}
	if b.opts.AuthToken != "" {
		o.Cluster.Username, o.Cluster.Password = "marvelo", b.opts.AuthToken
	}
	return nil
}

// serverName is this broker's name among the servers (the NATS server name).
func (b *Broker) serverName() string {
	if b.opts.ServerName != "" {
		return b.opts.ServerName
	}
	return "marvelo"
}

// elects reports whether brokers elect one control plane: in a cluster of brokers, or on a NATS
// deployment other brokers may share. A broker alone leads from the start, as it always did.
func (b *Broker) elects() bool { return b.opts.Cluster != "" || b.opts.NATS != "" }

// replicas is the number of copies of every stream and bucket: --replicas, else 3 where the
// cluster has three or more servers (this one and at least two others named by --routes, or the
// servers the NATS deployment announces), else 1.
func (b *Broker) replicas() int {
	if b.opts.Replicas > 0 {
		return b.opts.Replicas
	}
	servers := 1
	switch {
	case b.opts.Cluster != "":
		for _, r := range b.opts.Routes {
			if u, err := url.Parse(r); err == nil && u.Host != b.opts.Cluster {
				servers++ // a route to itself, as in one list shared by every broker, is not another
			}
		}
	case b.opts.NATS != "" && b.nc != nil:
		servers = len(b.nc.Servers())
	}
	if servers >= 3 {
		return 3
	}
	return 1
}

// bucketKeys lists the keys of a KV bucket from its stream's subjects. Unlike KeyValue.ListKeys
// it makes no consumer: the stream's leader answers, so a control plane taking over in a cluster
// does not wait for JetStream to notice the dead server a consumer might be placed on.
func bucketKeys(ctx context.Context, js jetstream.JetStream, bucket string) ([]string, error) {
	st, err := js.Stream(ctx, protocol.KVStream(bucket))
	if err != nil {
		return nil, err
	}
	prefix := protocol.KVKeySubject(bucket, "") // every key's subject, without the key
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(protocol.KVSubjects(bucket)))
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		keys = append(keys, strings.TrimPrefix(subj, prefix))
	}
	sort.Strings(keys)
	return keys, nil
}

// openKeyValue, openObjectStore and openStream open a bucket or stream that exists and create
// the others. Opening asks the stream's own leader; creating (or updating) asks the JetStream meta
// leader, which a control plane taking over in a cluster may find dead and being re-elected. The
// configuration of what exists is kept, except its number of replicas: a broker started with
// another --replicas than the store was made with changes it (matchReplicas), or fails saying why.
func openKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if kv, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
		return kv, matchReplicas(ctx, js, protocol.KVStream(cfg.Bucket), cfg.Replicas)
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

func openObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	if os, err := js.ObjectStore(ctx, cfg.Bucket); err == nil {
		return os, matchReplicas(ctx, js, protocol.ObjectStream(cfg.Bucket), cfg.Replicas)
	}
	return js.CreateOrUpdateObjectStore(ctx, cfg)
}

func openStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if st, err := js.Stream(ctx, cfg.Name); err == nil {
		return st, matchReplicas(ctx, js, cfg.Name, cfg.Replicas)
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// matchReplicas gives an existing stream (a bucket's too) want copies, when it has another
// number: the rest of its configuration stays as it is. JetStream makes the new copies (or drops
// the extra ones) itself; where it cannot (fewer servers than copies), the error says so.
func matchReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) error {
	if want <= 0 {
		return nil
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	cfg := st.CachedInfo().Config
	have := max(cfg.Replicas, 1)
	if have == want {
		return nil
	}
	cfg.Replicas = want
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream %s has %d replicas; changing it to --replicas %d: %w", stream, have, want, err)
	}
	return nil
}

// matchPipeReplicas gives the pipe streams of the pipelines still going the configured number
// of replicas, as openStream does for the control plane's own streams.
func (c *control) matchPipeReplicas(ctx context.Context) error {
	c.mu.Lock()
	var streams []string
	for name, p := range c.pipelines {
		if p.state.terminal() {
			continue
		}
		for id := range p.doc.Endpoints() {
			if pp := p.doc.PipeByID(id); !pp.IsRealtime() {
				streams = append(streams, protocol.PipeStream(name, id))
			}
		}
	}
	c.mu.Unlock()
	sort.Strings(streams)
	for _, s := range streams {
		err := matchReplicas(ctx, c.js, s, c.opts.Replicas)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("broker: pipe %w", err)
		}
	}
	return nil
}

// checkReplicas refuses copies a broker alone cannot keep: --replicas above 1 needs a cluster of
// brokers or a NATS deployment.
func (o *Options) checkReplicas() error {
	if o.Replicas > 1 && o.Cluster == "" && o.NATS == "" {
		return fmt.Errorf("broker: --replicas %d needs a cluster (--cluster with --routes to the other brokers) or --nats; a broker alone keeps one copy", o.Replicas)
	}
	if o.Replicas < 0 {
		return fmt.Errorf("broker: --replicas %d: give a number of copies, 1 or more", o.Replicas)
	}
	return nil
}

// startClusterAccess serves the identities of a broker of a cluster: every broker follows the
// replicated identity bucket (access_cluster.go).
func (b *Broker) startClusterAccess(ctx context.Context) error {
	storage := jetstream.FileStorage
	if b.opts.Memory {
		storage = jetstream.MemoryStorage
	}
	subs, done, err := b.access.startCluster(ctx, b.ns, b.sopts, b.nc, storage, b.opts.Replicas, b.serverName())
	if err != nil {
		return err
	}
	b.accessSubs, b.accessDone = subs, done
	return nil
}
