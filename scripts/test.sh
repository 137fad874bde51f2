#!/usr/bin/env bash
# The project's one test command: vet and test every Go module in the
# repository under the race detector, after starting the services the
# backend modules' tests need (scripts/services.sh) and the Prometheus the
# metrics tests use (scripts/prometheus.sh).
#
#   scripts/test.sh            # every module
#   scripts/test.sh redislog   # only the modules named
set -euo pipefail
cd "$(dirname "$0")/.."

mods=("$@")
if [ ${#mods[@]} -eq 0 ]; then
	while IFS= read -r m; do mods+=("$(dirname "$m")"); done < <(find . -name go.mod -not -path './node_modules/*' -not -path '*/node_modules/*' | sort)
fi

scripts/services.sh
scripts/prometheus.sh
# The nats-server services.sh built, when the installed one is too old.
if [ -x "${TMPDIR:-/tmp}/fanout-services/bin/nats-server" ]; then
	export NATS_SERVER_BIN="${TMPDIR:-/tmp}/fanout-services/bin/nats-server"
fi

status=0
for m in "${mods[@]}"; do
	printf '\n== module %s\n' "$m"
	if ! (cd "$m" && go vet ./... && go test -race ./...); then
		status=1
	fi
done
exit $status
