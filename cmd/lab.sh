#!/usr/bin/env bash
# `npm run lab`: from a fresh clone on Debian, as root — install what is
# missing, build, and start a local twill cluster (default 3 nodes, vxlan).
# Extra arguments go to `twill lab up` (e.g. npm run lab -- --nodes 5 --backend host-gw).
# Says in a few lines what it installs and builds; npm's and the compiler's
# full output go to lab-build.log, printed only when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$PWD/lab-build.log
: > "$log"

step() {  # step "what" command...: one line, the output to the log, the log on failure
  local what=$1 start=$SECONDS; shift
  printf 'lab: %s … ' "$what"
  if "$@" >>"$log" 2>&1; then
    echo "done ($((SECONDS - start)) s)"
  else
    echo "FAILED"
    echo "---- $log ----" >&2; cat "$log" >&2; echo "---- end of $log ----" >&2
    exit 1
  fi
}

# Only what the lab needs: no browser, no image builder (those are the test suite's).
deps=$(bash cmd/install-deps.sh lab) || exit 1
echo "lab: system packages: ${deps#install-deps: }" | sed 's/: $/: all present (etcd, iproute2, nft, compiler)/'
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci: node modules and the native engine (C), log in $log" npm ci --no-audit --no-fund
elif [ ! -f build/Release/twill-dataplane ] || [ ! -f build/Release/twill_netlink_events.node ] \
  || [ -n "$(find binding.gyp backends/userspace/native lib/netlink/native -newer build/Release/twill-dataplane -print -quit)" ]; then
  step "building the native parts (C), log in $log" npm run build:native --silent
fi
if [ ! -f dist/cmd/twill.js ] || [ -n "$(find cmd lib backends -name '*.ts' -newer dist/cmd/twill.js -print -quit)" ]; then
  step "compiling TypeScript into dist/" npm run build --silent
fi
exec node dist/cmd/twill.js lab up "$@"
