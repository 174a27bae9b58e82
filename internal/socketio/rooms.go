package socketio

import (
	"hash/maphash"
	"sync"
)

// roomShards spreads rooms over independent locks so that a broadcast in
// one session never waits for a join in another.
const roomShards = 32

type roomSet struct {
	seed   maphash.Seed
	shards [roomShards]roomShard
}

type roomShard struct {
	mu    sync.RWMutex
	rooms map[string]*room
}

// room keeps its members in a slice for fast fan-out, with an index for
// O(1) removal.
type room struct {
	members []*Conn
	index   map[*Conn]int
}

func newRoomSet() *roomSet {
	rs := &roomSet{seed: maphash.MakeSeed()}
	for i := range rs.shards {
		rs.shards[i].rooms = make(map[string]*room)
	}
	return rs
}

func (rs *roomSet) shard(name string) *roomShard {
	return &rs.shards[maphash.String(rs.seed, name)%roomShards]
}

// join adds c to the room. Lock order everywhere: shard, then connection.
func (rs *roomSet) join(c *Conn, name string) {
	sh := rs.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.rooms == nil {
		c.rooms = make(map[string]struct{}, 1)
	}
	c.rooms[name] = struct{}{}
	c.mu.Unlock()
	r := sh.rooms[name]
	if r == nil {
		r = &room{index: make(map[*Conn]int)}
		sh.rooms[name] = r
	}
	if _, ok := r.index[c]; ok {
		return
	}
	r.index[c] = len(r.members)
	r.members = append(r.members, c)
}

func (rs *roomSet) leave(c *Conn, name string) {
	sh := rs.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c.mu.Lock()
	delete(c.rooms, name)
	c.mu.Unlock()
	sh.remove(c, name)
}

// leaveAll removes a closed connection from the given rooms.
func (rs *roomSet) leaveAll(c *Conn, names []string) {
	for _, name := range names {
		sh := rs.shard(name)
		sh.mu.Lock()
		sh.remove(c, name)
		sh.mu.Unlock()
	}
}

func (sh *roomShard) remove(c *Conn, name string) {
	r := sh.rooms[name]
	if r == nil {
		return
	}
	i, ok := r.index[c]
	if !ok {
		return
	}
	last := len(r.members) - 1
	r.members[i] = r.members[last]
	r.index[r.members[i]] = i
	r.members[last] = nil
	r.members = r.members[:last]
	delete(r.index, c)
	if len(r.members) == 0 {
		delete(sh.rooms, name)
	}
}

// each calls fn for every member of the room while holding the shard's
// read lock; fn must not block (enqueue never does).
func (rs *roomSet) each(name string, fn func(*Conn)) int {
	sh := rs.shard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	r := sh.rooms[name]
	if r == nil {
		return 0
	}
	for _, c := range r.members {
		fn(c)
	}
	return len(r.members)
}

// size is the number of local members of a room.
func (rs *roomSet) size(name string) int {
	sh := rs.shard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if r := sh.rooms[name]; r != nil {
		return len(r.members)
	}
	return 0
}
