"""Photos -> rigged, textured Avatar: the CanonicalFusion pipeline, stage by stage.

Each stage is its own module with one public function; this module only wires them and
gives each its slice of the progress bar. Nothing here touches bpy or writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..models.depth_runtime import ONNX_PATH as DEPTH_NET_ONNX
from ..models.depth_runtime import refine_depth
from . import skinning
from .avatar import Avatar, BodyFit, DepthMaps, Perception, Photo, Settings
from .body_model import BodyModel, load_body_model
from .body_prior import body_prior_depth
from .canonicalise import canonical_surface
from .carve import PhotoView
from .crop import crop_to_person
from .fit import fit_body
from .fuse import fuse
from .perceive import Detector, perceive
from .photos import load_photos
from .progress import Progress
from .refine import refine
from .texture import bake_texture

log = logging.getLogger(__name__)

# Share of the progress bar per stage, roughly their share of the run time.
_STAGES = {
    "load": (0.00, 0.03),
    "perceive": (0.03, 0.12),
    "fit": (0.12, 0.40),
    "depth": (0.40, 0.50),
    "canonicalise": (0.50, 0.58),
    "fuse": (0.58, 0.72),
    "refine": (0.72, 0.84),
    "texture": (0.84, 1.00),
}


@dataclass
class Reconstruction:
    """Everything one run produced: the avatar and what led to it (for reports)."""

    body: BodyModel
    photos: list[Photo]
    """The person-centred working crops the stages saw."""
    perceptions: list[Perception]
    fit: BodyFit
    depths: list[DepthMaps]
    avatar: Avatar
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage."""


