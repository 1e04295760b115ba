#!/usr/bin/env bash
# `npm run lab`: from a fresh clone on Debian, as root — install what is
# missing, build, and start a local twill cluster (default 3 nodes, vxlan).
# Extra arguments go to `twill lab up` (e.g. npm run lab -- --nodes 5 --backend host-gw).
set -euo pipefail
cd "$(dirname "$0")/.."

bash cmd/install-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -f dist/cmd/twill.js ] || [ -n "$(find cmd lib backends -name '*.ts' -newer dist/cmd/twill.js -print -quit)" ]; then
  npm run build --silent
fi
exec node dist/cmd/twill.js lab up "$@"
