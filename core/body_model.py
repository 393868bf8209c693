"""The parametric body behind a small interface: anny by default, SMPL-X as an option.

A body model gives, for a shape (phenotype), the rest mesh and the rest bone frames; posing
is our own `skinning` module, so every body model poses, unposes and exports the same way.
Coordinates: metres, Z up, the person facing -Y (anny's native frame).
"""

from __future__ import annotations

import functools
import itertools
import logging
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import skinning

log = logging.getLogger(__name__)

RIGS = ("mixamo", "game_engine", "cmu_mb", "makehuman")
"""The anny rigs we offer; `mixamo` (52 bones, `mixamorig:` names) is the default."""

# Per rig, the bones whose heads sit at the joints the keypoint detector reports, and the
# upper arm / forearm / hand chains that the A- and T- rest poses straighten.
_JOINT_BONES: dict[str, dict[str, str]] = {
    "mixamo": {
        "left_shoulder": "mixamorig:LeftArm",
        "right_shoulder": "mixamorig:RightArm",
        "left_elbow": "mixamorig:LeftForeArm",
        "right_elbow": "mixamorig:RightForeArm",
        "left_wrist": "mixamorig:LeftHand",
        "right_wrist": "mixamorig:RightHand",
        "left_hip": "mixamorig:LeftUpLeg",
        "right_hip": "mixamorig:RightUpLeg",
        "left_knee": "mixamorig:LeftLeg",
        "right_knee": "mixamorig:RightLeg",
        "left_ankle": "mixamorig:LeftFoot",
        "right_ankle": "mixamorig:RightFoot",
    },
    "game_engine": {
        "left_shoulder": "upperarm_l",
        "right_shoulder": "upperarm_r",
        "left_elbow": "lowerarm_l",
        "right_elbow": "lowerarm_r",
        "left_wrist": "hand_l",
        "right_wrist": "hand_r",
        "left_hip": "thigh_l",
        "right_hip": "thigh_r",
        "left_knee": "calf_l",
        "right_knee": "calf_r",
        "left_ankle": "foot_l",
        "right_ankle": "foot_r",
    },
    "cmu_mb": {
        "left_shoulder": "LeftArm",
        "right_shoulder": "RightArm",
        "left_elbow": "LeftForeArm",
        "right_elbow": "RightForeArm",
        "left_wrist": "LeftHand",
        "right_wrist": "RightHand",
        "left_hip": "LeftUpLeg",
        "right_hip": "RightUpLeg",
        "left_knee": "LeftLeg",
        "right_knee": "RightLeg",
        "left_ankle": "LeftFoot",
        "right_ankle": "RightFoot",
    },
    "makehuman": {
        "left_shoulder": "upperarm01.L",
        "right_shoulder": "upperarm01.R",
        "left_elbow": "lowerarm01.L",
        "right_elbow": "lowerarm01.R",
        "left_wrist": "wrist.L",
        "right_wrist": "wrist.R",
        "left_hip": "upperleg01.L",
        "right_hip": "upperleg01.R",
        "left_knee": "lowerleg01.L",
        "right_knee": "lowerleg01.R",
        "left_ankle": "foot.L",
        "right_ankle": "foot.R",
    },
}

ARM_CHAIN = ("shoulder", "elbow", "wrist")
"""Joints whose bones form the arm chain that the rest poses straighten."""

VERTEX_LANDMARKS = (
    "nose",
    "left_ear",
    "right_ear",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)
"""Landmarks that sit on the skin rather than at a joint (found on the template mesh)."""


@dataclass(frozen=True)
class Rest:
    """A body at rest for a batch of shapes.

    vertices (B, V, 3); bone_matrices (B, J, 4, 4) bone frames (head at the translation,
    +Y along the bone); heads and tails (B, J, 3). Metres, canonical (model) pose.
    """

    vertices: torch.Tensor
    bone_matrices: torch.Tensor
    heads: torch.Tensor
    tails: torch.Tensor


