"""The command line: `photo-avatar generate PHOTO ... -o avatar.glb` (or python -m photo_avatar).

Errors end the run with one line naming the file and the reason and a non-zero exit; no
partial output file is left behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .avatar import PRESETS, Settings
from .body_model import RIGS
from .progress import Cancelled, PhotoError, Progress

log = logging.getLogger("photo_avatar")


def add_network_option(parser: argparse.ArgumentParser) -> None:
    """`--network/--no-network`, defaulting to `Settings.use_network`: one switch for the
    command line, Blender's batch command and the benchmarks."""
    parser.add_argument(
        "--network", action=argparse.BooleanOptionalAction, default=Settings.use_network,
        help="refine the body prior's depth with network 1 (--no-network: the body prior "
        "alone, for comparison)",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="photo-avatar", description="Photos of a person -> rigged, textured avatar."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="make an avatar from 1 to 8 photos of one person")
    gen.add_argument(
        "photos", nargs="*", type=Path,
        help="photos of the same person (JPEG/PNG/WebP); none: the bundled synthetic sample",
    )  # fmt: skip
    gen.add_argument("-o", "--output", type=Path, default=Path("avatar.glb"),
                     help="the skinned glTF binary to write (default: avatar.glb)")  # fmt: skip
    gen.add_argument("--preset", choices=PRESETS, default="default", help="speed/quality")
    gen.add_argument("--rig", choices=(*RIGS, "smplx"), default="mixamo",
                     help="bone names of the armature; smplx needs --smplx-folder")  # fmt: skip
    gen.add_argument("--smplx-folder", type=Path,
                     help="your own licensed SMPL-X model files (for --rig smplx)")  # fmt: skip
    gen.add_argument("--rest-pose", choices=("a", "t"), default="a", help="A or T rest pose")
    gen.add_argument("--triangles", type=int, help="triangle budget (default from the preset)")
    add_network_option(gen)
    gen.add_argument("--no-refine", action="store_true",
                     help="skip the forward-skinning refinement against the photos")  # fmt: skip
    gen.add_argument("--soft-silhouette", action=argparse.BooleanOptionalAction,
                     help="refine against each mask pixel by pixel too (default: from 3 "
                          "photos, and always at --preset high)")  # fmt: skip
    gen.add_argument("--report", type=Path, help="folder for a PNG contact sheet of the run")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    sample = sub.add_parser("sample", help="write the synthetic sample photo")
    sample.add_argument("output", type=Path, nargs="?", default=Path("sample_person.png"))
    return parser


def _progress_bar(quiet: bool) -> Progress:
    start = time.perf_counter()

    def show(stage: str, fraction: float) -> None:
        if quiet:
            return
        filled = int(30 * fraction)
        bar = "#" * filled + "-" * (30 - filled)
        elapsed = time.perf_counter() - start
        sys.stderr.write(f"\r[{bar}] {100 * fraction:3.0f}% {elapsed:5.1f}s {stage:<32.32}")
        sys.stderr.flush()

    return Progress(show)


def check_writable(path: Path) -> None:
    """Fail before the work starts if `path` cannot be written (folder, permissions)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise PhotoError(f"{path}: cannot write there: it is a folder (give a file name)")
    if not folder.is_dir():
        raise PhotoError(f"{path}: cannot write there: the folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".photo_avatar_check"):
            pass
    except OSError as error:
        raise PhotoError(f"{path}: cannot write there ({error.strerror})") from error


def write_sample(path: Path) -> Path:
    """Render the bundled synthetic sample person (seed 0, front view) to `path`."""
    from PIL import Image

    from .synthetic import make_person, render_photo, sample_cameras

    person = make_person(seed=0, garment="loose_top")
    photo = render_photo(person, sample_cameras(1, width=512, height=640)[0], seed=0)
    Image.fromarray(photo.image).save(path)
    return path


def _generate(args: argparse.Namespace) -> int:
    from .export_glb import write_glb
    from .pipeline import generate

    check_writable(args.output)
    photos = list(args.photos)
    if not photos:
        photos = [write_sample(Path(tempfile.mkdtemp(prefix="photo_avatar_")) / "sample.png")]
        log.info("no photo given: using the synthetic sample %s", photos[0])
    overrides = {"rig": args.rig, "rest_pose": args.rest_pose, "use_network": args.network}
    if args.rig == "smplx":
        if args.smplx_folder is None:
            raise PhotoError("--rig smplx needs --smplx-folder with your SMPL-X model files")
        overrides["smplx_folder"] = str(args.smplx_folder)
    if args.triangles:
        overrides["triangles"] = args.triangles
    if args.no_refine:
        overrides["refine_iterations"] = 0
    if args.soft_silhouette is not None:
        overrides["soft_silhouette"] = args.soft_silhouette
    settings = Settings.from_preset(args.preset, **overrides)
    run = generate(photos, settings, _progress_bar(args.quiet))
    if not args.quiet:
        sys.stderr.write("\n")
    write_glb(run.avatar, args.output)
    print(f"wrote {args.output} ({len(run.avatar.vertices)} vertices, "
          f"{len(run.avatar.bone_names)} bones) in {sum(run.seconds.values()):.1f} s")  # fmt: skip
    if args.report:
        from .report import write_report

        print(f"wrote {write_report(run, args.report)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    logging.basicConfig(level=os.environ.get("PHOTO_AVATAR_LOG", "WARNING"), format="%(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "sample":
            print(f"wrote {write_sample(args.output)}")
            return 0
        return _generate(args)
    except PhotoError as error:
        sys.stderr.write(f"\nphoto-avatar: error: {error}\n")
        return 2
    except Cancelled:
        sys.stderr.write("\nphoto-avatar: cancelled\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("\nphoto-avatar: interrupted\n")
        return 130
