#!/usr/bin/env bash
# Deploy the sample app with pilothouse and show it live: 3 replicas behind nginx on :8700.
#   ./dev demo            (needs `./dev serve` running in another terminal)
# Then try: .venv/bin/pilothouse deploy sample --version v2.0.0
#           .venv/bin/pilothouse deploy sample --version v3.0.0-broken   (rolled back)
set -euo pipefail
cd "$(dirname "$0")/.."
PH=".venv/bin/pilothouse"
APP="$(pwd)/examples/sampleapp.py"
PYTHON="$(command -v python3)"
# As root, pilothouse runs replicas as an unprivileged user (pilothouse-run; docs/security.md),
# which cannot read a checkout or a Python under /root: give it a copy it can read and the
# system's Python (the sample app needs only the standard library).
RUN_AS=${PILOTHOUSE_RUN_AS:-pilothouse-run}
if [ "$(id -u)" -eq 0 ] && id "$RUN_AS" >/dev/null 2>&1 \
    && ! runuser -u "$RUN_AS" -- test -r "$APP" -a -x "$PYTHON" 2>/dev/null; then
    DEMO_DIR=/var/lib/pilothouse-demo
    install -d -m 0755 "$DEMO_DIR"
    install -m 0644 examples/sampleapp.py "$DEMO_DIR/sampleapp.py"
    APP="$DEMO_DIR/sampleapp.py"
    PYTHON=/usr/bin/python3
    echo "replicas run as $RUN_AS: the sample app is copied to $APP, run by $PYTHON"
fi
PORT=${SAMPLE_PORT:-8700}
SHA=0123456789abcdef0123456789abcdef01234567

$PH env show demo >/dev/null 2>&1 || $PH env create demo --type development >/dev/null
if ! $PH service show sample --env demo >/dev/null 2>&1; then
    $PH service create sample --env demo --replicas 3 \
        --command "$PYTHON $APP --port {port}" \
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
