#!/usr/bin/env bash
# The main job: sets up .venv if needed, then runs scripts/benchmark.py (args are passed through).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/bootstrap.sh"
cd "$root"
exec "$venv/bin/python" scripts/benchmark.py "$@"
