#!/usr/bin/env bash
# Copies the dashboard's front-end files from npm (package-lock.json pins them) into the package,
# with their licenses, so that running pilothouse needs no Node.js:
#   cd frontend && npm ci && ./build.sh
# axe-core is for the browser tests only: it goes to tests/web/vendor, not into the package.
set -euo pipefail
cd "$(dirname "$0")"
out=../src/pilothouse/web/static/vendor
tests=../tests/web/vendor
mkdir -p "$out" "$tests"
cp node_modules/htmx.org/dist/htmx.min.js "$out/htmx.min.js"
cp node_modules/htmx.org/LICENSE "$out/htmx.LICENSE"
cp node_modules/htmx-ext-sse/dist/sse.min.js "$out/htmx-sse.min.js"
cp node_modules/htmx-ext-sse/LICENSE "$out/htmx-sse.LICENSE"
cp node_modules/uplot/dist/uPlot.iife.min.js "$out/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$out/uPlot.min.css"
cp node_modules/uplot/LICENSE "$out/uPlot.LICENSE"
cp node_modules/axe-core/axe.min.js "$tests/axe.min.js"
cp node_modules/axe-core/LICENSE "$tests/axe.LICENSE"
# Versions, for the docs and the about line of the dashboard.
node -e 'for (const p of ["htmx.org","htmx-ext-sse","uplot","axe-core"]) console.log(p, require("./node_modules/"+p+"/package.json").version)' > "$out/VERSIONS.txt"
