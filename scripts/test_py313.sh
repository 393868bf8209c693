#!/usr/bin/env bash
# The test suite again on Python 3.13 with bpy 5.3, as Blender 5.1 and later run the add-on:
# .venv313 with pyproject's 3.13 pins (numpy 2, mediapipe 1.2.3), the pose models from the
# bundle the 3.11 venv makes (only mediapipe 0.10.21 has them). Run by scripts/test.sh; says
# so and stops when this machine has no Python 3.13 (set PYTHON313 to point at one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=""
for candidate in "${PYTHON313:-}" python3.13 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13; do
  if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    PYTHON=$candidate
    break
  fi
done
if [ -z "$PYTHON" ]; then
  echo "no Python 3.13 here: the Blender 5.1+ suite did not run" >&2
  exit 0
fi
bash scripts/setup.sh
PYTHON=$PYTHON VENV=.venv313 bash scripts/setup.sh
.venv/bin/python -m photo_avatar.models.pose_bundle
.venv313/bin/pytest -q "$@"
