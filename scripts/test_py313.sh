#!/usr/bin/env bash
# The test suite again on Python 3.13 with bpy 5.3, as Blender 5.1 and later run the add-on:
# .venv313 with pyproject's 3.13 pins (numpy 2, mediapipe 1.2.3), the pose models from the
# bundle the 3.11 venv makes (only mediapipe 0.10.21 has them). Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON313:-python3.13} VENV=.venv313 bash scripts/setup.sh
.venv/bin/python -m photo_avatar.models.pose_bundle
.venv313/bin/pytest -q "$@"
