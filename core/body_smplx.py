"""SMPL-X as a body model, from the user's own licensed model files.

SMPL-X (https://smpl-x.is.tue.mpg.de) has its own licence (non-commercial research use), so
Photo Avatar neither ships nor downloads it: users who hold it point `SmplxBody` at the folder
with their `SMPLX_NEUTRAL.npz` (or `.pkl`), which the `smplx` package reads.

The phenotype is the shape coefficients (betas), mapped linearly from [0, 1]; the rig is
SMPL-X's 55 joints with its own names and skinning weights. Posing is our `skinning` module
on the SMPL-X rest body: the same linear blend skinning as SMPL-X, without its pose-corrective
blend shapes (Blender and glTF rigs have none, and unposing must invert posing exactly), with
a neutral face (expression zero) and flat hands (the template's, not SMPL-X's mean hand pose).
Frames: SMPL-X is Y up, facing +Z; everything here is turned into ours (Z up, facing -Y,
the person's left +X) once, at load time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .body_model import BodyModel, Rest, _find_vertex_landmarks

log = logging.getLogger(__name__)

SMPLX_URL = "https://smpl-x.is.tue.mpg.de"
BETA_LIMIT = 3.0
"""Phenotype 0 and 1 map to betas of -3 and +3: three standard deviations of SMPL-X's
unit-variance shape space; 0.5 is the template."""
SMPLX_VERTEX_COUNT = 10475
"""Vertices of the SMPL-X topology, whose landmark vertex ids `smplx` publishes."""

TO_WORLD = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""SMPL-X axes (Y up, facing +Z) -> ours (Z up, facing -Y): a quarter turn about X."""

_KEYPOINT_JOINTS = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
"""Keypoints at SMPL-X joints; the detector and SMPL-X use the same names."""
_SMPLX_LANDMARK_IDS = {
    "nose": "nose", "left_ear": "lear", "right_ear": "rear", "left_heel": "LHeel",
    "right_heel": "RHeel", "left_foot_index": "LBigToe", "right_foot_index": "RBigToe",
}  # fmt: skip
"""Skin landmarks -> names of SMPL-X's own vertex ids in `smplx.vertex_ids`."""

_TAIL_CHILD = {
    "pelvis": "spine1",
    "spine3": "neck",
    "left_wrist": "left_middle1",
    "right_wrist": "right_middle1",
}
"""Bones with several children point at this one."""
_TAIL_OFFSET = {
    "head": (0.0, 0.0, 0.2),
    "jaw": (0.0, -0.08, -0.02),
    "left_eye_smplhf": (0.0, -0.03, 0.0),
    "right_eye_smplhf": (0.0, -0.03, 0.0),
    "left_foot": (0.0, -0.06, 0.0),
    "right_foot": (0.0, -0.06, 0.0),
}
"""Metres from head to tail (our axes) for bones whose children do not continue them.
Other childless bones (finger tips) continue their parent at its length."""
_FORWARD_BONE = np.cos(np.radians(45.0))
"""A bone whose direction is this close to the person's front gets its Z axis up, not front."""


def find_model_file(folder: str | Path | None, gender: str = "neutral") -> Path:
    """The SMPL-X file of `gender` in `folder` or its `smplx/` subfolder, `.npz` before `.pkl`;
    `folder` may also be the file itself. Never downloads: a missing file raises
    FileNotFoundError (ValueError for no folder) saying where to get it."""
    where = (
        f"SMPL-X is not shipped with Photo Avatar and is never downloaded: register at "
        f"{SMPLX_URL}, accept the SMPL-X licence (non-commercial research use), download the "
        f"SMPL-X model files and point smplx_folder at the folder holding SMPLX_NEUTRAL.npz."
    )
    if folder is None:
        raise ValueError(f"the smplx body needs smplx_folder. {where}")
    folder = Path(folder).expanduser()
    if folder.is_file():
        return folder
    stem = f"SMPLX_{gender.upper()}"
    candidates = [d / f"{stem}.{ext}" for d in (folder, folder / "smplx") for ext in ("npz", "pkl")]
    for path in candidates:
        if path.is_file():
            return path
    state = "does not exist" if not folder.exists() else f"has no {stem}.npz or {stem}.pkl"
    raise FileNotFoundError(f"SMPL-X model folder {folder} {state}. {where}")


