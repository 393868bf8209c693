"""The built extension zip installs into Blender the way a user installs it, and its operator runs.

Blender reads its user folders once, when bpy is first imported, and other test files import bpy
in this pytest process; so the install runs in a child Python (this file run as a script) whose
BLENDER_USER_RESOURCES points at a temporary folder. The child also refuses imports of the
top-level `photo_avatar` that this venv provides, because inside Blender only
`bl_ext.user_default.photo_avatar` exists: an absolute import in the add-on must fail here too.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("bpy")

ROOT = Path(__file__).resolve().parent.parent
ADDON = "bl_ext.user_default.photo_avatar"


def _profile_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file in Blender's real user profile, to see that none changes."""
    if not folder.exists():
        return {}
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


@pytest.mark.slow
def test_extension_zip_installs_and_generates_an_avatar(tmp_path):
    from photo_avatar.core.cli import write_sample

    built = subprocess.run(
        [sys.executable, ROOT / "scripts" / "build_extension.py", "--no-wheels", "-o", tmp_path],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (archive,) = tmp_path.glob("photo_avatar-*.zip")
    photo = write_sample(tmp_path / "sample.png")
    user = tmp_path / "blender_user"
    config = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "blender"
    before = _profile_snapshot(config)

    child = subprocess.run(
        [sys.executable, __file__, archive, photo],
        env={**os.environ, "BLENDER_USER_RESOURCES": str(user)},
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])

    assert result["enabled"] == [ADDON]
    assert Path(result["module_file"]).is_relative_to(user)
    installed = user / "extensions" / "user_default" / "photo_avatar"
    assert (installed / "blender_manifest.toml").is_file()
    assert result["preferences"] == "auto"
    assert result["generate"] == ["FINISHED"]
    assert result["armatures"] == [52]
    assert _profile_snapshot(config) == before


class _NoTopLevelPackage(importlib.abc.MetaPathFinder):
    """Makes `import photo_avatar` fail as it does inside Blender, where only bl_ext.* exists."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "photo_avatar":
            raise ImportError(f"absolute import of {name} in the extension; use a relative one")


def _install_and_generate(archive: str, photo: str) -> dict:
    """Child side: install the zip into the temporary user folders, enable it, run generate."""
    sys.meta_path.insert(0, _NoTopLevelPackage())
    import bpy

    installed = bpy.ops.extensions.package_install_files(
        filepath=archive, repo="user_default", enable_on_install=True
    )
    assert installed == {"FINISHED"}, installed
    enabled = [a.module for a in bpy.context.preferences.addons if "photo_avatar" in a.module]
    addon = bpy.context.preferences.addons[ADDON]
    generated = bpy.ops.photo_avatar.generate(photos=[{"name": photo}], preset="fast")
    armatures = [len(obj.data.bones) for obj in bpy.data.objects if obj.type == "ARMATURE"]
    return {
        "enabled": enabled,
        "module_file": sys.modules[ADDON].__file__,
        "preferences": addon.preferences.device,
        "generate": sorted(generated),
        "armatures": armatures,
    }


if __name__ == "__main__":
    print(json.dumps(_install_and_generate(sys.argv[1], sys.argv[2])), flush=True)
    os._exit(0)  # bpy 4.5 can deadlock in its exit-time destructors (see conftest.py)
