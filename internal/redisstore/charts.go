package redisstore

// Charts (the ChordPro text of a session's songs) are kept in their own
// hash, <p>{<session>}:charts, not in the session record: the record is
// written, logged and published with every change of the session, and a
// full setlist's charts (up to 1 MB) would ride along with every tempo
// change. The commit script stores a chart in the same atomic step as the
// change that introduced it, drops the charts the record no longer refers
// to, and expires the hash with the session.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/store"
)

// chartField names a chart in the hash: a song's text is immutable per
// version.
func chartField(songID string, version uint64) string {
	return songID + ":" + strconv.FormatUint(version, 10)
}

// chartCache remembers which charts this instance has stored, so that a
// change that did not touch the setlist does not send them again.
type chartCache struct {
	mu    sync.Mutex
	known map[string]map[string]bool // session -> chart fields stored
}

// split returns rec without chart texts (its Songs are copied, never
// modified), the chart fields it refers to, and the field/text pairs to
// store because this instance has not stored them yet.
func (c *chartCache) split(rec store.SessionRecord) (_ store.SessionRecord, live []string, writes []string) {
	if len(rec.Songs) == 0 {
		return rec, nil, nil
	}
	rec.Songs = slices.Clone(rec.Songs)
	c.mu.Lock()
	known := c.known[rec.SessionID]
	c.mu.Unlock()
	for i := range rec.Songs {
		g := &rec.Songs[i]
		f := chartField(g.SongID, g.Version)
		live = append(live, f)
		if g.ChordPro != "" && !known[f] {
			writes = append(writes, f, g.ChordPro)
		}
		g.ChordPro = ""
	}
	return rec, live, writes
}

// wrote records that writes (field/text pairs) reached Redis.
func (c *chartCache) wrote(sessionID string, writes []string) {
	if len(writes) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known == nil {
		c.known = make(map[string]map[string]bool)
	}
	m := c.known[sessionID]
	if m == nil {
		m = make(map[string]bool)
		c.known[sessionID] = m
	}
	for i := 0; i < len(writes); i += 2 {
		m[writes[i]] = true
	}
}

// forget drops what is known of a session (no longer followed here).
func (c *chartCache) forget(sessionID string) {
	c.mu.Lock()
	delete(c.known, sessionID)
	c.mu.Unlock()
}

// reset forgets everything: after an outage Redis may have lost data, and
// the charts this instance holds are written again by its next commit.
func (c *chartCache) reset() {
	c.mu.Lock()
	c.known = nil
	c.mu.Unlock()
}

// LoadChart implements store.ChartLoader: the text of one version of a
// song's chart; found is false when Redis does not have it.
func (r *Redis) LoadChart(ctx context.Context, sessionID, songID string, version uint64) (string, bool, error) {
	if !r.up.Load() {
		return "", false, errUnavailable
	}
	text, err := r.c.HGet(ctx, r.k.charts(sessionID), chartField(songID, version)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, r.check(err)
	}
	return text, true, nil
}

var _ store.ChartLoader = (*Redis)(nil)
