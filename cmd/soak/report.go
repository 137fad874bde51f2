package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// modulePath prefixes the packages named in go test -json output.
const modulePath = "github.com/fanout-go/fanout"

// testRef names a test: its package, relative to the module ("." for the
// root), and its name.
type testRef struct{ pkg, name string }

// guarantee is one row of the reliability page: a claim and what tests it.
type guarantee struct {
	claim string
	tests []testRef
	soak  string // what the soak run shows of it
}

// ownModules are the packages named in guarantees that are Go modules of
// their own, tested from their directory (scripts/reliability.sh adds
// their results to the root's).
var ownModules = map[string]bool{"./natslog": true}

func root(names ...string) []testRef { return refs(".", names...) }

func refs(pkg string, names ...string) []testRef {
	out := make([]testRef, len(names))
	for i, n := range names {
		out[i] = testRef{pkg, n}
	}
	return out
}

var guarantees = []guarantee{
	{
		claim: "**Order.** One gap-free sequence per session; every client sees the same order.",
		tests: append(append(root("TestOrderManyClientsConcurrentPublishers", "TestOrderWithRoundsSplit", "TestTLSConnectionsGetEverything", "TestSharedLogTwoNodes", "TestMemoryLogConformance", "FuzzFrames"), refs("./client", "TestReceiveInOrder", "TestGapReconnects")...),
			refs("./natslog", "TestConformance", "TestClusterConformance", "TestTwoNodes", "TestFollowTailAndSlowFollower")...),
		soak: "reorders and gaps per client",
	},
	{
		claim: "**No silent loss.** A client is replayed what it missed, or told `resumed:false` with the head; a slow consumer is closed (4001), never skipped.",
		tests: append(append(root("TestResumeReplaysMissedEvents", "TestResumeNotPossible", "TestSlowConsumerClosedOthersUnaffected", "TestPausedReaderGetsEverything", "TestWriteIgnoresStaleDeadline", "TestWriteTimesOut", "TestLimitHistoryWindow", "TestShutdownGoingAway", "TestConnCloseFlushesEvents"),
			refs("./client", "TestResumeAfterDrop", "TestResetOnUnknownEpoch", "TestFullBufferResumes")...),
			append(refs("./cmd/soak", "TestRestartResetsClients"),
				refs("./natslog", "TestServerKilledAndRestarted", "TestServerStoreLost", "TestServerStopped", "TestStreamPurged", "TestClusterLeaderKilled", "TestNodeProcessKilled", "TestNodeRestartKeepsEpoch")...)...),
		soak: "loss per client, clients at head, the restart into a new epoch",
	},
	{
		claim: "**Exactly-once effect.** Duplicates are dropped by seq; a retried publish id gets its original seq and is not appended twice.",
		tests: append(append(root("TestPublishAckAndDedup", "TestLimitDedupWindow", "TestRetryOfCommittedPublishBypassesLimits", "TestPublishAnsweredIffCommitted", "TestSharedLogRetryOnOtherNode", "TestSharedLogUnavailable"), refs("./client", "TestPublishRetriedExactlyOnce", "TestDuplicatesDropped", "TestChaos")...),
			refs("./natslog", "TestRetryAfterConflict")...),
		soak: "duplicates per client; publishes appended twice, missing or misplaced",
	},
	{
		claim: "**Acks both ways.** Publishes are acked with their seq; client acks are tracked per connection and identity.",
		tests: append(root("TestClientAcksTracked", "TestPublishAckAndDedup"), refs("./client", "TestPongAndAcks")...),
		soak:  "every client publish acked at the seq it holds in the log",
	},
	{
		claim: "**Bounded resources.** Memory is set by configuration, not by slow clients; no goroutine outlives a connection or `Shutdown`.",
		tests: append(root("TestLeakTenThousandConnections", "TestIdleConnectionsHoldNoWriter", "TestShutdownDeadline", "TestLimitConnections", "TestLimitMessageSize"),
			refs("./client", "TestCloseLeavesNoGoroutines")...),
		soak: "peak heap and goroutines; heap with a connection that never reads",
	},
	{
		claim: "**Liveness.** Heartbeats find dead peers; close codes arrive even after a long idle.",
		tests: append(root("TestHeartbeatTimeout", "TestHeartbeatIntervalKeptWithLongTimeout", "TestCloseFrameSentAfterIdle", "TestNoDataAfterCloseFrame", "TestClientPingAnswered"), refs("./client", "TestDeadServerDetected", "TestQuietServerIsNotDead")...),
		soak:  "heartbeats every 2 s throughout",
	},
	{
		claim: "**State.** A follower gets every committed event once, in order, or is told its position is gone; a snapshot and the events after it are exactly the stream, however publishes race the connect.",
		tests: append(root("TestFollowReplayThenLive", "TestFollowGone", "TestFollowFellBehind", "TestFollowSharedLogAcrossRestart", "TestFollowSharedLogAheadOfTheNode",
			"TestSnapshotSlowWhilePublishing", "TestSnapshotWhoGetsOne", "TestSnapshotAheadOfTheNode", "TestResumeByIdentitySharedLog"),
			refs("./client", "TestSnapshotAtomicityUnderLoad", "TestSnapshotAfterRefusedResume", "TestResumeByIdentity")...),
		soak: "",
	},
	{
		claim: "**Clean errors, no one gets in.** Hostile input gets its documented status, error or close code and harms no one else; 401 without credentials, 403 cross-origin or for a foreign host, `from` set by the server.",
		tests: append(root("TestHostileInputs", "TestHandshakeRefusals", "TestProtocolErrors", "TestPublishFromCannotBeSpoofed", "TestInvalidUTF8Refused",
			"TestPanickingHookContained", "TestLimitPublishRate", "TestLimitPublishRefusals", "TestLimitInboundBudget", "TestSteadyPublishFloodClosed",
			"TestFrameGuard", "TestHostAllowed", "FuzzResumeQuery", "FuzzFrames"),
			append(append(refs("./internal/wire", "TestDecodeClient", "FuzzDecodeClient", "FuzzDecodeClientRoundTrip", "FuzzLines", "FuzzCompact"),
				refs("./client", "FuzzDecodeFrame")...),
				refs("./examples/collab", "TestOnlyOwnHost", "TestServerTimeouts")...)...),
		soak: "",
	},
	{
		claim: "**Several nodes.** Sessions on several processes sharing one log serve one stream: the same events in the same order on every node; a client resumes on any node; a publish is acked only once the log committed it (else `unavailable`, retried with its id); a node restart keeps the epoch; lost log data gives a new epoch and `resumed:false`, never a gap or a reused seq.",
		tests: append(append(append(root("TestMemoryLogConformance", "TestSharedLogTwoNodes", "TestSharedLogRetryOnOtherNode", "TestSharedLogUnavailable", "TestSharedLogResumeOnLaggingNode", "TestSharedLogLaggingNodeRefuses"),
			refs("./client", "TestFailoverToNextURL", "TestFailoverOnDial", "TestPublishRetriedWhileUnavailable")...),
			refs("./redislog", "TestConformance", "TestTwoNodesOneOrder", "TestMoveAndRestart", "TestNodeProcessKilled", "TestFaults")...),
			refs("./examples/collab", "TestTwoServersOnRedis")...),
		soak: "the multi-node soak run: loss, reorders and resets per client across moves and faults; publishes twice, missing or misplaced",
	},
}

// testResult is a test's outcome in go test -json output.
type testResult struct {
	action  string // pass, fail or skip
	elapsed float64
}

// testRun is go test -json output, summarized.
type testRun struct {
	tests    map[testRef]testResult // top-level tests and subtests
	packages map[string]string      // package -> pass or fail
}

func readTests(path string) (*testRun, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	run := &testRun{tests: map[testRef]testResult{}, packages: map[string]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Action, Package, Test string
			Elapsed               float64
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // build output and the like
		}
		if ev.Action != "pass" && ev.Action != "fail" && ev.Action != "skip" {
			continue
		}
		pkg := "." + strings.TrimPrefix(ev.Package, modulePath)
		if pkg != "." {
			pkg = "./" + strings.TrimPrefix(pkg, "./")
		}
		if ev.Test == "" {
			run.packages[pkg] = ev.Action
			continue
		}
		run.tests[testRef{pkg, ev.Test}] = testResult{ev.Action, ev.Elapsed}
	}
	return run, sc.Err()
}

// fuzzResult is one line of scripts/fuzz.sh -o.
type fuzzResult struct {
	pkg, target string
	seconds     float64
	execs       uint64
	corpus      string
	status      string
}

func readFuzz(path string) ([]fuzzResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []fuzzResult
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			continue
		}
		secs, _ := strconv.ParseFloat(f[2], 64)
		execs, _ := strconv.ParseUint(f[3], 10, 64)
		out = append(out, fuzzResult{f[0], f[1], secs, execs, f[4], f[5]})
	}
	return out, nil
}

