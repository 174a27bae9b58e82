package benchclient

import (
	"strconv"
)

// The server's events are read without encoding/json: a follower at 60
// ticks a second across thousands of connections would otherwise spend
// more CPU decoding than the server spends encoding, and the bench must not
// be the bottleneck it measures. Only the top level of an object is
// walked; nested values are skipped as opaque.

// Event returns the name and first argument of a Socket.IO EVENT packet,
// the text after the Engine.IO "4": 2[/nsp,][id]["name",arg,...]. arg
// starts at the first argument and, to save a pass over every tick, runs
// to the end of the array: further arguments (the recovery offset string)
// and the closing bracket follow it. Lookup, Float, Bool and String read
// only the leading object, so they do not mind. arg is nil when the event
// has no argument. Both alias pkt.
func Event(pkt []byte) (name, arg []byte, ok bool) {
	if len(pkt) < 2 || pkt[0] != '2' {
		return nil, nil, false
	}
	i := 1
	if pkt[i] == '/' {
		for i < len(pkt) && pkt[i] != ',' {
			i++
		}
		i++
	}
	for i < len(pkt) && pkt[i] >= '0' && pkt[i] <= '9' {
		i++
	}
	if i >= len(pkt) || pkt[i] != '[' {
		return nil, nil, false
	}
	i = skipWS(pkt, i+1)
	if i >= len(pkt) || pkt[i] != '"' {
		return nil, nil, false
	}
	end := skipString(pkt, i)
	if end < 0 {
		return nil, nil, false
	}
	name = pkt[i+1 : end-1]
	i = skipWS(pkt, end)
	if i < len(pkt) && pkt[i] == ',' {
		arg = pkt[skipWS(pkt, i+1):]
	}
	return name, arg, true
}

// Lookup returns the raw JSON value of key at the top level of obj. Keys
// are compared byte for byte, so key must need no escaping.
func Lookup(obj []byte, key string) ([]byte, bool) {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipWS(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return nil, false // '}' or malformed
		}
		end := skipString(obj, i)
		if end < 0 {
			return nil, false
		}
		k := obj[i+1 : end-1]
		i = skipWS(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false
		}
		i = skipWS(obj, i+1)
		j := skipValue(obj, i)
		if j < 0 {
			return nil, false
		}
		if string(k) == key {
			return obj[i:j], true
		}
		i = skipWS(obj, j)
		if i >= len(obj) || obj[i] != ',' {
			return nil, false
		}
		i++
	}
}

// Float returns the number at key in obj.
func Float(obj []byte, key string) (float64, bool) {
	v, ok := Lookup(obj, key)
	if !ok || len(v) == 0 || v[0] == '"' || v[0] == 'n' {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, err == nil
}

// Bool returns the boolean at key in obj.
func Bool(obj []byte, key string) (value, ok bool) {
	v, ok := Lookup(obj, key)
	switch {
	case !ok:
		return false, false
	case string(v) == "true":
		return true, true
	case string(v) == "false":
		return false, true
	}
	return false, false
}

// String returns the string at key in obj.
func String(obj []byte, key string) (string, bool) {
	v, ok := Lookup(obj, key)
	if !ok || len(v) < 2 || v[0] != '"' {
		return "", false
	}
	for _, c := range v[1 : len(v)-1] {
		if c == '\\' {
			s, err := strconv.Unquote(string(v))
			return s, err == nil
		}
	}
	return string(v[1 : len(v)-1]), true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] (a
// quote), or -1 when it is not terminated.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1
// when there is none. It checks structure only as far as needed to find
// the end: the server is trusted to send valid JSON.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j := skipString(b, i)
				if j < 0 {
					return -1
				}
				i = j - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	case ',', ']', '}', ':':
		return -1
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return j
		}
		j++
	}
	return j
}
