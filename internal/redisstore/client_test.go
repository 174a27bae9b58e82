package redisstore

import (
	"net/url"
	"testing"

	"github.com/redis/go-redis/v9"
)

// REDIS_URL's forms map to the right kind of client; REDIS_HOST and
// friends are used only without a URL.
func TestNewClientKinds(t *testing.T) {
	cases := []struct {
		name    string
		conn    Conn
		cluster bool
		check   func(t *testing.T, c redis.UniversalClient)
	}{
		{"host and port", Conn{Host: "cache", Port: 6380, Password: "pw", DB: 2}, false, func(t *testing.T, c redis.UniversalClient) {
			o := c.(*redis.Client).Options()
			if o.Addr != "cache:6380" || o.Password != "pw" || o.DB != 2 {
				t.Errorf("options %s %s %d", o.Addr, o.Password, o.DB)
			}
		}},
		{"url wins", Conn{URL: "redis://:secret@h:7000/3", Host: "ignored"}, false, func(t *testing.T, c redis.UniversalClient) {
			o := c.(*redis.Client).Options()
			if o.Addr != "h:7000" || o.Password != "secret" || o.DB != 3 || o.DialerRetries != 1 {
				t.Errorf("options %s %s %d retries %d", o.Addr, o.Password, o.DB, o.DialerRetries)
			}
		}},
		{"tls", Conn{URL: "rediss://h:6380"}, false, func(t *testing.T, c redis.UniversalClient) {
			if c.(*redis.Client).Options().TLSConfig == nil {
				t.Error("rediss:// without TLS")
			}
		}},
		{"cluster", Conn{URL: "redis://h1:7000?addr=h2:7001&addr=h3:7002"}, true, func(t *testing.T, c redis.UniversalClient) {
			if _, ok := c.(*redis.ClusterClient); !ok {
				t.Errorf("got %T", c)
			}
		}},
		{"sentinel", Conn{URL: "redis-sentinel://:pw@s1:26379,s2:26380/mymaster/4?sentinel_password=sp"}, false, func(t *testing.T, c redis.UniversalClient) {
			if _, ok := c.(*redis.Client); !ok {
				t.Errorf("got %T", c)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, cluster, desc, err := NewClient(tc.conn)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if cluster != tc.cluster {
				t.Errorf("cluster = %v", cluster)
			}
			if desc == "" || (tc.conn.URL != "" && containsSecret(desc)) {
				t.Errorf("description %q", desc)
			}
			tc.check(t, c)
		})
	}
}

func containsSecret(s string) bool {
	for _, secret := range []string{"secret", ":pw@"} {
		for i := 0; i+len(secret) <= len(s); i++ {
			if s[i:i+len(secret)] == secret {
				return true
			}
		}
	}
	return false
}

func TestParseSentinel(t *testing.T) {
	fo, err := parseSentinelURL("redis-sentinel://:pw@s1:26379,s2:26380/mymaster/4?sentinel_password=sp")
	if err != nil {
		t.Fatal(err)
	}
	if fo.MasterName != "mymaster" || fo.DB != 4 || fo.Password != "pw" || fo.SentinelPassword != "sp" ||
		len(fo.SentinelAddrs) != 2 || fo.SentinelAddrs[1] != "s2:26380" {
		t.Fatalf("%+v", fo)
	}
	one, err := parseSentinelURL("redis-sentinel://s1/m")
	if err != nil || one.SentinelAddrs[0] != "s1:26379" {
		t.Fatalf("a sentinel without a port: %+v, %v", one, err)
	}
	for _, bad := range []string{"redis-sentinel://s1:26379", "redis-sentinel://s1/m/x", "redis-sentinel://s1/a/b/c"} {
		if _, err := parseSentinelURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, _, _, err := NewClient(Conn{URL: "memcache://h"}); err == nil {
		t.Error("an unknown scheme was accepted")
	}
}

// parseSentinelURL is parseSentinel from the text of a URL.
func parseSentinelURL(raw string) (*redis.FailoverOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	return parseSentinel(u)
}
