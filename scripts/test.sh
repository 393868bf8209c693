#!/usr/bin/env bash
# Set up, then run the linters and the whole test suite (Blender tests included, headless).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -q "$@"
