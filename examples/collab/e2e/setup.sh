#!/usr/bin/env bash
# Installs what the collab browser test needs: Debian's Chromium at
# /usr/bin/chromium and the playwright-core pinned in package-lock.json.
# Safe to run again. playwright-core drives the system Chromium; it never
# downloads a browser.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ "${#need_apt[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update
	$sudo apt-get install -y "${need_apt[@]}"
fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund
