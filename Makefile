# BandSync. `make test` is THE test command (CI runs it through .ci/run).

GO       ?= go
FUZZTIME ?= 60s

.PHONY: all run build test e2e fuzz bench soak side-by-side loadtest floor redis-stall multi-instance precision mass-drop lint chaos clean release image stack stack-down deploy-test

all: build

## run: start the server from source (configuration from the environment / .env)
run:
	$(GO) run ./cmd/bandsync

## build: build the binaries into bin/
build:
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

## test: gofmt + vet, go test -race, a short fuzz smoke, and the Node e2e suite
test:
	bash scripts/test.sh

## e2e: only the Node end-to-end suite (test/e2e)
e2e:
	bash scripts/test.sh e2e

## fuzz: longer fuzzing of every target in scripts/fuzz-targets.txt (FUZZTIME=60s)
fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/test.sh fuzz

## chaos: the long fault scenarios: repeated Cluster and Sentinel failovers during play (CHAOS_ROUNDS=6), on private redis-servers; then the network faults at full length (internal/netfault, as root: a 10 s partition from Redis, venue Wi-Fi, a 20 s link cut)
chaos:
	CHAOS_ROUNDS=$(or $(CHAOS_ROUNDS),6) $(GO) test -race -count=1 -tags chaos -run '^TestChaos' -timeout 20m -v ./internal/redisstore/
	cd test/e2e && npm ci --silent --no-audit --no-fund
	CI=true $(GO) test -count=1 -tags chaos -timeout 20m -v ./internal/netfault/

## soak: 300 socket.io-client@4 devices, seeks and reconnect churn for 10 minutes against a fresh build; RSS, goroutines and recoveries must stay flat (MINUTES=10 CLIENTS=300; RT=1 runs it at SCHED_FIFO, as root, so a busy machine's other work does not starve it)
soak:
	@mkdir -p bin
	$(GO) build -o bin/bandsync ./cmd/bandsync
	cd test/e2e && npm ci --silent && BANDSYNC_BIN=$(CURDIR)/bin/bandsync $(if $(RT),chrt -f 10) node soak.mjs --clients $(or $(CLIENTS),300) --minutes $(or $(MINUTES),10)

## side-by-side: fanout at 100 ms ticks (SHAPES="50x8 625x8", MODES="memory redis") of BEFORE (a commit) and this tree, alternately, one series; RT=1 runs memory mode at 50x8 at SCHED_FIFO (docs/benchmarks.md says why not the rest)
side-by-side:
	BEFORE=$(or $(BEFORE),01f532a) bash scripts/side-by-side.sh

## bench: Go benchmarks
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

## loadtest: bandsync-bench fanout 50x8 with the relay baseline against a running server (URL=http://127.0.0.1:3001); docs/benchmarks.md has every scenario
loadtest:
	$(GO) run ./cmd/bandsync-bench -url $(or $(URL),http://127.0.0.1:3001) -scenario fanout -sessions 50 -members 8 -baseline

## redis-stall: fanout S x M (50x8) in Redis mode, undisturbed and with Redis answering DELAY (250ms) late for FOR (4s); needs redis-server
redis-stall:
	S=$(or $(S),50) M=$(or $(M),8) DELAY=$(or $(DELAY),250ms) FOR=$(or $(FOR),4s) bash scripts/redis-stall.sh

## multi-instance: a private redis-server, N=3 instances and fanout S x M (625x8) spread over them at TICK=100 ms ticks, beside one instance and the relay floor; CLIENT_TICK=0 for clients that take no ticks; docs/benchmarks.md
multi-instance:
	bash scripts/multi-instance.sh

## mass-drop: issue 11's figure: N=1000 phones (Redis mode, sessions of 8, playing) on one network-fault lab host whose link goes down at once, 20 watchers timing the server's pings and ticks; as root; BANDSYNC_BIN=path measures another server build; docs/benchmarks.md
mass-drop:
	@uptime
	MASS_DROP_CLIENTS=$(or $(N),1000) $(GO) test -count=1 -tags 'netfault massdrop' -run '^TestMassDrop$$' -timeout 5m -v ./internal/netfault/
	@uptime

## floor: what this machine's loopback TCP can carry for a shape, no server needed (S=625 M=8 sessions x members)
floor:
	$(GO) run ./cmd/bandsync-bench -scenario floor -sessions $(or $(S),625) -members $(or $(M),8)

## precision: the full sync-precision matrix (clean, N(50,30), asymmetric, stall, link change; 60 s each, ~7 min) against a fresh server; PRECISION_BROWSER=1 puts the jittery device in Chromium; docs/sync.md
precision:
	bash scripts/test.sh precision

## release: static binaries (CGO_ENABLED=0, -trimpath, version stamped) for linux/amd64 and linux/arm64 in dist/, with SHA256SUMS
release:
	bash scripts/release.sh

## image: container images from dist/ (bandsync:local, bandsync-lb:local, bandsync-redis:local); nothing is pulled
image:
	bash scripts/image.sh

## stack: Redis, three instances and a load balancer on 127.0.0.1:8080 (BANDSYNC_PORT), see docs/deploy.md
stack: release image
	docker-compose -p bandsync -f deploy/compose/docker-compose.yml up -d

stack-down:
	docker-compose -p bandsync -f deploy/compose/docker-compose.yml down

## deploy-test: the deployment checks of make test only (release, manifests, alert rules, image, compose stack)
deploy-test:
	bash scripts/test.sh deploy

## lint: gofmt -l (must print nothing), go vet, go mod tidy -diff, staticcheck
lint:
	bash scripts/test.sh lint

clean:
	rm -rf bin dist test/e2e/artifacts
