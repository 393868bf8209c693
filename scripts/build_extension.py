"""Build the installable Blender extension zip, with the wheels of the runtime dependencies.

    .venv/bin/python scripts/build_extension.py [--python 3.11 3.13] [--platform linux-x64 ...]
        [--no-wheels] [-o dist/]

Blender installs an extension's wheels itself, and wheels are per Python: Blender 4.4–5.0
embed Python 3.11, Blender 5.1 and later 3.13. So there is one zip per Python and platform,
each carrying the wheels of pyproject's [project] dependencies and everything they pull in,
except the modules Blender already bundles (a second numpy would be shadowed by Blender's, and
wheels built against it would break). For 3.11 the closure is resolved at the versions
installed in this venv (the ones the tests ran against); for 3.13 at the same versions except
those pyproject sets per Python (mediapipe 0.10.21, the release with the pose models, and
numpy 1 have no 3.13 wheels). Every zip ships the pose models as a Tasks bundle made here from
mediapipe 0.10.21 (`models/pose_bundle.py`). The closure is resolved for Linux; other
platforms get the same pins, because pip evaluates environment markers for the machine it runs
on, not the target. Blender's own extension tool (shipped in the bpy wheel) builds and
validates the zip, so the result is checked by the same code that installs it.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from importlib.util import find_spec
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from packaging.requirements import Requirement

from photo_avatar.models import pose_bundle

log = logging.getLogger("build_extension")

ROOT = Path(__file__).resolve().parent.parent
BLENDER_RANGE = {"3.11": (None, "5.1.0"), "3.13": ("5.1.0", None)}
"""Blender releases per embedded Python: (first, first not) — None keeps the manifest's own
minimum or sets no maximum (the manifest's maximum is exclusive)."""
PLATFORM_TAGS = {
    "linux-x64": [f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)]
    + ["manylinux2014_x86_64"],
    "macos-arm64": ["macosx_14_0_arm64"],
    "windows-x64": ["win_amd64"],
}
"""Wheel platform tags per Blender platform (Blender 4.2+ itself needs glibc 2.28).

pip widens a macOS tag to older releases itself but not a manylinux_2_x one, hence the list.
torch 2.13 and onnxruntime 1.32 have macOS wheels for 14.0 and later only, so the macOS zip
needs macOS 14; PyTorch ships no macOS x86-64 wheels past 2.2, so Intel Macs are not offered.
"""

BUNDLED_WITH_BLENDER = {
    "numpy",
    "requests",
    "certifi",
    "charset-normalizer",
    "idna",
    "urllib3",
    "zstandard",
    "cython",
}
"""Distributions in Blender's own site-packages (the bpy wheel lists the same as requirements)."""

_RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
TORCH_LOCAL_LINUX = "cpu"
"""PyPI's Linux torch is the CUDA build with several GB of nvidia wheels; the +cpu build is not."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _blender_ext() -> Path:
    """Blender's extension command line, as shipped inside the bpy wheel of this venv.

    Found without importing bpy, which would start Blender for nothing.
    """
    spec = find_spec("bpy")
    folders = spec.submodule_search_locations if spec else None
    pattern = "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
    found = sorted(path for folder in folders or [] for path in Path(folder).glob(pattern))
    if not found:
        raise SystemExit("blender_ext.py not found in the bpy wheel; run scripts/setup.sh")
    return found[-1]


def _run(command: list[str | os.PathLike[str]]) -> str:
    """Run a command quietly; on failure show its output, which says why."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, command[:4]))} ...")
    return done.stdout


def _pip(*args: str | os.PathLike[str], platform: str, python: str) -> list[str | os.PathLike[str]]:
    """A pip command that only takes binary wheels for `python` on `platform`."""
    tags = [arg for tag in PLATFORM_TAGS[platform] for arg in ("--platform", tag)]
    return [
        sys.executable,
        "-m",
        "pip",
        *args,
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        "cp" + python.replace(".", ""),
        *tags,
    ]


def _dependencies() -> list[Requirement]:
    return [
        Requirement(dep)
        for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]


def _requirements(python: str) -> list[str]:
    """pyproject's runtime dependencies for `python` (their markers evaluated for it, not for
    the Python running this), torch as the CPU build on Linux."""
    torch = f"torch=={importlib.metadata.version('torch').split('+')[0]}+{TORCH_LOCAL_LINUX}"
    requirements = []
    for dep in _dependencies():
        if dep.marker and not dep.marker.evaluate({"python_version": python}):
            continue
        dep.marker = None
        requirements.append(torch if _normalise(dep.name) == "torch" else str(dep))
    return requirements


