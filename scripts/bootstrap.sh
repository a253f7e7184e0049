#!/usr/bin/env bash
# Sets up the project's virtual environment from nothing (sourced by test.sh and benchmark.sh).
# Creates .venv when missing and installs tune-ext with its test extras. torch is handled first so
# that a CPU-only machine never pulls CUDA wheels: a torch already installed (in the venv, or in the
# interpreter the venv is made from) is kept and pinned; otherwise a GPU machine gets the normal
# wheel and a CPU machine gets torch==2.13.0 (override with TUNE_EXT_TORCH="torch==X").
# Re-installs only when pyproject.toml changes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${TUNE_EXT_VENV:-$root/.venv}"
base_python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  if "$base_python" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: creating $venv (reusing the torch installed in $base_python)"
    "$base_python" -m venv --system-site-packages "$venv"
  else
    echo "bootstrap: creating $venv"
    "$base_python" -m venv "$venv"
  fi
fi
py="$venv/bin/python"
stamp="$venv/.tune-ext-installed"
want=$(sha1sum "$root/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if ! "$py" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      torch_spec="${TUNE_EXT_TORCH:-torch}"
    else
      torch_spec="${TUNE_EXT_TORCH:-torch==2.13.0}"
    fi
    echo "bootstrap: installing $torch_spec (a few minutes the first time; pip's progress follows)"
    "$py" -m pip install --progress-bar on "$torch_spec"
  fi
  torch_version=$("$py" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null)
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  echo "torch==$torch_version" >"$constraints"
  echo "bootstrap: installing tune-ext[test] and its dependencies (torch $torch_version kept)"
  # one line per package pip collects, so a first install is never minutes of silence (pip's
  # errors go to stderr unfiltered, and its exit status is kept)
  set +e
  "$py" -m pip install -c "$constraints" -e "$root[test]" | grep --line-buffered -E "^(Collecting|Installing|Successfully)"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "bootstrap: pip install of tune-ext failed (exit $status)" >&2
    exit "$status"
  fi
  echo "$want" >"$stamp"
fi
