"""Skinning, unposing and kinematics agree with each other on the real body model."""

from __future__ import annotations

import torch

from photo_avatar.core import skinning


def _random_pose(body, seed: int, scale: float = 0.4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return skinning.axis_angle_to_matrix(
        scale * torch.randn(1, len(body.bone_names), 3, generator=g)
    )


def test_skin_weights_sum_to_one(body):
    sums = body.skin_weights.sum(1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_identity_pose_leaves_the_body_at_rest(body):
    rest = body.rest(body.default_phenotype)
    posed = body.pose(rest, body.identity_pose())
    assert (posed.vertices - rest.vertices).abs().max() < 1e-5


def test_unpose_inverts_forward_skinning(body):
    rest = body.rest(body.default_phenotype)
    posed = body.pose(rest, _random_pose(body, 0))
    back = skinning.unpose(posed.vertices, body.skin_weights, posed.transforms)
    assert (back - rest.vertices).abs().max() < 1e-4
    assert (posed.vertices - rest.vertices).abs().max() > 0.05  # the pose really moved it


def test_local_rotations_invert_forward_kinematics(body):
    rest = body.rest(body.default_phenotype)
    canonical = skinning.forward_kinematics(
        rest.bone_matrices, body.parents, body.rest_pose_rotations(rest, "t")
    )
    target = skinning.forward_kinematics(rest.bone_matrices, body.parents, _random_pose(body, 1))
    rotations = skinning.local_rotations(canonical, body.parents, target)
    again = skinning.forward_kinematics(canonical, body.parents, rotations)
    assert (again - target).abs().max() < 1e-4


def test_axis_angle_round_trip():
    g = torch.Generator().manual_seed(2)
    vectors = torch.randn(100, 3, generator=g)
    vectors = vectors / vectors.norm(dim=1, keepdim=True) * torch.rand(100, 1, generator=g) * 3.0
    again = skinning.matrix_to_axis_angle(skinning.axis_angle_to_matrix(vectors))
    assert (again - vectors).abs().max() < 1e-3


def test_t_pose_levels_the_arms_and_a_pose_drops_them(body):
    rest = body.rest(body.default_phenotype)
    for kind, drop in (("t", 0.0), ("a", 45.0)):
        posed = body.pose(rest, body.rest_pose_rotations(rest, kind))
        names = body.landmark_names
        shoulder = posed.landmarks[0, names.index("left_shoulder")]
        wrist = posed.landmarks[0, names.index("left_wrist")]
        arm = wrist - shoulder
        angle = torch.rad2deg(torch.atan2(-arm[2], arm[0]))
        assert abs(float(angle) - drop) < 2.0, kind