def _constraints(folder: Path, python: str) -> Path:
    """The versions installed in this venv, so the zip ships what the tests ran against;
    for another Python, not those of the dependencies pyproject sets per Python."""
    differ = {_normalise(dep.name) for dep in _dependencies() if dep.marker}
    pins = sorted(
        f"{dist.metadata['Name']}=={dist.version.split('+')[0]}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
        and not dist.read_text("direct_url.json")
        and not (python != _RUNNING and _normalise(dist.metadata["Name"]) in differ)
    )
    path = folder / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def resolve_pins(work: Path, python: str) -> dict[str, str]:
    """{distribution: version} of the runtime closure for Linux, without Blender's modules."""
    report = work / "report.json"
    command = _pip(
        "install",
        "--dry-run",
        "--ignore-installed",
        "--target",
        work / "target",
        "--report",
        report,
        "-c",
        _constraints(work, python),
        *_requirements(python),
        platform="linux-x64",
        python=python,
    )
    _run(command)
    pins = {}
    for item in json.loads(report.read_text())["install"]:
        name = _normalise(item["metadata"]["name"])
        if name.startswith(("nvidia-", "triton")):
            raise SystemExit(f"resolution pulled the CUDA build of torch ({name}); see --help")
        if name not in BUNDLED_WITH_BLENDER:
            pins[name] = item["metadata"]["version"]
    return pins


def _wheel_key(filename: str) -> tuple[str, str]:
    """(normalised name, version) from a wheel file name."""
    name, version = unquote(filename).split("-")[:2]
    return _normalise(name), version


def download_wheels(pins: dict[str, str], platform: str, python: str, cache: Path) -> list[Path]:
    """One wheel per pin for `platform`, kept in `cache` so a rebuild downloads nothing."""
    cache.mkdir(parents=True, exist_ok=True)
    have = {_wheel_key(path.name): path for path in cache.glob("*.whl")}
    wanted = {}
    for name, version in pins.items():
        if name == "torch" and platform != "linux-x64":
            version = version.split("+")[0]
        wanted[name, version] = f"{name}=={version}"
    missing = [spec for key, spec in wanted.items() if key not in have]
    if missing:
        log.info("%s: downloading %d wheels", platform, len(missing))
        command = _pip(
            "download", "--no-deps", "--dest", cache, *missing, platform=platform, python=python
        )
        _run(command)
        have = {_wheel_key(path.name): path for path in cache.glob("*.whl")}
    absent = [spec for key, spec in wanted.items() if key not in have]
    if absent:
        raise SystemExit(f"{platform}: no wheel for {', '.join(absent)}")
    return sorted(have[key] for key in wanted)


def _excluded(relative: PurePosixPath, is_dir: bool, patterns: list[str]) -> bool:
    """Whether the manifest's [build] paths_exclude_pattern (gitignore style) drops a path."""
    for pattern in patterns:
        if pattern.endswith("/") and not is_dir:
            continue
        core = pattern.strip("/")
        target = relative.as_posix() if pattern.startswith("/") else relative.name
        if fnmatch.fnmatchcase(target, core):
            return True
    return False


def stage(manifest: dict, stage_dir: Path) -> None:
    """Copy the package files the manifest ships (models/*.onnx included) into `stage_dir`."""
    patterns = manifest.get("build", {}).get("paths_exclude_pattern", [])
    for folder, dirs, files in os.walk(ROOT):
        here = PurePosixPath(Path(folder).relative_to(ROOT).as_posix())
        dirs[:] = [d for d in dirs if not _excluded(here / d, True, patterns)]
        for name in files:
            if not _excluded(here / name, False, patterns):
                target = stage_dir / here / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, target)


