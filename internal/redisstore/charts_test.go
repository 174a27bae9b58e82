package redisstore

import (
	"testing"

	"github.com/bandsync/bandsync/internal/store"
)

// A chart is sent to Redis once: the changes after the one that added it
// carry only its name.
func TestChartCacheSendsEachChartOnce(t *testing.T) {
	var c chartCache
	rec := store.SessionRecord{SessionID: "s", Library: store.Library{Songs: []store.Song{
		{SongID: "song-1", Version: 1, ChordPro: "{title: a}"},
		{SongID: "song-2", Version: 3}, // stored by another instance: no text here
	}}}
	stripped, live, writes := c.split(rec)
	if len(live) != 2 || len(writes) != 2 || writes[0] != "song-1:1" || stripped.Songs[0].ChordPro != "" {
		t.Fatalf("first split: live %v writes %v", live, writes)
	}
	if rec.Songs[0].ChordPro == "" {
		t.Fatal("split modified the caller's record")
	}
	c.wrote("s", writes)
	if _, live, writes := c.split(rec); len(live) != 2 || len(writes) != 0 {
		t.Fatalf("second split: live %v writes %v", live, writes)
	}
	c.reset() // Redis came back: it may have lost them
	if _, _, writes := c.split(rec); len(writes) != 2 {
		t.Fatalf("after reset: writes %v", writes)
	}
}
