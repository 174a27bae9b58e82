package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// bus follows sessions over pub/sub: one dedicated connection (per Cluster
// node with sharded pub/sub, since a shard channel can only be subscribed
// on the node that owns its slot), separate from the command pool, with a
// receiving goroutine each.
//
// Without Cluster, go-redis re-establishes a broken subscription and
// re-subscribes its channels (a Sentinel client reconnects to the current
// master); the bus then tells the listener to resync, because whatever was
// published meanwhile is lost.
//
// On a Cluster that is not enough: a node's connection is bound to the
// node's address, so after its master dies go-redis would redial the dead
// address forever, and after a slot moves the node drops the slot's shard
// channels (a server-side SUNSUBSCRIBE) while the channel stays in
// go-redis's own list, to be re-sent to the wrong node on every reconnect.
// So on a Cluster a broken connection is closed and its channels, like the
// channels the server unsubscribed, are "re-homed": subscribed again on
// whichever master the (reloaded) slot map names now, retried with backoff
// until that works, and resynced once confirmed.
type bus struct {
	r *Redis

	mu      sync.Mutex
	refs    map[string]int           // channel -> Follow calls not yet undone
	ready   map[string]chan struct{} // channel -> closed once subscribed
	shards  map[string]*shard        // node address ("" without Cluster) -> connection
	home    map[string]*shard        // channel -> the connection it is subscribed on
	orphans map[string]bool          // channels waiting to be re-homed (Cluster)
	resync  map[string]bool          // channels whose confirmation must trigger a resync
	closed  bool
	// rehoming: the re-homing loop runs (it stops once no channel is
	// left to re-home).
	rehoming bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type shard struct {
	addr   string
	ps     *redis.PubSub
	ctx    context.Context // ends when this connection is retired
	cancel context.CancelFunc
}

// followTimeout bounds the wait for a subscription's confirmation.
const followTimeout = 2 * time.Second

// Re-homing backoff: the first retry comes quickly (a slot move is over
// at once), later ones slow down while a failover is still being decided.
const (
	rehomeMinWait = 50 * time.Millisecond
	rehomeMaxWait = 500 * time.Millisecond
)

func newBus(r *Redis) *bus {
	ctx, cancel := context.WithCancel(context.Background())
	return &bus{r: r, refs: make(map[string]int), ready: make(map[string]chan struct{}),
		shards: make(map[string]*shard), home: make(map[string]*shard),
		orphans: make(map[string]bool), resync: make(map[string]bool), ctx: ctx, cancel: cancel}
}

// clustered reports whether shard channels are spread over Cluster nodes
// (and so must follow their slots).
func (b *bus) clustered() (*redis.ClusterClient, bool) {
	cc, ok := b.r.c.(*redis.ClusterClient)
	return cc, ok && b.r.sharded
}

// follow subscribes to the session's channel (counting repeated calls) and
// returns once the subscription is in effect.
func (b *bus) follow(ctx context.Context, sessionID string) error {
	ch := b.r.k.channel(sessionID)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("redisstore: closed")
	}
	b.refs[ch]++
	wait := b.ready[ch]
	var err error
	if wait == nil {
		wait = make(chan struct{})
		b.ready[ch] = wait
		err = b.subscribeLocked(ctx, ch)
	}
	b.mu.Unlock()
	if err == nil {
		t := time.NewTimer(followTimeout)
		select {
		case <-wait:
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
			err = errors.New("redisstore: subscription not confirmed in time")
		}
		t.Stop()
	}
	if err != nil {
		b.unfollow(sessionID)
	}
	return err
}

// subscribeLocked subscribes ch on the connection of the node that serves
// it now (Follow's first subscription; re-homing is rehomeOne). b.mu is
// held. On a Cluster, a connection that cannot even be established (its
// node is dead, and the slot map not yet reloaded) is retired at once.
func (b *bus) subscribeLocked(ctx context.Context, ch string) error {
	sh, err := b.shardFor(ctx, ch, nil)
	if err != nil {
		return err
	}
	if b.r.sharded {
		err = sh.ps.SSubscribe(ctx, ch)
	} else {
		err = sh.ps.Subscribe(ctx, ch)
	}
	if err != nil {
		if _, ok := b.clustered(); ok {
			b.retireLocked(sh)
		}
		return err
	}
	b.home[ch] = sh
	return nil
}