def _link(source: Path, target: Path) -> None:
    """Hard-link a wheel into the stage (hundreds of MB), copying across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_manifest(
    manifest_text: str, stage_dir: Path, wheels: list[str], platforms: list[str], python: str
) -> None:
    """The staged manifest: the repository's, plus the wheels, platforms and the Blender
    releases that embed `python`.

    Top-level keys must come before the first [table], so they go right above it.
    """
    first, first_not = BLENDER_RANGE[python]
    if first:
        manifest_text = re.sub(
            r"(?m)^blender_version_min = .*$",
            f"blender_version_min = {json.dumps(first)}",
            manifest_text,
        )
    lines = [
        *([f"blender_version_max = {json.dumps(first_not)}"] if first_not else []),
        f"platforms = {json.dumps(platforms)}",
        "wheels = [",
        *(f'  "./wheels/{name}",' for name in wheels),
        "]",
        "",
    ]
    head, table, tail = manifest_text.partition("\n[")
    (stage_dir / "blender_manifest.toml").write_text(f"{head}\n{chr(10).join(lines)}{table}{tail}")


def build(pythons: list[str], platforms: list[str], with_wheels: bool, output: Path) -> list[Path]:
    """Stage, write the manifest, build and validate with Blender's tool; the zips made (code
    only: one for every Python; with wheels: one per Python and platform)."""
    manifest_text = (ROOT / "blender_manifest.toml").read_text()
    manifest = tomllib.loads(manifest_text)
    for key in ("wheels", "platforms", "blender_version_max"):
        if key in manifest:
            raise SystemExit(f"blender_manifest.toml must not set {key!r}; this script writes it")
    output.mkdir(parents=True, exist_ok=True)
    tool = _blender_ext()
    made = []
    for python in pythons if with_wheels else ["any"]:
        with tempfile.TemporaryDirectory(prefix="photo_avatar_ext_") as tmp:
            work = Path(tmp)
            stage_dir = work / manifest["id"]
            stage(manifest, stage_dir)
            bundle = stage_dir / pose_bundle.BUNDLE.relative_to(ROOT)
            bundle.parent.mkdir(parents=True, exist_ok=True)
            bundle.write_bytes(pose_bundle.load())
            if with_wheels:
                pins = resolve_pins(work, python)
                wheels_dir = stage_dir / "wheels"
                wheels_dir.mkdir()
                for platform in platforms:
                    cache = ROOT / "build" / "wheels" / f"{platform}-py{python}"
                    for wheel in download_wheels(pins, platform, python, cache):
                        if not (wheels_dir / wheel.name).exists():
                            _link(wheel, wheels_dir / wheel.name)
                names = sorted(path.name for path in wheels_dir.iterdir())
                write_manifest(manifest_text, stage_dir, names, platforms, python)
            built = work / "built"
            built.mkdir()
            command = [sys.executable, tool, "build", "--source-dir", stage_dir]
            _run([*command, "--output-dir", built, *(["--split-platforms"] if with_wheels else [])])
            for archive in sorted(built.glob("*.zip")):
                suffix = f"-py{python.replace('.', '')}" if with_wheels else ""
                target = output / f"{archive.stem}{suffix}.zip"
                shutil.move(archive, target)
                made.append(target)
    for archive in made:
        _run([sys.executable, tool, "validate", archive])
        _check_models_shipped(archive)
    return made


def _check_models_shipped(archive: Path) -> None:
    """The ONNX weights under models/ and the pose bundle must reach the user: fail the
    build if one is missing."""
    with zipfile.ZipFile(archive) as zipped:
        shipped = set(zipped.namelist())
    for weights in [*sorted((ROOT / "models").rglob("*.onnx")), pose_bundle.BUNDLE]:
        name = weights.relative_to(ROOT).as_posix()
        if name not in shipped:
            raise SystemExit(f"{archive.name} lacks {name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="torch must be the CPU build on Linux: pip finds torch==X+cpu for Python 3.11 "
        "on this machine's disk; elsewhere, and for 3.13, set PIP_EXTRA_INDEX_URL to PyTorch's "
        "CPU wheel index.",
    )
    parser.add_argument(
        "--python",
        action="append",
        choices=sorted(BLENDER_RANGE),
        help="Blender's Python to bundle wheels for, repeatable: 3.11 for Blender 4.4-5.0, "
        "3.13 for 5.1 and later (default: 3.11)",
    )
    parser.add_argument(
        "--platform",
        action="append",
        choices=sorted(PLATFORM_TAGS),
        help="platform to bundle wheels for, repeatable; one zip each (default: linux-x64)",
    )
    parser.add_argument("--no-wheels", action="store_true", help="zip the code only (tests)")
    parser.add_argument("-o", "--output-dir", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    made = build(
        args.python or ["3.11"],
        args.platform or ["linux-x64"],
        not args.no_wheels,
        args.output_dir.resolve(),
    )
    for archive in made:
        print(f"{archive}  {archive.stat().st_size / 2**20:.1f} MiB")
    log.info("built in %.0f s", time.perf_counter() - started)


if __name__ == "__main__":
    main()
