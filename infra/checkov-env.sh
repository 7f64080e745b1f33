#!/usr/bin/env bash
# Makes checkov's own virtual environment, .local/checkov-venv (apart from the app's .venv: checkov has
# many dependencies that must not mix with the app's), again only when it is missing or
# infra/requirements-checkov.txt changed. Used by infra/check.sh and by tests/test_infra.py, which parses
# the templates with pycep from it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
venv=.local/checkov-venv
stamp=$venv/.requirements.sha
want=$(sha256sum infra/requirements-checkov.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/checkov" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[infra] installing checkov into $venv" >&2
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -r infra/requirements-checkov.txt 2>&1 | { grep -v "is ignored: it is neither" || true; } >&2
  echo "$want" > "$stamp"
fi
