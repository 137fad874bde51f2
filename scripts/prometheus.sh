#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's prometheus package) unless both
# are on the PATH. The metrics tests lint the exposition with
# `promtool check metrics`, and examples/collab's end-to-end test starts a
# real Prometheus that scrapes the example; with CI set, neither may skip.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
	exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a Prometheus service of its own where an init system
# runs; the tests start theirs on free ports and need none.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
	systemctl stop prometheus || true
fi
