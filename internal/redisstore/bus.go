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
// receiving goroutine each. go-redis re-establishes a broken subscription
// and re-subscribes its channels; the bus then tells the listener to
// resync, because whatever was published meanwhile is lost.
type bus struct {
	r *Redis

	mu     sync.Mutex
	refs   map[string]int           // channel -> Follow calls not yet undone
	ready  map[string]chan struct{} // channel -> closed once subscribed
	shards map[string]*shard        // node address ("" without Cluster) -> connection
	closed bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type shard struct {
	ps *redis.PubSub
}

// followTimeout bounds the wait for a subscription's confirmation.
const followTimeout = 2 * time.Second

func newBus(r *Redis) *bus {
	ctx, cancel := context.WithCancel(context.Background())
	return &bus{r: r, refs: make(map[string]int), ready: make(map[string]chan struct{}),
		shards: make(map[string]*shard), ctx: ctx, cancel: cancel}
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
		var sh *shard
		if sh, err = b.shardFor(ctx, ch); err == nil {
			if b.r.sharded {
				err = sh.ps.SSubscribe(ctx, ch)
			} else {
				err = sh.ps.Subscribe(ctx, ch)
			}
		}
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if sh, err := b.shardFor(ctx, ch); err == nil {
		if b.r.sharded {
			_ = sh.ps.SUnsubscribe(ctx, ch)
		} else {
			_ = sh.ps.Unsubscribe(ctx, ch)
		}
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

// shardFor returns the connection that carries ch, starting it if needed.
// b.mu is held.
func (b *bus) shardFor(ctx context.Context, ch string) (*shard, error) {
	addr := ""
	var node redis.UniversalClient = b.r.c
	if cc, ok := b.r.c.(*redis.ClusterClient); ok && b.r.sharded {
		n, err := cc.MasterForKey(ctx, ch)
		if err != nil {
			return nil, err
		}
		addr, node = n.Options().Addr, n
	}
	if sh := b.shards[addr]; sh != nil {
		return sh, nil
	}
	var ps *redis.PubSub
	if b.r.sharded {
		ps = node.SSubscribe(b.ctx)
	} else {
		ps = node.Subscribe(b.ctx)
	}
	sh := &shard{ps: ps}
	b.shards[addr] = sh
	b.wg.Add(1)
	go b.receive(sh)
	return sh, nil
}

// receive reads one connection's messages until the bus closes.
func (b *bus) receive(sh *shard) {
	defer b.wg.Done()
	const minWait, maxWait = 50 * time.Millisecond, 2 * time.Second
	wait := minWait
	broken := false
	for {
		msg, err := sh.ps.Receive(b.ctx)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			// go-redis reconnects on the next Receive; back off meanwhile.
			if !broken {
				b.r.log.Warn("redis subscription lost; reconnecting", "err", err)
			}
			broken = true
			t := time.NewTimer(wait)
			select {
			case <-b.ctx.Done():
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
			b.mu.Unlock()
			if broken {
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
