#!/usr/bin/env bash
# Deploy the sample app with pilothouse and show it live: 3 replicas behind nginx on :8700.
#   ./dev demo            (needs `./dev serve` running in another terminal)
# Then try: .venv/bin/pilothouse deploy sample --version v2.0.0
#           .venv/bin/pilothouse deploy sample --version v3.0.0-broken   (rolled back)
set -euo pipefail
cd "$(dirname "$0")/.."
PH=".venv/bin/pilothouse"
APP="$(pwd)/examples/sampleapp.py"
PORT=${SAMPLE_PORT:-8700}
SHA=0123456789abcdef0123456789abcdef01234567

$PH env show demo >/dev/null 2>&1 || $PH env create demo --type development >/dev/null
if ! $PH service show sample --env demo >/dev/null 2>&1; then
    $PH service create sample --env demo --replicas 3 \
        --command "$(command -v python3) $APP --port {port}" \
        --router-port "$PORT" --health-path /health --ready-timeout 10 >/dev/null
    for version in v1.0.0 v2.0.0 v3.0.0-broken; do
        $PH artifact register sample --env demo --version "$version" --commit "$SHA" >/dev/null
    done
fi
$PH deploy sample --env demo --version v1.0.0
echo
echo "live on http://127.0.0.1:$PORT/ :"
curl -fsS "http://127.0.0.1:$PORT/"
echo
$PH replicas sample --env demo
