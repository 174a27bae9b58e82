// Package netfault puts BandSync's parts on hosts of their own — Linux
// network namespaces, each with a veth pair to one bridge — so that tests
// can break real links between them: a partition (iptables DROP between
// two hosts), random packet loss (iptables -m statistic), a link set down.
// The kernel the suite runs on has no netem qdisc; delay and jitter come
// from Toxiproxy on the path (internal/precision), in the test process,
// which reaches every host through the lab's uplink.
//
// A Lab needs root, iproute2 and iptables. Every name it creates carries
// the test process's pid and a /24 it holds a lock on, so parallel runs do
// not collide, and everything is removed at the end of the test, failed
// or not (iptables rules live in the hosts' namespaces and go with them).
// A run that was killed before it could clean up is swept by the next
// one. The scenarios themselves are in the package's tests.
package netfault
