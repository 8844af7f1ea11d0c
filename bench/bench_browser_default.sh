#!/bin/bash
# The embedded default as a new user gets it (offline whisper, scripted customer, espeak-ng) in
# headless Chromium: `livecoach qa --browser` speaks the English question N times and measures
# end of speech -> reply heard. Needs root for `unshare -n` (a loopback-only network namespace
# keeps Chromium's ICE candidates on 127.0.0.1, see qa/browser.py).
#
#   sudo bench/bench_browser_default.sh [TURNS] [OUT.json]     (prints qa's summary table)
set -euo pipefail
TURNS=${1:-11}
OUT=$(realpath -m "${2:-qa-browser-default.json}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
FIX=$(cd "$ROOT" && "$PY" -c "from qa.fixtures import fixtures_dir; print(fixtures_dir())")
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
unshare -n bash -c "
set -e
ip link set lo up
cd '$ROOT'
LIVECOACH_MEDIA__ICE_LOOPBACK_ONLY=true LIVECOACH_SERVER__DATA_DIR='$DATA' '$PY' -m server serve \
  --host 127.0.0.1 --port 8099 --log-level WARNING > '$DATA/serve.log' 2>&1 &
SERVER=\$!
trap 'kill \$SERVER; wait \$SERVER' EXIT
for _ in \$(seq 90); do curl -sf http://127.0.0.1:8099/healthz > /dev/null && break; sleep 1; done
'$PY' -m server qa --browser --url http://127.0.0.1:8099 --sessions 1 --turns $TURNS \
  --prompt '$FIX/en_question.wav' --scenario skincare-sensitive-en --json '$OUT'
"
