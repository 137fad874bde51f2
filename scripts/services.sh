#!/usr/bin/env bash
# Starts the services the backend modules' tests use, on their usual
# loopback ports, unless something answers there already: Redis on
# 127.0.0.1:6379 and NATS with JetStream on 127.0.0.1:4222. Installs the
# servers with apt when they are missing. Fault tests start servers of their
# own on free ports; these are the shared ones.
#
# natslog's cluster tests need nats-server 2.9.21 or later (earlier ones let
# two appends through one expected last subject sequence on a replicated
# stream). When the installed one is older, a pinned release is built from
# its Go module into $state/bin, where scripts/test.sh points the tests at it
# (NATS_SERVER_BIN).
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_up() {
	for _ in $(seq 1 100); do
		up "$1" && return 0
		sleep 0.1
	done
	echo "services: nothing answers on port $1" >&2
	return 1
}

need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ -z "${apt_updated:-}" ]; then apt-get update -qq; apt_updated=1; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

state=${TMPDIR:-/tmp}/fanout-services
mkdir -p "$state"

if ! up 6379; then
	need redis-server redis-server
	redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no \
		--dir "$state" --logfile "$state/redis.log"
	wait_up 6379
fi

if ! up 4222; then
	need nats-server nats-server
	nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$state/nats" >"$state/nats.log" 2>&1 &
	wait_up 4222
fi

nats_pinned=v2.15.2
installed=$(nats-server --version 2>/dev/null | sed -E 's/.*v([0-9.]+).*/\1/')
if [ "$(printf '%s\n' 2.9.21 "$installed" | sort -V | head -n 1)" != 2.9.21 ] &&
	[ "$("$state/bin/nats-server" --version 2>/dev/null)" != "nats-server: $nats_pinned" ]; then
	echo "services: nats-server $installed is older than 2.9.21; building $nats_pinned into $state/bin" >&2
	GOBIN="$state/bin" go install "github.com/nats-io/nats-server/v2@$nats_pinned"
fi
