#!/usr/bin/env bash
# Builds the JavaScript example policy (app.js) into a sluice policy component.
#
#   tests/policies/js/build.sh [OUT]     # default: target/js-policy/policy.wasm
#
# Uses ComponentizeJS from the npm registry at the pinned version, installed
# (with npm, Node 18 or later) under target/js-policy/tools when it is not there
# yet. Does nothing when OUT is newer than every input (app.js, the WIT contract
# and this script).
set -euo pipefail

COMPONENTIZE_JS_VERSION=0.23.0

here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(cd "$here/../../.." && pwd)"
# The example implements sluice:policy@0.3.0, the current contract.
wit="$workspace/wit/policy.wit"
out="${1:-$workspace/target/js-policy/policy.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

if [ -f "$out" ] && [ -z "$(find "$here" "$wit" -newer "$out" \( -name '*.js' -o -name '*.wit' -o -name build.sh \) -print -quit)" ]; then
  echo "js policy: $out is up to date"
  exit 0
fi

tools="$workspace/target/js-policy/tools"
cjs="$tools/node_modules/.bin/componentize-js"
if [ "$("$cjs" --version 2>/dev/null || true)" != "$COMPONENTIZE_JS_VERSION" ]; then
  mkdir -p "$tools"
  [ -f "$tools/package.json" ] || echo '{"private": true}' >"$tools/package.json"
  npm install --prefix "$tools" --no-audit --no-fund --silent \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
  if [ "$("$cjs" --version 2>/dev/null || true)" != "$COMPONENTIZE_JS_VERSION" ]; then
    echo "build.sh: componentize-js $COMPONENTIZE_JS_VERSION installed but not found at $cjs" >&2
    exit 1
  fi
fi

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# --disable http fetch-event: without them the component imports wasi:http (the
# JS runtime's fetch and its incoming-handler world), which no sluice host
# provides; the policy would be refused at load.
"$cjs" "$here/app.js" --wit "$wit" --world-name policy --disable http fetch-event -o "$tmp"
mv -f "$tmp" "$out"
echo "js policy: built $out ($(stat -c %s "$out") bytes)"
