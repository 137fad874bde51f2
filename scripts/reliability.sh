#!/usr/bin/env bash
# Regenerates RELIABILITY.md from a real run:
#   1. the whole test suite under the race detector (go test -race -json),
#      in the library's module and in natslog, redislog and examples/collab,
#      with the services they need (scripts/services.sh),
#   2. every fuzz target for a bounded time (scripts/fuzz.sh; FUZZTIME, 20s),
#   3. the multi-node soak (redislog's cmd/nodesoak: 3 nodes, 1,000 clients,
#      60 s; SOAK_CLIENTS, SOAK_DURATION),
#   4. the soak command, 1,000 clients for 60 s (SOAK_CLIENTS, SOAK_DURATION),
#      which checks its own run and writes the page from all of them.
# It exits non-zero if anything failed; the page then says what.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

scripts/services.sh
echo "== go test -race -count=1 ./... (., redislog, examples/collab)"
go test -race -count=1 -json ./... >"$tmp/tests.json" || status=1
for m in redislog examples/collab; do
	(cd "$m" && go test -race -count=1 -json ./...) >>"$tmp/tests.json" || status=1
done
grep -E '"Action":"(pass|fail|skip)","Package":"[^"]*","Elapsed"' "$tmp/tests.json" |
	sed -E 's/.*"Action":"([a-z]+)","Package":"([^"]*)","Elapsed":([0-9.]+).*/\1\t\2\t\3s/'

echo "== natslog: go test -race -count=1 ./... (on the NATS scripts/services.sh starts)"
scripts/services.sh || status=1
if [ -x "${TMPDIR:-/tmp}/fanout-services/bin/nats-server" ]; then
	export NATS_SERVER_BIN="${TMPDIR:-/tmp}/fanout-services/bin/nats-server"
fi
(cd natslog && go test -race -count=1 -json ./...) >"$tmp/natslog.json" || status=1
grep -E '"Action":"(pass|fail|skip)","Package":"[^"]*","Elapsed"' "$tmp/natslog.json" |
	sed -E 's/.*"Action":"([a-z]+)","Package":"([^"]*)","Elapsed":([0-9.]+).*/\1\t\2\t\3s/'
cat "$tmp/natslog.json" >>"$tmp/tests.json"

echo "== scripts/fuzz.sh"
scripts/fuzz.sh -o "$tmp/fuzz.tsv" || status=1

echo "== go run ./cmd/nodesoak (redislog)"
(cd redislog && go run ./cmd/nodesoak -nodes 3 -clients "${SOAK_CLIENTS:-1000}" -duration "${SOAK_DURATION:-60s}" \
	-o "$tmp/nodesoak.md") || status=1

echo "== go run ./cmd/soak"
go run ./cmd/soak -clients "${SOAK_CLIENTS:-1000}" -duration "${SOAK_DURATION:-60s}" \
	-report RELIABILITY.md -tests "$tmp/tests.json" -fuzz "$tmp/fuzz.tsv" -multinode "$tmp/nodesoak.md" || status=1
exit $status
