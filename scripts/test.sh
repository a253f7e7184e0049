#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the whole suite (extra args go to pytest).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/scripts/bootstrap.sh"
cd "$root"
exec "$venv/bin/python" -m pytest "$@"
