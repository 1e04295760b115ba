#!/usr/bin/env bash
# `npm test`: installs what the suite needs on a Debian machine (as root),
# builds, and runs every test. Ends with the line `N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash cmd/install-deps.sh

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# An existing checkout skips npm ci: rebuild the native parts (twill-dataplane,
# the netlink event socket addon, twill-wg-run) when their sources changed.
if [ ! -f build/Release/twill-dataplane ] || [ ! -f build/Release/twill_netlink_events.node ] \
  || [ ! -f build/Release/twill-wg-run ] \
  || [ -n "$(find binding.gyp backends/userspace/native -newer build/Release/twill-dataplane -print -quit)" ] \
  || [ -n "$(find binding.gyp backends/wireguard/native -newer build/Release/twill-wg-run -print -quit)" ] \
  || [ -n "$(find binding.gyp lib/netlink/native -newer build/Release/twill_netlink_events.node -print -quit)" ]; then
  npm run build:native --silent
fi
npm run build --silent

exec node_modules/.bin/mocha "$@"