// writeReport writes the reliability page from a soak run, and from test
// and fuzz results when given.
func writeReport(path string, res *Result, testsPath, fuzzPath, multinodePath string) error {
	var tests *testRun
	var fuzz []fuzzResult
	var err error
	if testsPath != "" {
		if tests, err = readTests(testsPath); err != nil {
			return err
		}
	}
	if fuzzPath != "" {
		if fuzz, err = readFuzz(fuzzPath); err != nil {
			return err
		}
	}
	var multinode string
	if multinodePath != "" {
		b, err := os.ReadFile(multinodePath)
		if err != nil {
			return err
		}
		multinode = string(b)
	}
	var b bytes.Buffer
	renderReport(&b, res, tests, fuzz, multinode, time.Now().UTC())
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func renderReport(w io.Writer, res *Result, tests *testRun, fuzz []fuzzResult, multinode string, now time.Time) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# Reliability\n\n")
	p("<!-- Written by scripts/reliability.sh from a real run; edits by hand are lost. -->\n\n")
	p("The claim: nothing lost, nothing duplicated, nothing out of order, no one gets in where they do not belong. ")
	p("Below, each guarantee with the tests that check it and the command that reruns them, then the figures of the latest run. ")
	p("`scripts/reliability.sh` reruns all of it and rewrites this page (about %v of soak plus 20 s per fuzz target).\n\n", res.Config.Duration)
	p("Latest run: %s, %s %s/%s, %d CPUs. Verdict: **%s**.\n\n", now.Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), verdict(res, tests, fuzz, multinode))

	p("## Guarantees\n\n| guarantee | tests (latest result) | rerun | soak figure |\n|---|---|---|---|\n")
	for _, g := range guarantees {
		p("| %s | %s | %s | %s |\n", g.claim, testList(g.tests, tests), rerun(g.tests), g.soak)
	}
	p("\nThe soak run below checks guarantees 1–5 at once: `go run ./cmd/soak` (a shorter one runs in CI as `TestSoakShort`: `go test -race -run TestSoakShort ./cmd/soak`).\n\n")

	p("## Latest soak run\n\n`go run ./cmd/soak -clients %d -duration %v`\n\n| figure | value |\n|---|---|\n", res.Config.Clients, res.Config.Duration)
	for _, f := range res.figures() {
		p("| %s | %s |\n", f.name, strings.ReplaceAll(f.value, "|", "/"))
	}
	p("\nLoss, duplicates and reorders are counted per client, event by event, against the one sequence; a stream's content is checked against an observer's (a client no fault touches) through a sum of per-event hashes. ")
	p("Exactly-once publishing is checked against the observer's log: each acked publish appears once, at the seq its ack gave. ")
	p("Latencies are from publish to handler, with server, clients and harness sharing the machine's CPUs: they show the effect of a stalled connection, not the server's speed on its own.\n\n")

	p("## Latest multi-node soak run\n\n")
	if multinode == "" {
		p("Not run (scripts/reliability.sh runs it with Redis's server installed).\n\n")
	} else {
		p("%s\n", strings.TrimSpace(multinode))
		p("\nThe nodes are sessions on one log (`redislog`), each behind its own HTTP server, in one process with the clients; Redis is a redis-server of the run's own. Each client is checked event by event across its moves and the faults (seq order, no gap, no reset, the same content as the log's through a sum of per-event hashes); each acked publish must be in the log once, at the seq its ack gave.\n\n")
	}

	p("## Hostile input and fuzzing\n\n")
	if tests != nil {
		hostile, hostileOK := countSubtests(tests, testRef{".", "TestHostileInputs"})
		limits, limitsOK := 0, 0
		for ref, r := range tests.tests {
			if ref.pkg == "." && strings.HasPrefix(ref.name, "TestLimit") && strings.Contains(ref.name, "/") {
				limits++
				if r.action == "pass" {
					limitsOK++
				}
			}
		}
		p("- Hostile inputs tried (`TestHostileInputs`, one session, a bystander checked after each): **%d**, %d as expected.\n", hostile, hostileOK)
		p("- Limits at, just below and just above (`TestLimit*`): %d cases, %d as expected.\n", limits, limitsOK)
	} else {
		p("- (No test results given: run `scripts/reliability.sh`.)\n")
	}
	if len(fuzz) > 0 {
		var secs float64
		var execs uint64
		p("- Fuzzing, each target for a bounded time (`scripts/fuzz.sh`; `FUZZTIME=1m scripts/fuzz.sh` for longer); any crash is written to the target's `testdata/fuzz/` and rerun by every `go test` from then on:\n\n")
		p("| target | package | time | executions | new interesting inputs | result |\n|---|---|---|---|---|---|\n")
		for _, f := range fuzz {
			p("| `%s` | `%s` | %.0f s | %d | %s | %s |\n", f.target, f.pkg, f.seconds, f.execs, f.corpus, f.status)
			secs += f.seconds
			execs += f.execs
		}
		p("| **all** | | %.0f s | %d | | |\n", secs, execs)
	} else {
		p("- (No fuzzing results given: run `scripts/fuzz.sh -o FILE`.)\n")
	}

	if tests != nil {
		p("\n## Test suite\n\n`go test -race -count=1 ./...`, at the root and in natslog: ")
		var pass, fail, skip int
		var skipped []string
		for ref, r := range tests.tests {
			if strings.Contains(ref.name, "/") {
				continue
			}
			switch r.action {
			case "pass":
				pass++
			case "fail":
				fail++
			case "skip":
				skip++
				skipped = append(skipped, fmt.Sprintf("`%s` (%s)", ref.name, ref.pkg))
			}
		}
		sort.Strings(skipped)
		p("%d tests passed, %d failed, %d skipped", pass, fail, skip)
		if len(skipped) > 0 {
			p(" (skipped: %s)", strings.Join(skipped, ", "))
		}
		p(".\n")
	}
}

