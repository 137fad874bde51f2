#!/usr/bin/env bash
# CI for the browser client package: install from the lockfile, build,
# fail when the committed copy in examples/collab/static differs from the
# build, run the Node tests (they start the Go example server) and check
# the size budget.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npm ci --no-audit --no-fund
npm run build
if ! git diff --quiet -- ../examples/collab/static/fanout-client.js; then
	echo "examples/collab/static/fanout-client.js differs from the build of js/: run 'npm run build' in js/ and commit it"
	git diff --stat -- ../examples/collab/static/fanout-client.js
	exit 1
fi
npm test
npm run size