// unfollow undoes one follow; it reports whether that was the last one and
// the channel was unsubscribed.
func (b *bus) unfollow(sessionID string) bool {
	ch := b.r.k.channel(sessionID)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs[ch] == 0 {
		return false
	}
	b.refs[ch]--
	if b.refs[ch] > 0 {
		return false
	}
	delete(b.refs, ch)
	delete(b.ready, ch)
	delete(b.orphans, ch)
	delete(b.resync, ch)
	sh := b.home[ch]
	delete(b.home, ch)
	if sh == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if b.r.sharded {
		_ = sh.ps.SUnsubscribe(ctx, ch)
	} else {
		_ = sh.ps.Unsubscribe(ctx, ch)
	}
	return true
}

// followed lists the sessions currently followed.
func (b *bus) followed() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.refs))
	for ch := range b.refs {
		if id, ok := b.r.k.sessionOfChannel(ch); ok {
			out = append(out, id)
		}
	}
	return out
}

// errNodeFailed: the channel's node already failed in this re-homing pass.
var errNodeFailed = errors.New("redisstore: the channel's node is not reachable")

// shardFor returns the connection that carries ch, starting it if needed
// (unless its node is in failed). b.mu is held.
func (b *bus) shardFor(ctx context.Context, ch string, failed map[string]bool) (*shard, error) {
	addr := ""
	var node redis.UniversalClient = b.r.c
	if cc, ok := b.clustered(); ok {
		n, err := cc.MasterForKey(ctx, ch)
		if err != nil {
			return nil, err
		}
		addr, node = n.Options().Addr, n
		if failed[addr] {
			return nil, errNodeFailed
		}
	}
	if sh := b.shards[addr]; sh != nil {
		return sh, nil
	}
	sctx, cancel := context.WithCancel(b.ctx)
	sh := &shard{addr: addr, ctx: sctx, cancel: cancel}
	if b.r.sharded {
		sh.ps = node.SSubscribe(sctx)
	} else {
		sh.ps = node.Subscribe(sctx)
	}
	b.shards[addr] = sh
	b.wg.Add(1)
	go b.receive(sh)
	return sh, nil
}

// retireLocked closes a Cluster connection that broke and queues its
// channels for re-homing. b.mu is held.
func (b *bus) retireLocked(sh *shard) {
	if b.shards[sh.addr] == sh {
		delete(b.shards, sh.addr)
	}
	sh.cancel()
	_ = sh.ps.Close()
	for ch, h := range b.home {
		if h == sh {
			b.orphanLocked(ch)
		}
	}
}

// orphanLocked queues ch to be subscribed again where its slot lives now.
// b.mu is held.
func (b *bus) orphanLocked(ch string) {
	delete(b.home, ch)
	if b.refs[ch] == 0 || b.closed {
		return
	}
	b.orphans[ch] = true
	b.resync[ch] = true
	// A dead master answers no MOVED, so go-redis would keep its slot map
	// (reloaded every minute otherwise): ask for a fresh one now.
	if cc, ok := b.clustered(); ok {
		cc.ReloadState(b.ctx)
	}
	if !b.rehoming {
		b.rehoming = true
		b.wg.Add(1)
		go b.rehome()
	}
}

// rehome subscribes the orphaned channels again, each on the master its
// slot map names, until none is left. A failover takes a few seconds to be
// decided; meanwhile the slot map still names the dead master and the
// attempt fails, so it is retried with backoff and a fresh slot map.
func (b *bus) rehome() {
	defer b.wg.Done()
	wait := rehomeMinWait
	logged := false
	for {
		t := time.NewTimer(wait)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		pending := make([]string, 0, len(b.orphans))
		for ch := range b.orphans {
			pending = append(pending, ch)
		}
		b.mu.Unlock()
		var failed error
		failedNodes := map[string]bool{}
		for _, ch := range pending {
			if err := b.rehomeOne(ch, failedNodes); err != nil && !errors.Is(err, errNodeFailed) {
				failed = err
			}
		}
		b.mu.Lock()
		left := len(b.orphans)
		if left == 0 {
			b.rehoming = false
		}
		b.mu.Unlock()
		if left == 0 {
			if logged {
				b.r.log.Info("redis subscriptions re-established on the slots' new masters")
			}
			return
		}
		if !logged {
			logged = true
			b.r.log.Warn("redis shard subscriptions not re-established yet; retrying", "channels", left, "err", failed)
		}
		if cc, ok := b.clustered(); ok {
			cc.ReloadState(b.ctx)
		}
		wait = min(wait*2, rehomeMaxWait)
	}
}

