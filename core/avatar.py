"""The data that flows through the pipeline: photos and settings in, an `Avatar` out.

Conventions everywhere: metres; world = the body model's frame (right-handed, Z up, the
person facing -Y); images (H, W, ...) with row 0 at the top; cameras in `camera.Camera`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .camera import Camera

PRESETS = ("fast", "default", "high")


@dataclass(frozen=True)
class Settings:
    """What the user chooses; `Settings.preset(name)` gives the documented defaults."""

    preset: str = "default"
    rig: str = "mixamo"
    """An anny rig (`body_model.RIGS`), or "smplx" with the user's own model files."""
    smplx_folder: str | None = None
    """Folder with the user's licensed SMPL-X model files (rig "smplx" only; never shipped)."""
    rest_pose: str = "a"
    """Canonical pose of the delivered avatar: 'a' (arms 45° down) or 't' (arms level)."""
    triangles: int = 20_000
    """Triangle budget of the final mesh."""
    max_influences: int = 4
    """Bones per vertex kept in the skinning weights (renormalised)."""
    max_side: int = 1024
    """Photos larger than this (pixels, longest side) are downscaled before anything else."""
    work_side: int = 512
    """Side of the square person-centred crop the depth and fitting stages work at."""
    fit_iterations: int = 300
    voxel_size: float = 0.01
    """Fusion grid spacing in metres."""
    texture_size: int = 1024
    refine_iterations: int = 80
    """Steps of the forward-skinning refinement against the photos; 0 skips it."""
    soft_silhouette: bool | None = None
    """Refine against each mask with a soft rasteriser too (pixel by pixel), not only the
    projected vertices: outlines matched to a pixel, about 3 times the refinement's time
    (benchmarks/soft_raster.py). None: from `refine.SOFT_FROM_PHOTOS` photos on, where the
    projected terms alone leave the photos' outlines a pixel or two apart."""
    use_network: bool = True
    """Refine the body prior's depth with network 1 (models/DEPTH_NET.md); off keeps the
    body prior alone, for comparison."""
    device: str = "auto"
    """'auto', 'cpu' or 'cuda' for torch and onnxruntime."""
    seed: int = 0

    @staticmethod
    def from_preset(name: str = "default", **overrides: object) -> Settings:
        """The preset's defaults, with `overrides` on top."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values: dict[str, object] = {
            "fast": dict(
                triangles=10_000,
                work_side=384,
                fit_iterations=150,
                voxel_size=0.015,
                texture_size=512,
                refine_iterations=40,
                soft_silhouette=False,
            ),
            "default": {},
            "high": dict(
                triangles=40_000,
                work_side=768,
                fit_iterations=500,
                voxel_size=0.007,
                texture_size=2048,
                refine_iterations=150,
                soft_silhouette=True,
            ),
        }[name]
        return replace(Settings(preset=name), **{**values, **overrides})


@dataclass(frozen=True)
class Photo:
    """A decoded, upright photo. image: (H, W, 3) uint8 RGB, EXIF orientation applied and
    downscaled to `Settings.max_side`; `focal_px` is the focal length in pixels of this
    image when the file says it (EXIF), else None."""

    name: str
    image: np.ndarray
    path: Path | None = None
    focal_px: float | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


KEYPOINT_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
"""The 33 body landmarks (MediaPipe's order); left/right are the person's own sides."""


@dataclass(frozen=True)
class Perception:
    """What the detector saw in one photo.

    mask: (H, W) float32 person probability in [0, 1].
    keypoints: (33, 3) float32 pixel u, pixel v, confidence in [0, 1], `KEYPOINT_NAMES` order.
    world_keypoints: (33, 3) float32 metres, hip-centred, detector's camera axes (x right,
    y down, z away from the camera), or None when the detector gives none.
    """

    mask: np.ndarray
    keypoints: np.ndarray
    world_keypoints: np.ndarray | None = None


@dataclass
class BodyFit:
    """The body fitted to all photos: one shape, one pose and one camera per photo.

    phenotype: (1, P) float32 in [0, 1]; poses: (N, J, 3, 3) float32 local bone rotations
    relative to the body model's rest frames; cameras: N cameras, one per photo (the whole
    rigid placement of the person lives in the camera).
    """

    rig: str
    phenotype: np.ndarray
    poses: np.ndarray
    cameras: list[Camera]
    keypoint_error_px: list[float] = field(default_factory=list)
    """Median keypoint reprojection error per photo, for reports."""


@dataclass(frozen=True)
class DepthMaps:
    """The clothed person in one photo as front and back depth, in the photo's camera.

    front, back: (H, W) float32 camera z in metres (inf outside the mask); mask: (H, W) bool;
    weights_front, weights_back: (H, W, J) float32 skinning weights per pixel (sum to one
    inside the mask); color_back: (H, W, 3) uint8 predicted colour of the unseen side, or None;
    spread_front, spread_back: (H, W) float32 metres, how far off the depth network expects
    each depth to be (None: unknown, as for the body prior alone).
    """

    camera: Camera
    front: np.ndarray
    back: np.ndarray
    mask: np.ndarray
    weights_front: np.ndarray
    weights_back: np.ndarray
    color_back: np.ndarray | None = None
    spread_front: np.ndarray | None = None
    spread_back: np.ndarray | None = None


@dataclass
class Avatar:
    """A rigged, textured avatar in its canonical rest pose: what the pipeline delivers.

    vertices: (V, 3) float32 metres, canonical pose, Z up; faces: (F, 3) int32;
    weights: (V, J) float32, at most `Settings.max_influences` non-zero per row, rows sum to 1;
    uv: (V, 2) float32 in [0, 1] (V counts seam copies; glTF convention, v = 0 at the top row
    of the texture), texture: (T, T, 3) uint8 RGB;
    bone_names (J), parents (J) with -1 for the root, bone_matrices (J, 4, 4) bone frames in
    the canonical pose (head at the translation, +Y along the bone, Blender's convention),
    bone_tails (J, 3); photo_poses: (N, J, 3, 3) local rotations relative to `bone_matrices`
    that put the avatar as it stands in each photo, seen by `cameras[n]` (the camera of the
    whole photo as loaded, not of the working crop).
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    uv: np.ndarray
    texture: np.ndarray
    bone_names: list[str]
    parents: list[int]
    bone_matrices: np.ndarray
    bone_tails: np.ndarray
    photo_poses: np.ndarray
    cameras: list[Camera]
    photo_names: list[str]
    rig: str = "mixamo"
    rest_pose: str = "a"
