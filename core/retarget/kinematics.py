"""Armature kinematics for retargeting, in numpy: the target armature, rotations between
directions, and posing bone frames.

Blender's conventions, as in `core.skinning` (which is torch): bone frames (J, 4, 4) in
armature space, head at the translation, +Y along the bone; a pose is a local rotation per
bone in its own rest frame. Metres, Z up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TargetRig:
    """The armature to drive: bone_names (J), parents (J, -1 for roots, parents first) and
    rest_matrices (J, 4, 4) float64 bone frames at rest in armature space, metres, Z up."""

    bone_names: list[str]
    parents: list[int]
    rest_matrices: np.ndarray

    @staticmethod
    def from_body(rig: str = "mixamo", phenotype=None, rest_pose: str = "a") -> TargetRig:
        """The anny body's armature in the avatar's canonical rest pose ('a' or 't')."""
        import torch

        from ..body_model import load_body_model
        from ..skinning import forward_kinematics

        body = load_body_model(rig)
        rest = body.rest(body.default_phenotype if phenotype is None else phenotype)
        with torch.no_grad():
            frames = forward_kinematics(
                rest.bone_matrices, body.parents, body.rest_pose_rotations(rest, rest_pose)
            )[0]
        return TargetRig(list(body.bone_names), list(body.parents), frames.double().numpy())


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the smallest rotations taking directions a (..., 3) onto b (..., 3);
    opposite directions turn by 180° about an axis perpendicular to a."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1, keepdims=True)
    cos = np.sum(a * b, axis=-1, keepdims=True)
    helper = np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    fallback = np.cross(a, helper)
    fallback /= np.linalg.norm(fallback, axis=-1, keepdims=True)
    axis = np.where(sin > 1e-9, axis / np.maximum(sin, 1e-12), fallback)
    return axis_angle_matrix(axis * np.arctan2(sin, cos))


def axis_angle_matrix(vector: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors (radians) -> (..., 3, 3) rotation matrices (Rodrigues)."""
    angle = np.linalg.norm(vector, axis=-1)[..., None, None]
    axis = vector / np.maximum(angle[..., 0], 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*x.shape, 3, 3)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def rotation_angle(r: np.ndarray) -> np.ndarray:
    """(...,) angle in degrees of rotation matrices (..., 3, 3)."""
    cos = (np.trace(r, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def pose_frames(
    target: TargetRig, rotations: np.ndarray, root_bone: int = 0, root_translations=None
) -> np.ndarray:
    """(T, J, 4, 4) posed bone frames in armature space from local rotations (T, J, 3, 3)
    and the root bone's translation (T, 3) (same kinematics as `core.skinning`)."""
    rest = target.rest_matrices
    frames = np.zeros((rotations.shape[0], len(target.parents), 4, 4))
    for j, p in enumerate(target.parents):
        relative = rest[j] if p < 0 else np.linalg.solve(rest[p], rest[j])
        local = np.broadcast_to(relative, frames[:, j].shape).copy()
        local[:, :3, :3] = relative[:3, :3] @ rotations[:, j]
        frames[:, j] = local if p < 0 else frames[:, p] @ local
        if j == root_bone and root_translations is not None:
            frames[:, j, :3, 3] += root_translations
    return frames