class SmplxBody(BodyModel):
    """SMPL-X from the user's model file: 55 bones, phenotype = `num_betas` betas in [0, 1]."""

    def __init__(
        self, folder: str | Path | None, gender: str = "neutral", num_betas: int = 10
    ) -> None:
        path = find_model_file(folder, gender)
        try:
            import smplx
            from smplx.joint_names import JOINT_NAMES
            from smplx.vertex_ids import vertex_ids
        except ImportError as error:
            raise ImportError(
                "the smplx body needs the smplx package: pip install smplx==0.1.28"
            ) from error
        log.info("loading the SMPL-X body model from %s", path)
        model = smplx.SMPLX(
            str(path),
            ext=path.suffix[1:],
            gender=gender,
            num_betas=num_betas,
            use_pca=False,
            flat_hand_mean=True,
        )
        self.name = "smplx"
        self.rig = "smplx"
        self.parents = [int(p) for p in model.parents]
        if any(p >= j for j, p in enumerate(self.parents)):
            raise ValueError(f"{path}: every SMPL-X joint must come after its parent")
        joints = len(self.parents)
        self.bone_names = list(JOINT_NAMES[:joints])
        self.faces = np.asarray(model.faces, dtype=np.int64)
        weights = model.lbs_weights.float()
        self.skin_weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-8)
        self.phenotype_names = [f"beta_{i}" for i in range(model.num_betas)]
        self.joint_bones = {k: self.bone_names.index(k) for k in _KEYPOINT_JOINTS}

        # Joints are linear in the betas like the vertices, so they are regressed once.
        to_world = TO_WORLD.to(model.v_template.dtype)
        regressor = model.J_regressor
        self._template = model.v_template @ to_world.T
        self._shape_dirs = torch.einsum("ij,vjp->vip", to_world, model.shapedirs)
        self._joint_template = regressor @ self._template
        self._joint_dirs = torch.einsum("jv,vcp->jcp", regressor, self._shape_dirs)
        self._tail_target, self._tail_offset, self._tail_extend = _tail_rules(
            self.bone_names, self.parents
        )
        heads = self._joint_template[None]
        direction = F.normalize(self._tails(heads) - heads, dim=-1)[0]
        forward = direction[:, 1].abs() > _FORWARD_BONE
        self._roll_reference = torch.where(
            forward[:, None], torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0])
        )
        template = self._template.numpy()
        if len(template) == SMPLX_VERTEX_COUNT:
            ids = vertex_ids["smplx"]
            self.vertex_landmarks = {k: int(ids[v]) for k, v in _SMPLX_LANDMARK_IDS.items()}
        else:
            self.vertex_landmarks = _find_vertex_landmarks(template)

    def rest(self, phenotype: torch.Tensor) -> Rest:
        betas = (2.0 * phenotype.float() - 1.0) * BETA_LIMIT
        vertices = self._template + torch.einsum("bp,vcp->bvc", betas, self._shape_dirs)
        heads = self._joint_template + torch.einsum("bp,jcp->bjc", betas, self._joint_dirs)
        tails = self._tails(heads)
        return Rest(vertices, _bone_frames(heads, tails, self._roll_reference), heads, tails)

    def _tails(self, heads: torch.Tensor) -> torch.Tensor:
        """(B, J, 3) joint positions -> (B, J, 3) bone tails, by `_tail_rules`."""
        parent = heads[:, [max(p, 0) for p in self.parents]]
        extend = self._tail_extend[:, None] * (heads - parent)
        return heads[:, self._tail_target] + self._tail_offset + extend


def _tail_rules(
    names: list[str], parents: list[int]
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Per bone, the joint its tail sits at (J,), a fixed offset (J, 3) metres, and 1 where
    it continues its parent's direction and length (J,); see `_TAIL_CHILD`, `_TAIL_OFFSET`."""
    target = list(range(len(names)))
    offset = torch.zeros(len(names), 3)
    extend = torch.zeros(len(names))
    for j, name in enumerate(names):
        children = [c for c, p in enumerate(parents) if p == j]
        if name in _TAIL_OFFSET:
            offset[j] = torch.tensor(_TAIL_OFFSET[name])
        elif name in _TAIL_CHILD:
            target[j] = names.index(_TAIL_CHILD[name])
        elif len(children) == 1:
            target[j] = children[0]
        else:
            extend[j] = 1.0
    return target, offset, extend


def _bone_frames(heads: torch.Tensor, tails: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Blender bone frames from (B, J, 3) heads and tails: +Y from head to tail, +Z toward the
    (J, 3) roll reference (the person's front, or up for bones pointing forward) made
    perpendicular to the bone, X = Y × Z. Returns (B, J, 4, 4)."""
    y = F.normalize(tails - heads, dim=-1)
    z = F.normalize(reference - (reference * y).sum(-1, keepdim=True) * y, dim=-1)
    x = torch.linalg.cross(y, z)
    top = torch.cat([torch.stack([x, y, z], dim=-1), heads[..., None]], dim=-1)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(*top.shape[:-2], 1, 4)
    return torch.cat([top, bottom], dim=-2)
