#!/usr/bin/env bash
# Builds the Python example policy (app.py) into a sluice policy component.
#
#   tests/policies/python/build.sh [OUT]     # default: target/python-policy/policy.wasm
#
# Uses componentize-py from PyPI at the pinned version (installed with pip if the
# one on PATH is missing or another version). Does nothing when OUT is newer than
# every input (the .py files here, the WIT contract and this script).
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(cd "$here/../../.." && pwd)"
# The example implements sluice:policy@0.3.0, the current contract.
wit="$workspace/wit/policy.wit"
out="${1:-$workspace/target/python-policy/policy.wasm}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

if [ -f "$out" ] && [ -z "$(find "$here" "$wit" -newer "$out" \( -name '*.py' -o -name '*.wit' -o -name build.sh \) -print -quit)" ]; then
  echo "python policy: $out is up to date"
  exit 0
fi

cpy=componentize-py
if [ "$("$cpy" --version 2>/dev/null || true)" != "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
  cpy="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/componentize-py"
  if [ "$("$cpy" --version 2>/dev/null || true)" != "componentize-py $COMPONENTIZE_PY_VERSION" ]; then
    echo "build.sh: componentize-py $COMPONENTIZE_PY_VERSION installed but not found at $cpy" >&2
    exit 1
  fi
fi

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
# componentize-py writes __pycache__ next to the sources it imports: build from a copy.
stage="$(mktemp -d)"
trap 'rm -rf "$tmp" "$stage"' EXIT
cp "$here"/*.py "$stage"/
# -p: where `app` is found; bindings for the world are generated on the fly.
(cd "$stage" && "$cpy" -d "$wit" -w policy componentize app -p "$stage" -o "$tmp")
mv -f "$tmp" "$out"
echo "python policy: built $out ($(stat -c %s "$out") bytes)"
