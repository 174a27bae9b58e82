package redisstore

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/metrics"
)

// History is the metrics.HistoryStore of a Redis deployment: each instance
// adds its interval samples to its own sorted set (scored by time, trimmed
// to the retention), and reading merges every instance's samples, each
// labelled with its instance. An in-memory ring keeps this instance's
// samples too, and answers while Redis is unavailable.
type History struct {
	r         *Redis
	retention time.Duration
	mem       *metrics.MemoryHistory
}

var _ metrics.HistoryStore = (*History)(nil)

// History returns the backend's history store, keeping samples for
// retention; capacity bounds the in-memory fallback ring.
func (r *Redis) History(retention time.Duration, capacity int) *History {
	return &History{r: r, retention: retention, mem: metrics.NewMemoryHistory(capacity)}
}

// Append implements metrics.HistoryStore.
func (h *History) Append(ctx context.Context, s metrics.Sample) error {
	s.Instance = h.r.o.InstanceID
	_ = h.mem.Append(ctx, s)
	if !h.r.up.Load() {
		return errUnavailable
	}
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	id := h.r.o.InstanceID
	key := h.r.k.metrics(id)
	cutoff := strconv.FormatInt(s.Timestamp-h.retention.Milliseconds(), 10)
	_, err = h.r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(s.Timestamp), Member: body})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+cutoff)
		p.PExpire(ctx, key, h.retention)
		p.ZAdd(ctx, h.r.k.metricsInstances(), redis.Z{Score: float64(s.Timestamp), Member: id})
		p.ZRemRangeByScore(ctx, h.r.k.metricsInstances(), "-inf", "("+cutoff)
		return nil
	})
	return h.r.check(err)
}

// Range implements metrics.HistoryStore: every instance's samples at or
// after since, oldest first (ties by instance).
func (h *History) Range(ctx context.Context, since time.Time) ([]metrics.Sample, error) {
	if !h.r.up.Load() {
		return h.mem.Range(ctx, since)
	}
	min := strconv.FormatInt(since.UnixMilli(), 10)
	ids, err := h.r.c.ZRangeByScore(ctx, h.r.k.metricsInstances(), &redis.ZRangeBy{Min: min, Max: "+inf"}).Result()
	if err != nil {
		if unavailable(h.r.check(err)) {
			return h.mem.Range(ctx, since)
		}
		return nil, err
	}
	cmds := make([]*redis.StringSliceCmd, len(ids))
	_, err = h.r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.ZRangeByScore(ctx, h.r.k.metrics(id), &redis.ZRangeBy{Min: min, Max: "+inf"})
		}
		return nil
	})
	if err != nil {
		if unavailable(h.r.check(err)) {
			return h.mem.Range(ctx, since)
		}
		return nil, err
	}
	out := []metrics.Sample{}
	for _, c := range cmds {
		for _, raw := range c.Val() {
			var s metrics.Sample
			if json.Unmarshal([]byte(raw), &s) == nil {
				out = append(out, s)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b metrics.Sample) int {
		if a.Timestamp != b.Timestamp {
			if a.Timestamp < b.Timestamp {
				return -1
			}
			return 1
		}
		switch {
		case a.Instance < b.Instance:
			return -1
		case a.Instance > b.Instance:
			return 1
		}
		return 0
	})
	return out, nil
}
