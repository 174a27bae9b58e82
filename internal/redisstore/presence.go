package redisstore

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence: every Heartbeat an instance renews its key (TTL three
// heartbeats) and its score in the instances sorted set. Members carry the
// id of the instance their socket is on, and each instance keeps the list
// of sessions it follows. An instance whose score is older than three
// heartbeats and whose key has expired is dead: one survivor (the holder of
// a short lock) detaches its members from each of its sessions through the
// engine, which starts their leader grace and recovery windows; after the
// recovery window they are removed. So a dead instance's members vanish
// within 3 heartbeats + 1 heartbeat + RECOVERY_WINDOW_MS, and its leader
// loses leadership within 4 heartbeats + LEADER_GRACE_MS.

func (r *Redis) instanceTTL() time.Duration { return 3 * r.o.Heartbeat }

// PresenceLapsed implements store.Presence: two heartbeats have
// passed without a successful beat, so the presence key may expire one
// heartbeat from now (the TTL ran from a moment after the beat was sent),
// and the others reap at their next beat after that. The heartbeat of
// margin covers the engine's check interval, so an engine that fences on
// it does so before the others can even detach its members, let alone
// elect a leader (instance TTL + LEADER_GRACE_MS).
func (r *Redis) PresenceLapsed() bool {
	last := r.lastBeat.Load()
	return last > 0 && time.Since(time.UnixMilli(last)) >= r.instanceTTL()-r.o.Heartbeat
}

// heartbeat renews this instance's presence and reaps dead instances.
func (r *Redis) heartbeat(ctx context.Context) {
	host, _ := os.Hostname()
	info, _ := json.Marshal(map[string]any{"host": host, "pid": os.Getpid(), "started": time.Now().UnixMilli()})
	t := time.NewTicker(r.o.Heartbeat)
	defer t.Stop()
	beat := func() {
		if !r.up.Load() {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, r.o.Heartbeat)
		defer cancel()
		if err := r.beat(cctx, info); err != nil {
			r.check(err)
			return
		}
		r.reap(cctx)
	}
	r.OnAvailable(func() {
		// After an outage (maybe a Redis that lost its data) the
		// presence and the session list are written again at once.
		cctx, cancel := context.WithTimeout(ctx, r.o.Heartbeat)
		defer cancel()
		if r.beat(cctx, info) == nil {
			if ids := r.bus.followed(); len(ids) > 0 {
				members := make([]any, len(ids))
				for i, id := range ids {
					members[i] = id
				}
				r.check(r.c.SAdd(cctx, r.k.instanceSessions(r.o.InstanceID), members...).Err())
			}
		}
	})
	beat()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beat()
		}
	}
}

func (r *Redis) beat(ctx context.Context, info []byte) (err error) {
	id := r.o.InstanceID
	now := time.Now().UnixMilli()
	defer func() {
		if err == nil {
			// The time the beat was sent, not answered: the key's TTL
			// runs from a moment after it, so the lapse is never late.
			r.lastBeat.Store(now)
		}
	}()
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.k.instance(id), info, r.instanceTTL())
		p.ZAdd(ctx, r.k.instances(), redis.Z{Score: float64(now), Member: id})
		// The session list outlives the instance long enough for a
		// survivor to use it.
		p.PExpire(ctx, r.k.instanceSessions(id), r.instanceTTL()+r.o.RecoveryWindow+time.Minute)
		return nil
	})
	return err
}

// reap detaches the members of instances that stopped beating.
func (r *Redis) reap(ctx context.Context) {
	cutoff := time.Now().Add(-r.instanceTTL()).UnixMilli()
	dead, err := r.c.ZRangeByScore(ctx, r.k.instances(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(cutoff, 10), Count: 16,
	}).Result()
	if err != nil {
		r.check(err)
		return
	}
	r.hooksMu.Lock()
	onDead := r.onDead
	r.hooksMu.Unlock()
	for _, id := range dead {
		if id == r.o.InstanceID {
			continue // our own beat is merely late
		}
		if n, err := r.c.Exists(ctx, r.k.instance(id)).Result(); err != nil || n > 0 {
			continue // alive after all (its key is the truth)
		}
		lock := r.k.reap(id)
		got, err := r.c.SetNX(ctx, lock, r.o.InstanceID, time.Minute).Result()
		if err != nil || !got {
			continue
		}
		sessions, err := r.c.SMembers(ctx, r.k.instanceSessions(id)).Result()
		if err != nil {
			r.check(err)
			continue
		}
		r.log.Warn("instance stopped beating; detaching its members", "instance", id, "sessions", len(sessions))
		if onDead != nil && len(sessions) > 0 {
			onDead(id, sessions)
		}
		// Use a fresh context: reaping may have taken a while.
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r.check(r.c.ZRem(dctx, r.k.instances(), id).Err())
		r.check(r.c.Del(dctx, r.k.instanceSessions(id)).Err())
		cancel()
	}
}

// clientName is the name an instance's Redis connections carry
// (CLIENT SETNAME), by which instanceConnected finds them.
func clientName(instance string) string {
	b := []byte("bandsync:" + instance)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f {
			b[i] = '_' // a client name may not hold spaces
		}
	}
	return string(b)
}

// instanceConnected reports whether the instance holds a connection to
// Redis now (on any master of a Cluster: every instance pings them all).
// A killed instance's connections are gone as soon as the process is.
func (r *Redis) instanceConnected(ctx context.Context, instance string) (bool, error) {
	want := " name=" + clientName(instance) + " "
	has := func(ctx context.Context, c redis.Cmdable) (bool, error) {
		list, err := c.ClientList(ctx).Result()
		return strings.Contains(list, want), err
	}
	cc, ok := r.c.(*redis.ClusterClient)
	if !ok {
		return has(ctx, r.c)
	}
	var found atomic.Bool
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		ok, err := has(ctx, c)
		if ok {
			found.Store(true)
		}
		return err
	})
	if found.Load() {
		return true, nil
	}
	return false, err
}
