package redisstore_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/store"
	"github.com/bandsync/bandsync/internal/store/storetest"
)

// The Redis store keeps the whole store.Shared contract, on a real
// redis-server, with plain and with sharded pub/sub.
func TestSharedContract(t *testing.T) {
	url := sharedURL(t)
	for _, sharded := range []bool{false, true} {
		name := "pubsub"
		if sharded {
			name = "sharded"
		}
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, cfg storetest.Config) func(string) store.Shared {
				pfx := prefix(t)
				return func(inst string) store.Shared {
					rs := open(t, url, pfx, inst, func(o *redisstore.Options) {
						o.ShardedPubSub = &sharded
						o.SessionTTL = cfg.TTL
						o.LogMaxLen = cfg.LogMaxLen
					})
					// A first PING slower than its timeout on a loaded
					// machine starts the store degraded; the supervisor
					// retries it.
					storetest.Eventually(t, 5*time.Second, "redis available", rs.Available)
					return rs
				}
			})
		})
	}
}

func itoa(v uint64) string { b, _ := json.Marshal(v); return string(b) }

func mustParse(t *testing.T, url string) *redis.Options {
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
