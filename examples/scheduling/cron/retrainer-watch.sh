#!/usr/bin/env bash
# Run `retrainer watch --once` from cron: evaluate the triggers in retrainer.yaml once,
# run the cycles that fired, append one JSON document per run to a log.
#
#   retrainer-watch.sh /srv/models/diabetes/retrainer.yaml
#
# Environment (all optional):
#   RETRAINER_BIN   the retrainer executable (default: `retrainer` on PATH; a venv's
#                   bin/retrainer works without activating the venv)
#   RETRAINER_LOG   where JSON results go (default: retrainer-watch.jsonl beside the config)
#   MLFLOW_TRACKING_URI, secrets named with ${VAR} in the config: set them in the crontab
#   or source them here.
#
# Exit codes are retrainer's: 0 done (also when nothing fired or the gate kept the
# champion), 1 a cycle failed (recorded in MLflow; retried with backoff by a later run),
# 2 invalid config or data, or another watcher of this model is still running.
set -euo pipefail

config="${1:?usage: retrainer-watch.sh /path/to/retrainer.yaml}"
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
bin="${RETRAINER_BIN:-retrainer}"
log="${RETRAINER_LOG:-$(dirname "$config")/retrainer-watch.jsonl}"

# cron starts jobs with a bare environment and in $HOME: be explicit about both.
cd "$(dirname "$config")"
export PYTHONUNBUFFERED=1

started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
set +e
result="$("$bin" watch --once --json -c "$config")"
code=$?
set -e
if [ -n "$result" ]; then
    # One line per run: {"started": ..., "exit": ..., "fired": [...], "cycles": [...]}
    printf '%s\n' "$result" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
print(json.dumps({"started": sys.argv[1], "exit": int(sys.argv[2]), **doc}))
' "$started" "$code" >> "$log"
fi
exit "$code"
