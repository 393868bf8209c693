"""Batch from Blender's command line: photos in, a .blend with the rigged avatar out.

    blender -b --python-expr "from bl_ext.user_default.photo_avatar.operators import batch; \\
batch.main()" -- photo.jpg [photo.jpg ...] -o avatar.blend [--preset fast|default|high]
        [--no-network]
    .venv/bin/python -m photo_avatar.operators.batch photo.jpg -o avatar.blend   # bpy wheel

Runs the same operator as the sidebar (blocking: there is no event loop in background mode),
so the .blend holds exactly what an artist would get. A failure prints one line and exits 2
without writing the .blend.
"""

import argparse
import os
import sys
from pathlib import Path

import bpy

from ..core.avatar import PRESETS
from ..core.body_model import RIGS
from ..core.cli import add_network_option


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="photo_avatar batch", description="Photos of a person -> a .blend with the avatar"
    )
    parser.add_argument("photos", nargs="+", type=Path, help="1 to 8 photos of the person")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .blend to write")
    parser.add_argument("--preset", choices=PRESETS, default="default")
    parser.add_argument("--rig", choices=(*RIGS, "smplx"), default="mixamo")
    parser.add_argument("--rest-pose", choices=("a", "t"), default="a")
    add_network_option(parser)
    if argv is None:  # Blender passes its own arguments; ours follow "--"
        argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate into the open file's scene and save it as `--output`; returns the exit code."""
    args = _arguments(argv)
    if args.output.suffix.lower() != ".blend" or not args.output.parent.is_dir():
        print(f"photo_avatar: cannot write {args.output}: not a .blend in an existing folder")
        return 2
    if not hasattr(bpy.ops.photo_avatar, "generate") or not hasattr(
        bpy.types.Scene, "photo_avatar"
    ):
        from .. import register  # the bpy wheel: not installed as an extension

        register()
    try:
        bpy.ops.photo_avatar.generate(
            photos=[{"name": str(path.resolve())} for path in args.photos],
            preset=args.preset,
            rig=args.rig,
            rest_pose=args.rest_pose,
            use_network=args.network,
        )
    except RuntimeError as error:  # the operator's report, raised in background mode
        print(f"photo_avatar: {str(error).strip().splitlines()[-1]}")
        return 2
    bpy.ops.wm.save_as_mainfile(filepath=str(args.output.resolve()))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the bpy wheel can deadlock in its exit-time destructors
