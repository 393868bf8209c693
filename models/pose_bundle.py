"""BlazePose for mediapipe's Tasks API, made from the models inside the mediapipe 0.10.21 wheel.

    .venv/bin/python -m photo_avatar.models.pose_bundle [-o models/weights/pose_landmarker.task]

mediapipe 0.10.21 is the last release that ships its pose models, and it has no wheels for
Python 3.13 (Blender 5.1 and later). Newer releases run on 3.13 but download their models,
which we never do. Their Tasks API takes the same two models as a `.task` bundle (a zip with
the person detector and the landmarker), provided each carries TFLite metadata saying how its
input image is normalised, which the 0.10.21 files lack. This module writes that metadata with
0.10.21's own metadata writer and zips the pair, so the bundle is made from a registry package
at build time (`scripts/build_extension.py` ships it in every extension zip) and the detector
needs nothing at run time but the bundle. Without one, on Python 3.11, it is made in memory.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import zipfile
from pathlib import Path

BUNDLE = Path(__file__).resolve().parent / "weights" / "pose_landmarker.task"
"""Where the detector looks for a prebuilt bundle (every extension zip has one)."""

_MODELS = {
    # bundle member: (file in the wheel's mediapipe/modules, input mean, input std)
    # The legacy graphs feed the detector [-1, 1] and the landmarker [0, 1].
    "pose_detector.tflite": ("pose_detection/pose_detection.tflite", 127.5, 127.5),
    "pose_landmarks_detector.tflite": ("pose_landmark/pose_landmark_full.tflite", 0.0, 255.0),
}


def available() -> bool:
    """Whether the detector can get its models: a shipped bundle, or mediapipe 0.10.21's."""
    return BUNDLE.is_file() or in_mediapipe()


def in_mediapipe() -> bool:
    """Whether the installed mediapipe has the models (0.10.21 does, later releases do not)."""
    spec = importlib.util.find_spec("mediapipe")
    folders = spec.submodule_search_locations if spec else None
    return any(
        all((Path(folder) / "modules" / source).is_file() for source, _, _ in _MODELS.values())
        for folder in folders or []
    )


def load() -> bytes:
    """The shipped bundle, else one made from mediapipe 0.10.21 (ImportError if neither):
    its models are fixed, so a bundle made before is as good as a new one."""
    return BUNDLE.read_bytes() if BUNDLE.is_file() else bundle_bytes()


def bundle_bytes() -> bytes:
    """The `.task` bundle, built from the installed mediapipe 0.10.21 (ImportError if absent)."""
    import mediapipe
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, writer_utils

    modules = Path(mediapipe.__file__).parent / "modules"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for member, (source, mean, std) in _MODELS.items():
            path = modules / source
            if not path.is_file():
                raise ImportError(f"{path} missing: the pose models ship in mediapipe 0.10.21 only")
            model = bytearray(path.read_bytes())
            writer = metadata_writer.MetadataWriter.create(model)
            writer.add_general_info(Path(source).stem).add_image_input([mean], [std])
            for _ in writer_utils.get_output_tensor_types(model):
                writer.add_feature_output()
            bundle.writestr(member, bytes(writer.populate()[0]))
    return archive.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=BUNDLE)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(bundle_bytes())
    print(f"{args.output}  {args.output.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