func verdict(res *Result, tests *testRun, fuzz []fuzzResult, multinode string) string {
	if !res.OK() {
		return "FAIL (soak)"
	}
	if strings.Contains(multinode, "| verdict | FAIL") {
		return "FAIL (multi-node soak)"
	}
	if tests != nil {
		for _, r := range tests.packages {
			if r == "fail" {
				return "FAIL (tests)"
			}
		}
		for _, g := range guarantees {
			for _, t := range g.tests {
				if r, ok := tests.tests[t]; !ok || r.action != "pass" {
					return "FAIL (a guarantee's test did not pass: " + t.name + ")"
				}
			}
		}
	}
	for _, f := range fuzz {
		if f.status != "ok" {
			return "FAIL (fuzzing " + f.target + ")"
		}
	}
	return "PASS"
}

func testList(refs []testRef, tests *testRun) string {
	parts := make([]string, len(refs))
	for i, t := range refs {
		s := "`" + t.name + "`"
		if t.pkg != "." {
			s += " (" + strings.TrimPrefix(t.pkg, "./") + ")"
		}
		if tests != nil {
			r, ok := tests.tests[t]
			switch {
			case !ok:
				s += " **not run**"
			case r.action == "pass":
				s += fmt.Sprintf(" ✓ %.1f s", r.elapsed)
			default:
				s += " **" + r.action + "**"
			}
		}
		parts[i] = s
	}
	return strings.Join(parts, ", ")
}

// submodules are the directories with a go.mod of their own: their tests
// run from there.
var submodules = []string{"./redislog", "./natslog", "./metrics", "./examples/collab", "./bench"}

// rerun is the command that reruns refs, one go test per package.
func rerun(refs []testRef) string {
	var pkgs []string
	byPkg := map[string][]string{}
	for _, t := range refs {
		if _, ok := byPkg[t.pkg]; !ok {
			pkgs = append(pkgs, t.pkg)
		}
		byPkg[t.pkg] = append(byPkg[t.pkg], t.name)
	}
	cmds := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		if ownModules[pkg] || slices.Contains(submodules, pkg) { // tested from its own directory
			cmds[i] = fmt.Sprintf("`(cd %s && go test -race -run '^(%s)$' .)`", strings.TrimPrefix(pkg, "./"), strings.Join(byPkg[pkg], "\\|"))
			continue
		}
		cmds[i] = fmt.Sprintf("`go test -race -run '^(%s)$' %s`", strings.Join(byPkg[pkg], "\\|"), pkg)
	}
	return strings.Join(cmds, "<br>")
}

func countSubtests(tests *testRun, parent testRef) (total, passed int) {
	for ref, r := range tests.tests {
		if ref.pkg == parent.pkg && strings.HasPrefix(ref.name, parent.name+"/") {
			total++
			if r.action == "pass" {
				passed++
			}
		}
	}
	return total, passed
}