// rehomeOne subscribes one orphaned channel where its slot map says. The
// subscription itself (a dial, if the node is new) is made without b.mu,
// so that a node that does not answer holds up neither the other
// connections' deliveries nor Follow; what changed meanwhile is checked
// after. failedNodes is the pass's list of nodes that could not be
// reached.
func (b *bus) rehomeOne(ch string, failedNodes map[string]bool) error {
	ctx, cancel := context.WithTimeout(b.ctx, time.Second)
	defer cancel()
	b.mu.Lock()
	if b.closed || !b.orphans[ch] {
		b.mu.Unlock()
		return nil
	}
	if b.refs[ch] == 0 {
		delete(b.orphans, ch)
		b.mu.Unlock()
		return nil
	}
	sh, err := b.shardFor(ctx, ch, failedNodes)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	err = sh.ps.SSubscribe(ctx, ch)
	b.mu.Lock()
	current := b.shards[sh.addr] == sh
	switch {
	case err != nil:
		failedNodes[sh.addr] = true
		if current {
			b.retireLocked(sh)
		}
	case !current || b.closed:
		// The connection broke meanwhile; the channel stays orphaned
		// for the next pass.
		err = errNodeFailed
	case b.refs[ch] == 0:
		// Unfollowed meanwhile: take the subscription back (below,
		// without the lock).
		delete(b.orphans, ch)
		b.mu.Unlock()
		_ = sh.ps.SUnsubscribe(ctx, ch)
		return nil
	default:
		b.home[ch] = sh
		delete(b.orphans, ch)
	}
	b.mu.Unlock()
	return err
}

// receive reads one connection's messages until the bus closes or, on a
// Cluster, the connection is retired.
func (b *bus) receive(sh *shard) {
	defer b.wg.Done()
	const minWait, maxWait = 50 * time.Millisecond, 2 * time.Second
	wait := minWait
	broken := false
	for {
		msg, err := sh.ps.Receive(sh.ctx)
		if sh.ctx.Err() != nil {
			return
		}
		if err != nil {
			if _, ok := b.clustered(); ok {
				// The node is gone or no longer serves these slots:
				// redialling its address cannot help.
				b.r.log.Warn("redis subscription lost; subscribing again where the slots live now", "node", sh.addr, "err", err)
				b.mu.Lock()
				b.retireLocked(sh)
				b.mu.Unlock()
				return
			}
			// go-redis reconnects on the next Receive; back off meanwhile.
			if !broken {
				b.r.log.Warn("redis subscription lost; reconnecting", "err", err)
			}
			broken = true
			t := time.NewTimer(wait)
			select {
			case <-sh.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			wait = min(wait*2, maxWait)
			continue
		}
		wait = minWait
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "sunsubscribe" {
				b.serverUnsubscribed(sh, m.Channel)
				continue
			}
			if m.Kind != "subscribe" && m.Kind != "ssubscribe" {
				continue
			}
			b.mu.Lock()
			if w := b.ready[m.Channel]; w != nil {
				select {
				case <-w:
				default:
					close(w)
				}
			}
			again := b.resync[m.Channel]
			delete(b.resync, m.Channel)
			b.mu.Unlock()
			if broken || again {
				broken = false
				b.r.log.Info("redis subscription re-established; resyncing sessions")
				if l := b.r.listening(); l != nil {
					l.Resync()
				}
			}
		case *redis.Message:
			id, ok := b.r.k.sessionOfChannel(m.Channel)
			if !ok {
				continue
			}
			batch, err := decodeMessage(m.Payload)
			if err != nil {
				b.r.log.Warn("dropping a malformed batch", "session", id, "err", err)
				continue
			}
			if l := b.r.listening(); l != nil {
				l.Deliver(id, batch)
			}
		}
	}
}

// serverUnsubscribed handles a SUNSUBSCRIBE that this instance did not ask
// for: the node no longer serves the channel's slot (it moved to another
// master). The whole connection is retired and its channels re-homed:
// go-redis still lists the channel on it and would send it to this node
// again on a reconnect, and unsubscribing it here would only earn a MOVED.
func (b *bus) serverUnsubscribed(sh *shard, ch string) {
	if _, ok := b.clustered(); !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs[ch] == 0 || b.home[ch] != sh {
		return // our own unsubscribe, or already re-homed
	}
	b.r.log.Info("redis node dropped a shard channel (its slot moved); following it to its new master", "node", sh.addr, "channel", ch)
	b.retireLocked(sh)
}

func (b *bus) close() {
	b.mu.Lock()
	b.closed = true
	shards := b.shards
	b.shards = map[string]*shard{}
	b.mu.Unlock()
	b.cancel()
	for _, sh := range shards {
		_ = sh.ps.Close()
	}
	b.wg.Wait()
}