@dataclass(frozen=True)
class Posed:
    """A posed body: vertices (B, V, 3), bone frames (B, J, 4, 4), rest-to-posed transforms
    (B, J, 4, 4), and named landmarks (B, L, 3) in the order of `BodyModel.landmark_names`."""

    vertices: torch.Tensor
    bone_matrices: torch.Tensor
    transforms: torch.Tensor
    landmarks: torch.Tensor


class BodyModel(ABC):
    """A skinned body: fixed topology and rig, shape from a phenotype vector in [0, 1]."""

    name: str
    rig: str
    bone_names: list[str]
    parents: list[int]
    faces: np.ndarray
    """(F, 3) int64 triangles."""
    skin_weights: torch.Tensor
    """(V, J) float32 skinning weights, rows sum to one."""
    phenotype_names: list[str]
    joint_bones: dict[str, int]
    """Keypoint name -> index of the bone whose head is that joint."""
    vertex_landmarks: dict[str, int]
    """Keypoint name -> index of the template vertex at that landmark."""

    @abstractmethod
    def rest(self, phenotype: torch.Tensor) -> Rest:
        """(B, P) phenotype in [0, 1] -> the rest body (differentiable in the phenotype)."""

    @property
    def default_phenotype(self) -> torch.Tensor:
        """(1, P) the average person."""
        return torch.full((1, len(self.phenotype_names)), 0.5)

    @property
    def landmark_names(self) -> list[str]:
        return list(self.joint_bones) + list(self.vertex_landmarks)

    def pose(self, rest: Rest, local_rotations: torch.Tensor) -> Posed:
        """Pose the rest body. local_rotations: (B, J, 3, 3) per bone, in its rest frame."""
        matrices = skinning.forward_kinematics(rest.bone_matrices, self.parents, local_rotations)
        transforms = skinning.skinning_transforms(matrices, rest.bone_matrices)
        vertices = skinning.forward_skin(rest.vertices, self.skin_weights, transforms)
        joints = matrices[:, list(self.joint_bones.values()), :3, 3]
        skin = vertices[:, list(self.vertex_landmarks.values())]
        return Posed(vertices, matrices, transforms, torch.cat([joints, skin], dim=1))

    def identity_pose(self, batch: int = 1) -> torch.Tensor:
        """(B, J, 3, 3) identity rotations: the model's own rest pose."""
        return torch.eye(3).expand(batch, len(self.bone_names), 3, 3).clone()

    def rest_pose_rotations(self, rest: Rest, kind: str) -> torch.Tensor:
        """(B, J, 3, 3) local rotations that put the arms straight in an A pose (45° down)
        or a T pose (level) — the canonical pose the avatar is delivered in."""
        if kind not in ("a", "t"):
            raise ValueError(f"rest pose must be 'a' or 't', not {kind!r}")
        drop = np.radians(45.0 if kind == "a" else 0.0)
        rotations = self.identity_pose(rest.bone_matrices.shape[0])
        for side, sign in (("left", 1.0), ("right", -1.0)):
            target = torch.tensor([sign * np.cos(drop), 0.0, -np.sin(drop)], dtype=torch.float32)
            chain = [self.joint_bones[f"{side}_{j}"] for j in ARM_CHAIN]
            for b in range(rotations.shape[0]):
                for bone, child in itertools.pairwise(chain):
                    posed = skinning.forward_kinematics(
                        rest.bone_matrices[b : b + 1], self.parents, rotations[b : b + 1]
                    )[0]
                    current = posed[child, :3, 3] - posed[bone, :3, 3]
                    turn = _rotation_between(current / current.norm(), target)
                    frame = posed[bone, :3, :3]
                    rotations[b, bone] = rotations[b, bone] @ (frame.T @ turn @ frame)
        return rotations


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(3, 3) the smallest rotation taking unit vector a to unit vector b."""
    axis = torch.linalg.cross(a, b)
    sin = axis.norm()
    if sin < 1e-8:
        return torch.eye(3)
    angle = torch.atan2(sin, torch.dot(a, b))
    return skinning.axis_angle_to_matrix(axis / sin * angle)


def _dense_weights(indices: torch.Tensor, weights: torch.Tensor, bones: int) -> torch.Tensor:
    """(V, K) bone indices and weights -> (V, J) dense float32 weights, rows summing to one."""
    dense = torch.zeros(indices.shape[0], bones)
    dense.scatter_add_(1, indices.long(), weights.float())
    return dense / dense.sum(1, keepdim=True).clamp(min=1e-8)


def _find_vertex_landmarks(vertices: np.ndarray) -> dict[str, int]:
    """Skin landmarks found on the rest template (Z up, facing -Y, left = +X)."""
    x, y, z = vertices.T
    top = z.max()
    head = z > top - 0.25
    nose = np.where(head & (np.abs(x) < 0.01), y, np.inf).argmin()
    eye_level = np.abs(z - z[nose]) < 0.04
    landmarks = {
        "nose": int(nose),
        "left_ear": int(np.where(head & eye_level, x, -np.inf).argmax()),
        "right_ear": int(np.where(head & eye_level, -x, -np.inf).argmax()),
    }
    feet = z < z.min() + 0.04
    for side, sign in (("left", 1.0), ("right", -1.0)):
        foot = feet & (sign * x > 0.03)
        landmarks[f"{side}_heel"] = int(np.where(foot, y, -np.inf).argmax())
        landmarks[f"{side}_foot_index"] = int(np.where(foot, -y, -np.inf).argmax())
    return landmarks


class AnnyBody(BodyModel):
    """anny (Apache-2.0 code, CC0 MakeHuman data, shipped in its wheel) with one of its rigs.

    Only the MakeHuman topology is used: anny's SMPL/SMPL-X topologies download
    non-commercial data and are never touched here.
    """

    def __init__(self, rig: str = "mixamo") -> None:
        if rig not in RIGS:
            raise ValueError(f"unknown rig {rig!r}; choose one of {', '.join(RIGS)}")
        import warp

        warp.config.log_level = warp.LOG_WARNING  # anny starts warp, whose banner would
        import anny  # otherwise land on the command line's stdout

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._model = anny.Anny(rig=rig, topology="anny").to(torch.float32)
        m = self._model
        self.name = "anny"
        self.rig = rig
        self.bone_names = list(m.bone_labels)
        self.parents = [int(p) for p in m.bone_parents]
        self.faces = m.faces.numpy().astype(np.int64)
        self.skin_weights = _dense_weights(
            m.vertex_bone_indices, m.vertex_bone_weights, len(self.bone_names)
        )
        self.phenotype_names = list(m.phenotype_labels)
        self.joint_bones = {k: self.bone_names.index(v) for k, v in _JOINT_BONES[rig].items()}
        template = self.rest(self.default_phenotype).vertices[0].numpy()
        self.vertex_landmarks = _find_vertex_landmarks(template)

    def rest(self, phenotype: torch.Tensor) -> Rest:
        m = self._model
        coeffs = m._get_phenotype_blendshape_coefficients(
            phenotype.float(),
            torch.zeros(phenotype.shape[0], len(m.local_change_labels)),
            torch.zeros(phenotype.shape[0], 0),
        )
        out = m.get_rest_model(coeffs)
        return Rest(
            out["rest_vertices"],
            out["rest_bone_poses"],
            out["rest_bone_heads"],
            out["rest_bone_tails"],
        )


@functools.cache
def load_body_model(rig: str = "mixamo", smplx_folder: str | Path | None = None) -> BodyModel:
    """The shared anny body for `rig` (built once per process; the first build on a machine
    takes about two minutes while anny fills its cache). `rig="smplx"` is instead the user's
    own SMPL-X model files in `smplx_folder` (see `body_smplx`; nothing is downloaded)."""
    if rig == "smplx":
        from .body_smplx import SmplxBody

        return SmplxBody(smplx_folder)
    log.info("loading the anny body model with the %s rig", rig)
    return AnnyBody(rig)
