#!/usr/bin/env bash
# Set up, then run the linters and the whole test suite (Blender tests included, headless),
# on Python 3.11 with Blender 4.5 LTS and, where Python 3.13 exists, on 3.13 with Blender 5.3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -q "$@"
bash scripts/test_py313.sh "$@"
