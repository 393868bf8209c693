#!/usr/bin/env bash
# Set up, then make an avatar: from the given photos, or from the bundled synthetic sample.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/photo-avatar generate "$@" -o avatar.glb --report report
