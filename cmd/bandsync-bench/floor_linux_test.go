package main

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/benchclient"
)

// However the stream is cut into reads, even inside a stamp, each packet
// yields one latency, from its own stamp.
func TestFloorStreamFindsEveryStampWhereverReadsEnd(t *testing.T) {
	stamps := []int64{1_000, 2_000, 3_000}
	var stream []byte
	for _, s := range stamps {
		p := make([]byte, floorPacket)
		binary.LittleEndian.PutUint64(p, uint64(s))
		stream = append(stream, p...)
	}
	const now = 10_000
	for _, cut := range []int{1, 3, 7, 8, 9, 149, 150, 151, 200, 450} {
		var st floorStream
		var got benchclient.Samples
		for b := stream; len(b) > 0; {
			k := min(cut, len(b))
			st.take(b[:k], now, &got)
			b = b[k:]
		}
		if got.Len() != len(stamps) {
			t.Fatalf("reads of %d bytes: %d latencies, want %d", cut, got.Len(), len(stamps))
		}
		for i := range stamps {
			// Percentiles are ascending, and later stamps are shorter latencies.
			want := time.Duration(now - stamps[len(stamps)-1-i])
			if p := got.Percentile(float64(i+1) / float64(len(stamps)) * 100); p != want {
				t.Errorf("reads of %d bytes: latency %d is %v, want %v", cut, i, p, want)
			}
		}
	}
}
