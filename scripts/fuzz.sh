#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: FUZZTIME each (default 20s).
#
#   scripts/fuzz.sh                  # all targets, 20 s each
#   FUZZTIME=2m scripts/fuzz.sh      # longer
#   scripts/fuzz.sh -o fuzz.tsv      # also write the results, tab-separated,
#                                    # for go run ./cmd/soak -report -fuzz
#
# Each target first reruns its committed corpus (testdata/fuzz/<target>/).
# An input that fails is written there by go test; the script then fails
# and names the file: commit it, so that every later `go test` reruns it as
# a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

out=""
while getopts "o:" opt; do
	case $opt in
	o) out=$OPTARG ;;
	*) echo "usage: $0 [-o results.tsv]" >&2; exit 2 ;;
	esac
done
fuzztime=${FUZZTIME:-20s}

# package and target, one pair a line: every decoder of untrusted input.
targets="
./internal/wire FuzzDecodeClient
./internal/wire FuzzDecodeClientRoundTrip
./internal/wire FuzzLines
./internal/wire FuzzDecodeEvent
./internal/wire FuzzCompact
./internal/wire FuzzAppendString
. FuzzResumeQuery
. FuzzFrames
./client FuzzDecodeFrame
"

[ -n "$out" ] && : >"$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
while read -r pkg target; do
	[ -z "$pkg" ] && continue
	corpus="$pkg/testdata/fuzz/$target"
	before=$( (find "$corpus" -type f 2>/dev/null || true) | wc -l)
	printf '== %s %s (%s)\n' "$pkg" "$target" "$fuzztime"
	status=ok
	if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1; then
		status=FAIL
	fi
	# On a starved machine the fuzzing engine itself can give up on its
	# workers ("context deadline exceeded") without any failing input: that
	# run found nothing and checked little, so it is run once more, and
	# only a failure then (or any failing input) counts.
	now=$( (find "$corpus" -type f 2>/dev/null || true) | wc -l)
	if [ "$status" = FAIL ] && [ "$now" -eq "$before" ] && grep -q 'context deadline exceeded' "$log"; then
		echo "   the fuzzing engine timed out with no failing input; running it again"
		status=ok
		if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1; then
			status=FAIL
		fi
	fi
	[ "$status" = FAIL ] && failed=1
	last=$(grep -E '^fuzz: elapsed: [0-9]+s, execs: [0-9]+' "$log" | tail -n 1 || true)
	secs=$(sed -E 's/^fuzz: elapsed: ([0-9]+)s.*/\1/' <<<"$last")
	execs=$(sed -E 's/.*execs: ([0-9]+).*/\1/' <<<"$last")
	interesting=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	echo "   ${execs:-0} executions in ${secs:-0} s, ${interesting:-0} new interesting inputs: $status"
	if [ "$status" != ok ]; then
		tail -n 30 "$log"
		after=$( (find "$corpus" -type f 2>/dev/null || true) | wc -l)
		if [ "$after" -gt "$before" ]; then
			echo "   the failing input is in $corpus: commit it as a regression test"
		fi
	fi
	if [ -n "$out" ]; then
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$pkg" "$target" "${secs:-0}" "${execs:-0}" "${interesting:-0}" "$status" >>"$out"
	fi
done <<<"$targets"
exit $failed
