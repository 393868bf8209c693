#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the project and its pinned dependencies; safe to re-run.
# PYTHON=python3.13 VENV=.venv313 makes the Python 3.13 one (Blender 5.1+), see test_py313.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3.11
  command -v "$PYTHON" >/dev/null || PYTHON=python3
fi
if [ ! -x "$VENV"/bin/python ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV"/bin/python -m pip install --quiet --upgrade pip
fi
if [ ! -f "$VENV"/.installed ] || [ pyproject.toml -nt "$VENV"/.installed ]; then
  "$VENV"/bin/python -m pip install --quiet -e ".[dev]"
  touch "$VENV"/.installed
fi
