"""Linear blend skinning: forward kinematics, forward skinning and unposing.

Bones follow Blender's convention: each bone has a rest matrix (4, 4), its frame in world
space at rest, with the head at the translation and +Y along the bone. A pose is a local
rotation per bone in that bone's own frame (what Blender's pose bones and glTF nodes store).
Everything is batched over a leading B and differentiable.
"""

from __future__ import annotations

import torch


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vectors (radians) -> (..., 3, 3) rotation matrices (Rodrigues)."""
    angle = torch.linalg.norm(axis_angle, dim=-1, keepdim=True).clamp(min=1e-8)
    axis = axis_angle / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*axis.shape[:-1], 3, 3)
    s = torch.sin(angle)[..., None]
    c = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + s * k + (1 - c) * (k @ k)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors (radians)."""
    cos = ((matrix.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    angle = torch.acos(cos)
    w = torch.stack(
        [
            matrix[..., 2, 1] - matrix[..., 1, 2],
            matrix[..., 0, 2] - matrix[..., 2, 0],
            matrix[..., 1, 0] - matrix[..., 0, 1],
        ],
        dim=-1,
    )
    return w * (angle / (2 * torch.sin(angle)).clamp(min=1e-7))[..., None]


def forward_kinematics(
    rest_matrices: torch.Tensor, parents: list[int], local_rotations: torch.Tensor
) -> torch.Tensor:
    """Posed bone frames.

    rest_matrices: (B, J, 4, 4) bone frames at rest, world space.
    parents: J parent indices, -1 for the root; every parent comes before its children.
    local_rotations: (B, J, 3, 3) rotation of each bone in its own rest frame.
    Returns (B, J, 4, 4) posed bone frames, world space.
    """
    local = rest_matrices.clone()
    local[..., :3, :3] = rest_matrices[..., :3, :3] @ local_rotations
    posed: list[torch.Tensor] = []
    for j, p in enumerate(parents):
        if p < 0:
            posed.append(local[:, j])
        else:
            # The child keeps its rest offset from the parent, then turns by its own rotation.
            relative = torch.linalg.solve(rest_matrices[:, p], rest_matrices[:, j])
            turned = torch.cat([relative[:, :3, :3] @ local_rotations[:, j],
                                relative[:, :3, 3:]], dim=-1)  # fmt: skip
            posed.append(posed[p] @ torch.cat([turned, relative[:, 3:]], dim=-2))
    return torch.stack(posed, dim=1)


def skinning_transforms(posed_matrices: torch.Tensor, rest_matrices: torch.Tensor) -> torch.Tensor:
    """(B, J, 4, 4) posed and rest bone frames -> (B, J, 4, 4) rest-to-posed transforms."""
    return posed_matrices @ torch.linalg.inv(rest_matrices)


def blend_transforms(weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Per-point blended transform.

    weights: (N, J) or (B, N, J), rows summing to one.
    transforms: (B, J, 4, 4).
    Returns (B, N, 4, 4).
    """
    if weights.dim() == 2:
        blended = torch.einsum("nj,bjrc->bnrc", weights, transforms)
    else:
        blended = torch.einsum("bnj,bjrc->bnrc", weights, transforms)
    return blended


def forward_skin(
    points: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Pose canonical points with linear blend skinning.

    points: (B, N, 3) or (N, 3) canonical points, metres.
    weights: (N, J) or (B, N, J).
    transforms: (B, J, 4, 4) rest-to-posed transforms.
    Returns (B, N, 3) posed points.
    """
    blended = blend_transforms(weights, transforms)
    if points.dim() == 2:
        points = points.expand(transforms.shape[0], -1, -1)
    return (blended[..., :3, :3] @ points[..., None])[..., 0] + blended[..., :3, 3]


def unpose(points: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Inverse LBS: posed points back to the canonical pose with their own weights.

    points: (B, N, 3) posed points; weights: (N, J) or (B, N, J); transforms: (B, J, 4, 4)
    rest-to-posed. Returns (B, N, 3) canonical points. Exact inverse of `forward_skin` for
    the same weights, since each point's blended matrix is inverted.
    """
    blended = blend_transforms(weights, transforms)
    rot = blended[..., :3, :3]
    return torch.linalg.solve(rot, (points - blended[..., :3, 3])[..., None])[..., 0]


def local_rotations(
    rest_matrices: torch.Tensor, parents: list[int], posed_matrices: torch.Tensor
) -> torch.Tensor:
    """Inverse of `forward_kinematics`: the local rotations that take bones from
    `rest_matrices` (B, J, 4, 4) to `posed_matrices` (B, J, 4, 4). Returns (B, J, 3, 3).

    Used to re-express a pose relative to another rest pose (the avatar's A or T pose).
    """
    rotations = []
    for j, p in enumerate(parents):
        if p < 0:
            frame = rest_matrices[:, j]
        else:
            frame = posed_matrices[:, p] @ torch.linalg.solve(
                rest_matrices[:, p], rest_matrices[:, j]
            )
        rotations.append(frame[:, :3, :3].transpose(1, 2) @ posed_matrices[:, j, :3, :3])
    return torch.stack(rotations, dim=1)
