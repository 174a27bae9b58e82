package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

// rollback is what Redis's asynchronous replication leaves after a master
// acknowledged commits and died before its replica had them: the promoted
// replica holds the session's state and log as they were a little
// earlier. freeze takes the keys as they are now (DUMP); restore puts them
// back (RESTORE REPLACE), on a server that stays up, so that which
// instance touches the store first after the "failover" is up to the test.
// The failover tests (failover_test.go) produce the same loss for real.
type rollback struct {
	c     *redis.Client
	keys  []string
	dumps []string
}

func freeze(t *testing.T, url, pfx, session string) *rollback {
	t.Helper()
	c := redis.NewClient(mustParse(t, url))
	t.Cleanup(func() { _ = c.Close() })
	rb := &rollback{c: c}
	for _, k := range []string{":state", ":log"} {
		key := pfx + "{" + session + "}" + k
		d, err := c.Dump(t.Context(), key).Result()
		if err != nil {
			t.Fatalf("DUMP %s: %v", key, err)
		}
		rb.keys, rb.dumps = append(rb.keys, key), append(rb.dumps, d)
	}
	return rb
}

func (rb *rollback) restore(t *testing.T) {
	t.Helper()
	for i, k := range rb.keys {
		if err := rb.c.RestoreReplace(t.Context(), k, time.Hour, rb.dumps[i]).Err(); err != nil {
			t.Fatalf("RESTORE %s: %v", k, err)
		}
	}
}

// lastLogID is the id of the newest entry of the session's log.
func (rb *rollback) lastLogID(t *testing.T, session string) string {
	t.Helper()
	msgs, err := rb.c.XRevRangeN(t.Context(), rb.keys[1], "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		t.Fatalf("XREVRANGE: %v %v", msgs, err)
	}
	return msgs[0].ID
}

// After the store lost an acknowledged seek (the rollback), whichever
// instance touches the session first — the leader's committing a change,
// another one committing a member joining there, or one checking a
// refusal against the stored record — must not take the older record for
// the truth: the seek holds, the new change holds, every instance agrees,
// and a client whose recovery offset points into the lost history is not
// replayed a gap.
func TestLostCommitIsRestoredByTheNextCommit(t *testing.T) {
	for _, first := range []string{"leader's instance", "other instance", "refused command"} {
		t.Run(first, func(t *testing.T) {
			url, pfx := sharedURL(t), prefix(t)
			a := newInstance(t, open(t, url, pfx, "A"), engineConfig())
			b := newInstance(t, open(t, url, pfx, "B"), engineConfig())
			const id = "gig"
			for _, j := range []struct {
				in *instance
				m  string
			}{{a, "lead"}, {b, "f2"}} {
				if _, err := j.in.eng.Join(j.m, engine.JoinRequest{SessionID: id, DisplayName: j.m}); err != nil {
					t.Fatal(err)
				}
			}
			played, err := a.eng.Play("lead", id, 0)
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 2*time.Second, "B has the play", func() bool { return lastSnapshot(b, "f2") >= played.Version })

			rb := freeze(t, url, pfx, id)
			sought, err := a.eng.Seek("lead", id, 600_000)
			if err != nil {
				t.Fatal(err)
			}
			ackedAt := time.Now()
			eventually(t, 2*time.Second, "B has the seek", func() bool { return lastSnapshot(b, "f2") >= sought.Version })
			lost := rb.lastLogID(t, id)
			rb.restore(t)
			if v, _ := rb.c.HGet(t.Context(), rb.keys[0], "v").Uint64(); v >= sought.Version {
				t.Fatalf("the rollback left version %d, want < %d", v, sought.Version)
			}

			// A client that got the seek (its offset is the lost entry)
			// reconnects: its offset is in no log any more, so it gets a
			// fresh state rather than what follows some other entry.
			var complete bool
			eventually(t, 3*time.Second, "the log read", func() bool {
				_, complete, err = b.rs.Since(t.Context(), id, lost)
				return err == nil
			})
			if complete {
				t.Fatal("Since(the lost entry) is complete: a client at that offset would be replayed a gap")
			}

			// The next change.
			next := sought
			switch first {
			case "leader's instance":
				next, err = a.eng.SetTempo("lead", id, 140)
			case "other instance":
				next, err = b.eng.Join("f3", engine.JoinRequest{SessionID: id, DisplayName: "f3"})
			case "refused command":
				// A follower's seek is refused, after a check against
				// the stored record, which is older than B's copy.
				if _, err := b.eng.Seek("f2", id, 1); code(err) != protocol.CodeNotLeader {
					t.Fatalf("a follower's seek: %v, want %s", err, protocol.CodeNotLeader)
				}
			}
			if err != nil {
				t.Fatal(err)
			}

			var sa, sb engine.State
			var rec store.SessionRecord
			eventually(t, 3*time.Second, "both instances agree with the store", func() bool {
				sa, _ = a.eng.Session(id)
				sb, _ = b.eng.Session(id)
				r, ok, err := a.rs.Load(context.Background(), id)
				rec = r
				return err == nil && ok && sa.Version == r.Version && sb.Version == r.Version && r.Version >= next.Version
			})
			for name, st := range map[string]engine.State{"A": sa, "B": sb} {
				want := 600_000 + st.ServerTimestamp - float64(ackedAt.UnixMilli())
				if st.Position < want-1000 || st.Position > want+1000 || !st.IsPlaying {
					t.Errorf("instance %s lost the acknowledged seek: at %.0f ms (playing %v), want about %.0f; stored version %d, seek was version %d",
						name, st.Position, st.IsPlaying, want, rec.Version, sought.Version)
				}
				if first == "leader's instance" && st.TempoBpm != 140 {
					t.Errorf("instance %s: tempo %v, want the acknowledged 140", name, st.TempoBpm)
				}
				if first == "other instance" && st.MemberCount != 3 {
					t.Errorf("instance %s: %d members, want 3 with the acknowledged join", name, st.MemberCount)
				}
			}
			if lastSnapshot(a, "lead") != rec.Version || lastSnapshot(b, "f2") != rec.Version {
				t.Errorf("members' last snapshots: lead (A) %d, f2 (B) %d; want the stored version %d",
					lastSnapshot(a, "lead"), lastSnapshot(b, "f2"), rec.Version)
			}
		})
	}
}