def generate(
    paths: Sequence[Path | str | Photo],
    settings: Settings | None = None,
    progress: Progress | None = None,
    detector: Detector | None = None,
) -> Reconstruction:
    """Build an avatar from 1 to 8 photos of one person.

    `paths` may also hold already decoded `Photo`s (the synthetic benchmark passes renders).
    Raises `PhotoError` for unusable input and `Cancelled` when `progress` is cancelled.
    """
    settings = settings or Settings()
    progress = progress or Progress()
    torch.manual_seed(settings.seed)
    if not 1 <= len(paths) <= 8:
        raise ValueError(f"give 1 to 8 photos of the person, not {len(paths)}")
    seconds: dict[str, float] = {}

    @contextmanager
    def stage(name: str) -> Iterator[Progress]:
        start = time.perf_counter()
        yield progress.sub(*_STAGES[name])
        seconds[name] = time.perf_counter() - start

    with stage("load") as p:
        body = load_body_model(settings.rig, settings.smplx_folder)
        files = [path for path in paths if not isinstance(path, Photo)]
        loaded = iter(load_photos(files, settings, p) if files else [])
        photos = [path if isinstance(path, Photo) else next(loaded) for path in paths]

    with stage("perceive") as p:
        perceptions = perceive(photos, detector, p)
        crops = [
            crop_to_person(ph, pe, settings.work_side)
            for ph, pe in zip(photos, perceptions, strict=True)
        ]
        photos = [c[0] for c in crops]
        perceptions = [c[1] for c in crops]
        uncrop = [c[2].uncrop_camera for c in crops]

    with stage("fit") as p:
        fit = fit_body(photos, perceptions, body, settings, p)

    with stage("depth") as p:
        # Network 1 refines the body prior; without its weights the prior is the answer.
        network = settings.use_network and DEPTH_NET_ONNX.exists()
        if settings.use_network and not network:
            log.warning("network 1 is missing (%s); using the body prior", DEPTH_NET_ONNX)
        depths = []
        for i, (photo, perception) in enumerate(zip(photos, perceptions, strict=True)):
            share = p.sub(i / len(photos), (i + 1) / len(photos))
            prior = body_prior_depth(photo, perception, fit, i, body, share)
            if network:
                prior = refine_depth(photo, perception, prior, settings.device)
            depths.append(prior)

    with stage("canonicalise") as p:
        rest = body.rest(torch.as_tensor(fit.phenotype, dtype=torch.float32))
        canonical_rotations = body.rest_pose_rotations(rest, settings.rest_pose)
        canonical = body.pose(rest, canonical_rotations)
        surfaces = []
        for i, depth in enumerate(depths):
            p.step("unposing into the rest pose", i / len(depths))
            surfaces.append(canonical_surface(depth, fit, i, body, canonical_rotations))

    with stage("fuse") as p:
        to_photos = _to_photos(_photo_bone_matrices(body, rest, fit), canonical)
        views = [PhotoView(d, t) for d, t in zip(depths, to_photos, strict=True)]
        fused = fuse(surfaces, body, canonical.vertices[0].detach().numpy(), settings, p, views)

    with stage("refine") as p:
        if settings.refine_iterations > 0:
            refined = refine(fused, body, fit, rest, canonical, perceptions, depths, settings, p)
            fused, fit = refined.mesh, refined.fit

    with stage("texture") as p:
        photo_matrices = _photo_bone_matrices(body, rest, fit)
        texture = bake_texture(
            fused.vertices, fused.faces, fused.weights, photos,
            _to_photos(photo_matrices, canonical), fit.cameras, settings.texture_size, p,
        )  # fmt: skip
        cameras = [restore(cam) for restore, cam in zip(uncrop, fit.cameras, strict=True)]
        avatar = _assemble(
            body, rest, canonical, photo_matrices, texture, cameras, photos, settings
        )
    progress.step("done", 1.0)
    log.info("avatar ready: %s", ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return Reconstruction(body, photos, perceptions, fit, depths, avatar, seconds)


def _to_photos(matrices: torch.Tensor, canonical) -> list[np.ndarray]:
    """Per photo, the (J, 4, 4) transforms that pose the canonical body as in that photo,
    from the (N, J, 4, 4) bone frames of each photo's pose (`_photo_bone_matrices`)."""
    to_photo = skinning.skinning_transforms(matrices, canonical.bone_matrices.expand_as(matrices))
    return [t.detach().numpy() for t in to_photo]


def _photo_bone_matrices(body: BodyModel, rest, fit: BodyFit) -> torch.Tensor:
    """(N, J, 4, 4) bone frames of the fitted body in each photo's pose."""
    poses = torch.as_tensor(fit.poses, dtype=torch.float32)
    frames = rest.bone_matrices.expand(poses.shape[0], -1, -1, -1)
    return skinning.forward_kinematics(frames, body.parents, poses)


def _assemble(body, rest, canonical, photo_matrices, texture, cameras, photos, settings) -> Avatar:
    """The delivered avatar: canonical mesh, bones in the canonical pose, the pose and the
    camera of each photo (cameras of the whole photos, not of the working crops)."""
    bind = canonical.bone_matrices[0]
    lengths = (rest.tails[0] - rest.heads[0]).norm(dim=-1, keepdim=True)
    tails = bind[:, :3, 3] + bind[:, :3, 1] * lengths
    photo_poses = skinning.local_rotations(
        bind.expand_as(photo_matrices), body.parents, photo_matrices
    )
    return Avatar(
        vertices=texture.vertices.astype(np.float32),
        faces=texture.faces.astype(np.int32),
        weights=texture.weights.astype(np.float32),
        uv=texture.uv.astype(np.float32),
        texture=texture.image,
        bone_names=list(body.bone_names),
        parents=list(body.parents),
        bone_matrices=bind.detach().numpy().astype(np.float32),
        bone_tails=tails.detach().numpy().astype(np.float32),
        photo_poses=photo_poses.detach().numpy().astype(np.float32),
        cameras=cameras,
        photo_names=[p.name for p in photos],
        rig=settings.rig,
        rest_pose=settings.rest_pose,
    )
