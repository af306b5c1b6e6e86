# marvelo — the two commands a new user types: `make run` and `make test`.
GO       ?= go
BIN      := bin
PKGS     := ./...
# Packages whose tests must pass under the race detector (the concurrent core). The e2e suite
# runs the binaries as separate processes: instrumenting its harness would find nothing new.
# Python jobs' tests run Debian's python3 when it is there (it sees python3-numpy and
# python3-cbor2, which .ci/run installs): the python3 first on PATH may be another interpreter.
export MARVELO_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3)

RACE_PKGS = ./codec/... ./pipeline/... ./broker/... ./worker/... $(shell $(GO) list ./cmd/... | grep -v /e2e)

.PHONY: all build run test test-race test-short test-chaos test-crash test-security lint bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: build and run the MARVELO demo pipeline (three counters → product → sum of 5 → CSV)
run: build
	$(BIN)/marvelo run testdata/pipelines/demo.json
	@echo "--- demo.csv"
	@cat demo.csv

## test: vet, every test, then the race detector on the concurrent core
test: lint
	$(GO) test -count=1 -timeout 8m $(PKGS)
	$(GO) test -race -count=1 -timeout 8m $(RACE_PKGS)

## test-chaos: the failover, lifecycle and placement-by-offer end-to-end tests, CHAOS_ROUNDS (5) times each, on a
## loaded machine: GOMAXPROCS=1 for every process and a CPU-burning loop this target starts and
## stops. Prints the pass rate of each test. Not part of make test.
CHAOS_ROUNDS ?= 5
CHAOS_TESTS  ?= ^(TestFailover.*|TestFrozenWorkerIsReplacedAndStopsItsStaleJobs|TestDegradedUntilAFittingWorkerJoins|TestFailureInjection|TestExecutableJobAcrossWorkersMovesWithItsDependencies|TestSourceWithoutCheckpointRestartsWithTheResetBit|TestSIGTERM.*|TestDrain.*|TestThawed.*|TestPipelineWithAnOptionalInputFinishes|TestStopOfAStuckJobNamesTheForcedJob|TestDocumentRefusedAtSubmitLeavesNoPipeline|TestBrokerKilled.*|TestLogs.*|TestOffer.*|TestClusterKilledStandbyLosesNothing|TestKilledWorkerOnAnotherServerOfTheClusterIsLostByItsConnectionsClose|TestAChain.*|TestAFrozenChain.*)$$
test-chaos: test-crash
	@log=$$(mktemp); sh -c 'while :; do :; done' & burner=$$!; \
	trap 'kill $$burner 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq $(CHAOS_ROUNDS)); do \
		echo "--- chaos round $$i of $(CHAOS_ROUNDS)"; \
		GOMAXPROCS=1 MARVELO_CHAIN_KILLS=5 $(GO) test -count=1 -timeout 30m -v -run '$(CHAOS_TESTS)' ./cmd/internal/e2e/ >>$$log 2>&1; \
	done; \
	kill $$burner; \
	grep -E '^--- (PASS|FAIL)' $$log | awk '{n[$$3]++; if ($$2=="PASS:") p[$$3]++} END {for (t in n) {printf "%-70s %d/%d\n", t, p[t], n[t]; tp+=p[t]; tn+=n[t]} printf "pass rate: %d/%d\n", tp, tn}' | sort; \
	echo "full log: $$log"; \
	! grep -q '^--- FAIL' $$log

## test-crash: a real power cut of the head node (cmd/internal/crashkit): the brokers' stores on ext4
## on loop devices, the brokers SIGKILLed, each disk copied without the page cache, the brokers
## restarted on the copies; --sync always keeps every acknowledged message, a lazy sync loses them
## (cmd/internal/crashkit/broker_crash_test.go: one broker and three), and a pipeline cut mid-stream resumes
## with its csv sink exact (cmd/internal/e2e/powercut_test.go). Needs root, losetup, mkfs.ext4.
## Not part of make test.
test-crash:
	MARVELO_CRASH_TEST=1 $(GO) test -count=1 -timeout 10m -v -run '^TestPowerCut' ./cmd/internal/crashkit/
	MARVELO_CRASH_TEST=1 $(GO) test -count=1 -timeout 5m -v -run '^TestPowerCutOfTheHeadNode' ./cmd/internal/e2e/

## test-security: the whole end-to-end security suite (cmd/internal/e2e/routes_test.go and
## security_test.go): a raw NATS client holding a worker identity's, a read-only identity's or the
## worker token's credentials tries every route of issue 22, and each test checks the refusal and
## that nothing changed (sink rows, pipeline state, checkpoint, archive bytes, identities).
## make test runs its fast subset. About a minute.
test-security:
	MARVELO_SECURITY=1 $(GO) test -count=1 -timeout 10m -v -run '^(TestSecurity.*|TestSteered.*|TestWorkerIdentityAttacksAreRefused|TestMovedJobsOldWorkerCannotPublishToItsPipe|TestOperatorAndReadOnlyIdentities)$$' ./cmd/internal/e2e/

test-short:
	$(GO) test -count=1 -short $(PKGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

## bench: the standard figures (throughput, CPU, RSS, latency at fixed rates) of marvelo bench with
## their same-run ceilings (plain nats.go relays), a block-size sweep, and the Go benchmarks
## (codecs, checker, batching, the executable adapter against a raw FIFO → cat ceiling)
bench: build
	$(BIN)/marvelo bench --baseline
	$(BIN)/marvelo bench linear --sizes 8,64,1024,16384 --rate 0 --count 100000 --runs 1 --baseline
	$(GO) test -run '^$$' -bench . -benchmem ./codec/... ./pipeline/... ./worker/... ./cmd/internal/benchkit/

## fuzz: a short run of every fuzz target (make test runs their seed corpora)
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./pipeline
	for f in FuzzDecodeBlock FuzzSplitBatch FuzzFrameCBOR FuzzFrameJSON FuzzFrameBytes; do \
		$(GO) test -run '^$$' -fuzz $$f -fuzztime 20s ./codec || exit 1; done

clean:
	rm -rf $(BIN) demo.csv
