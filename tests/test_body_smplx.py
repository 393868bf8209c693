"""The SMPL-X body on a tiny synthetic model file in SMPL-X's format, written by the test.

The synthetic person is one ring of vertices around each of SMPL-X's 55 joints, laid out like
a standing person in SMPL-X's own axes (Y up, facing +Z, left +X), with random shape,
expression and pose-corrective blend shapes. No real SMPL-X data is read or downloaded.
"""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("smplx")
import smplx
from smplx.joint_names import JOINT_NAMES

from photo_avatar.core import skinning
from photo_avatar.core.body_model import load_body_model
from photo_avatar.core.body_smplx import SMPLX_URL, SmplxBody
from photo_avatar.core.fit_losses import body_proxies
from photo_avatar.core.pose_prior import Poser, pose_space

RING = 8
"""Vertices per joint ring: multiples of 45° put one vertex straight ahead (the nose)."""
_LEFT = {
    "hip": (0.09, -0.08, 0.0), "knee": (0.10, -0.48, 0.01), "ankle": (0.11, -0.88, -0.02),
    "foot": (0.12, -0.94, 0.10), "collar": (0.07, 0.41, -0.01), "shoulder": (0.17, 0.44, -0.01),
    "elbow": (0.43, 0.42, -0.03), "wrist": (0.68, 0.42, -0.02), "eye_smplhf": (0.03, 0.65, 0.08),
    "index1": (0.78, 0.42, 0.03), "middle1": (0.785, 0.42, 0.01), "pinky1": (0.76, 0.42, -0.04),
    "ring1": (0.775, 0.42, -0.015), "thumb1": (0.71, 0.41, 0.04),
}  # fmt: skip
_CENTRE = {
    "pelvis": (0.0, 0.0, 0.0), "spine1": (0.0, 0.10, -0.01), "spine2": (0.0, 0.23, 0.0),
    "spine3": (0.0, 0.29, 0.01), "neck": (0.0, 0.50, -0.01), "head": (0.0, 0.58, 0.01),
    "jaw": (0.0, 0.55, 0.03),
}  # fmt: skip
_PARENT = {
    "left_hip": "pelvis", "spine1": "pelvis", "left_knee": "left_hip", "spine2": "spine1",
    "left_ankle": "left_knee", "spine3": "spine2", "left_foot": "left_ankle", "neck": "spine3",
    "left_collar": "spine3", "head": "neck", "left_shoulder": "left_collar",
    "left_elbow": "left_shoulder", "left_wrist": "left_elbow", "jaw": "head",
    "left_eye_smplhf": "head",
}  # fmt: skip
_RADIUS = {"pelvis": 0.12, "spine1": 0.12, "spine2": 0.13, "spine3": 0.14, "head": 0.09,
           "neck": 0.05, "jaw": 0.04}  # fmt: skip


def _joint_layout() -> tuple[np.ndarray, np.ndarray]:
    """SMPL-X's 55 joints standing in a T pose: (55, 3) positions in SMPL-X axes and (55,)
    parents, with fingers of three segments each."""
    at = {k: np.array(v) for k, v in _CENTRE.items()}
    parent = dict(_PARENT)
    for name, value in _LEFT.items():
        at[f"left_{name}"] = np.array(value)
    for finger in ("index", "middle", "pinky", "ring", "thumb"):
        step = np.array([0.03, -0.01, 0.02]) if finger == "thumb" else np.array([0.03, 0.0, 0.0])
        parent[f"left_{finger}1"] = "left_wrist"
        for k in (2, 3):
            at[f"left_{finger}{k}"] = at[f"left_{finger}{k - 1}"] + step
            parent[f"left_{finger}{k}"] = f"left_{finger}{k - 1}"
    for name in [n for n in at if n.startswith("left_")]:
        at[name.replace("left_", "right_")] = at[name] * np.array([-1.0, 1.0, 1.0])
    for name, p in list(parent.items()):
        if name.startswith("left_"):
            parent[name.replace("left_", "right_")] = p.replace("left_", "right_")
    names = JOINT_NAMES[:55]
    parents = np.array([-1] + [names.index(parent[n]) for n in names[1:]])
    return np.stack([at[n] for n in names]), parents


def synthetic_smplx(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every array `smplx.SMPLX` reads from SMPLX_*.npz, for a ring-of-vertices person."""
    joints, parents = _joint_layout()
    names = JOINT_NAMES[:55]
    count = len(joints)
    vertices, weights, faces = [], np.zeros((count * RING, count)), []
    angles = np.arange(RING) * 2 * np.pi / RING
    for j in range(count):
        along = joints[j] - joints[parents[j]] if parents[j] >= 0 else np.array([0.0, 1.0, 0.0])
        along /= np.linalg.norm(along)
        side = np.array([1.0, 0.0, 0.0]) if abs(along[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
        u = side - along * (side @ along)
        u /= np.linalg.norm(u)
        v = np.cross(along, u)
        radius = _RADIUS.get(names[j], 0.012 if j >= 22 else 0.05)
        vertices.append(
            joints[j] + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
        )
        rows = slice(j * RING, (j + 1) * RING)
        weights[rows, j] = 1.0 if parents[j] < 0 else 0.6
        if parents[j] >= 0:
            weights[rows, parents[j]] = 0.4
            a, b = np.arange(RING) + j * RING, np.roll(np.arange(RING), -1) + j * RING
            c, d = (
                np.arange(RING) + parents[j] * RING,
                np.roll(np.arange(RING), -1) + parents[j] * RING,
            )
            faces += [np.stack([a, b, c], 1), np.stack([b, d, c], 1)]
    template = np.concatenate(vertices)
    regressor = np.kron(np.eye(count), np.full((1, RING), 1.0 / RING))
    shapedirs = 0.002 * rng.standard_normal((len(template), 3, 400))
    shapedirs[:, :, 0] += 0.03 * template  # beta 0: overall size
    shapedirs[:, 0, 1] += 0.05 * template[:, 0]  # beta 1: width
    hands = np.linalg.qr(rng.standard_normal((45, 45)))[0]
    faces = np.concatenate(faces)
    return {
        "v_template": template,
        "shapedirs": shapedirs,
        "posedirs": 1e-3 * rng.standard_normal((len(template), 3, (count - 1) * 9)),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(count)]),
        "f": faces.astype(np.uint32),
        "hands_componentsl": hands,
        "hands_componentsr": hands,
        "hands_meanl": 0.1 * rng.standard_normal(45),
        "hands_meanr": 0.1 * rng.standard_normal(45),
        "lmk_faces_idx": np.arange(5),
        "lmk_bary_coords": np.full((5, 3), 1.0 / 3),
    }


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("smplx_models")
    np.savez(folder / "SMPLX_NEUTRAL.npz", **synthetic_smplx(np.random.default_rng(0)))
    return folder


@pytest.fixture(scope="module")
def smplx_body(model_folder: Path) -> SmplxBody:
    return SmplxBody(model_folder)


def _in_world(points: torch.Tensor) -> torch.Tensor:
    """SMPL-X axes (x, y up, z forward) -> ours (x, y = -forward, z up)."""
    return torch.stack([points[..., 0], -points[..., 2], points[..., 1]], dim=-1)


def _reference_smplx(model_folder: Path) -> smplx.SMPLX:
    """smplx's own model of the synthetic file: flat hands, pose correctives switched off."""
    model = smplx.create(
        str(model_folder / "SMPLX_NEUTRAL.npz"), use_pca=False, flat_hand_mean=True, batch_size=2
    )
    model.posedirs.zero_()
    # Its extra keypoints use fixed vertex ids of the real, much larger SMPL-X mesh.
    model.vertex_joint_selector.extra_joints_idxs.zero_()
    return model


def test_loads_the_users_model_file(smplx_body):
    body = smplx_body
    assert body.bone_names == JOINT_NAMES[:55]
    assert body.parents[:4] == [-1, 0, 0, 0]
    assert body.faces.shape[1] == 3 and body.faces.max() < body.skin_weights.shape[0]
    assert body.skin_weights.shape == (55 * RING, 55)
    assert len(body.phenotype_names) == 10
    assert body.bone_names[body.joint_bones["left_knee"]] == "left_knee"
    assert len(body.landmark_names) == 19


def test_weights_sum_to_one(smplx_body):
    sums = smplx_body.skin_weights.sum(1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)


def test_average_phenotype_reproduces_the_template(smplx_body, model_folder):
    data = np.load(model_folder / "SMPLX_NEUTRAL.npz")
    rest = smplx_body.rest(smplx_body.default_phenotype)
    template = _in_world(torch.as_tensor(data["v_template"], dtype=torch.float32))
    assert (rest.vertices[0] - template).abs().max() < 1e-6
    joints = _in_world(torch.as_tensor(data["J_regressor"] @ data["v_template"]).float())
    assert (rest.heads[0] - joints).abs().max() < 1e-6
    names = smplx_body.bone_names
    assert rest.heads[0, names.index("head"), 2] > rest.heads[0, names.index("left_knee"), 2] + 0.9
    assert rest.heads[0, names.index("left_shoulder"), 0] > 0.1  # the person's left is +X


def test_bone_frames_follow_blender_convention(smplx_body):
    rest = smplx_body.rest(torch.full((2, 10), 0.5) + torch.tensor([[0.3], [-0.3]]))
    frames = rest.bone_matrices[..., :3, :3]
    eye = torch.eye(3).expand_as(frames)
    assert (frames.transpose(-1, -2) @ frames - eye).abs().max() < 1e-5
    assert (torch.linalg.det(frames) - 1).abs().max() < 1e-5
    along = rest.tails - rest.heads
    assert torch.allclose(rest.bone_matrices[..., :3, 3], rest.heads)
    assert ((along / along.norm(dim=-1, keepdim=True) * frames[..., 1]).sum(-1) > 0.9999).all()
    names = smplx_body.bone_names
    elbow, wrist = names.index("left_elbow"), names.index("left_wrist")
    assert torch.allclose(rest.tails[:, elbow], rest.heads[:, wrist])
    spine = names.index("spine2")
    assert frames[0, spine, 1, 2] < -0.9  # an upright bone's Z points to the front (-Y)


@pytest.mark.parametrize("seed", [0, 1])
def test_posing_agrees_with_smplx_forward(smplx_body, model_folder, seed):
    """Our bone rotations, moved into SMPL-X's joint frames, give smplx's vertices and joints
    (its pose-corrective blend shapes off, which we leave out)."""
    g = torch.Generator().manual_seed(seed)
    phenotype = torch.rand(2, 10, generator=g)
    local = skinning.axis_angle_to_matrix(0.5 * torch.randn(2, 55, 3, generator=g))
    rest = smplx_body.rest(phenotype)
    posed = smplx_body.pose(rest, local)

    frames = rest.bone_matrices[..., :3, :3]
    world = frames @ local @ frames.transpose(-1, -2)  # each joint's turn about world axes
    turn = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # SMPL-X axes -> ours
    pose = skinning.matrix_to_axis_angle(turn.T @ world @ turn)
    out = _reference_smplx(model_folder)(
        betas=(phenotype - 0.5) * 6,
        global_orient=pose[:, 0],
        body_pose=pose[:, 1:22].flatten(1),
        jaw_pose=pose[:, 22],
        leye_pose=pose[:, 23],
        reye_pose=pose[:, 24],
        left_hand_pose=pose[:, 25:40].flatten(1),
        right_hand_pose=pose[:, 40:55].flatten(1),
        expression=torch.zeros(2, 10),
        transl=torch.zeros(2, 3),
    )
    assert (posed.vertices - _in_world(out.vertices)).norm(dim=-1).max() < 1e-3
    assert (posed.bone_matrices[..., :3, 3] - _in_world(out.joints[:, :55])).abs().max() < 1e-3
    assert (posed.vertices - rest.vertices).norm(dim=-1).max() > 0.1  # the pose moved it


def test_rest_is_differentiable_in_the_phenotype(smplx_body):
    phenotype = smplx_body.default_phenotype.requires_grad_(True)
    rest = smplx_body.rest(phenotype)
    (rest.vertices.sum() + rest.bone_matrices.sum()).backward()
    assert phenotype.grad is not None and phenotype.grad.abs().sum() > 0


def test_landmarks_sit_on_the_skin(smplx_body):
    rest = smplx_body.rest(smplx_body.default_phenotype)
    at = {k: rest.vertices[0, v] for k, v in smplx_body.vertex_landmarks.items()}
    head = rest.heads[0, smplx_body.bone_names.index("head")]
    assert at["nose"][1] < head[1] - 0.05 and abs(at["nose"][0]) < 0.01
    assert at["left_ear"][0] > 0.05 and at["right_ear"][0] < -0.05
    for side, sign in (("left", 1.0), ("right", -1.0)):
        assert sign * at[f"{side}_heel"][0] > 0 and sign * at[f"{side}_foot_index"][0] > 0
        assert at[f"{side}_heel"][1] > at[f"{side}_foot_index"][1]  # the heel is behind
        assert at[f"{side}_heel"][2] < rest.heads[0, smplx_body.joint_bones[f"{side}_knee"], 2]


@pytest.mark.parametrize(("kind", "drop"), [("t", 0.0), ("a", 45.0)])
def test_rest_pose_rotations_straighten_the_arms(smplx_body, kind, drop):
    rest = smplx_body.rest(smplx_body.default_phenotype)
    posed = smplx_body.pose(rest, smplx_body.rest_pose_rotations(rest, kind))
    names = smplx_body.landmark_names
    for side, sign in (("left", 1.0), ("right", -1.0)):
        arm = (
            posed.landmarks[0, names.index(f"{side}_wrist")]
            - posed.landmarks[0, names.index(f"{side}_shoulder")]
        )
        arm = arm / arm.norm()
        want = torch.tensor([sign * np.cos(np.radians(drop)), 0.0, -np.sin(np.radians(drop))])
        assert torch.dot(arm, want.float()) > 0.999


def test_the_fitters_fast_path_agrees(smplx_body):
    """The fit's pose space, batched poser and body proxies build on SMPL-X, and the poser
    puts the landmarks where `pose` does."""
    rest = smplx_body.rest(smplx_body.default_phenotype)
    space = pose_space(smplx_body, rest)
    names = smplx_body.bone_names
    assert {names[b] for b in space.hinges} == {
        "left_elbow",
        "right_elbow",
        "left_knee",
        "right_knee",
    }
    assert names[space.trunk[0]] == "pelvis"
    skin = list(smplx_body.vertex_landmarks.values())
    poser = Poser(smplx_body, space.moving, np.array(skin))
    g = torch.Generator().manual_seed(0)
    free, hinge = space.zeros(1)
    free, hinge = (
        0.3 * torch.randn(free.shape, generator=g),
        0.5 * torch.rand(hinge.shape, generator=g),
    )
    turn, at = poser.bone_frames(rest, space.moving_rotations(free, hinge))
    posed = smplx_body.pose(rest, space.rotations(free, hinge))
    joints = len(smplx_body.joint_bones)
    assert (at[:, poser.joints] - posed.landmarks[:, :joints]).abs().max() < 1e-5
    assert (poser.skin(rest, turn, at) - posed.landmarks[:, joints:]).abs().max() < 1e-5
    assert body_proxies(smplx_body, rest, space.trunk).arm > 0


def test_loads_a_pkl_file_as_well(tmp_path):
    with (tmp_path / "SMPLX_NEUTRAL.pkl").open("wb") as file:
        pickle.dump(synthetic_smplx(np.random.default_rng(1)), file)
    assert len(SmplxBody(tmp_path).bone_names) == 55


def test_load_body_model_dispatches_to_smplx(model_folder):
    assert isinstance(load_body_model("smplx", smplx_folder=model_folder), SmplxBody)
    with pytest.raises(ValueError, match="smplx_folder"):
        load_body_model("smplx")


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_missing_model_says_where_to_get_it_and_downloads_nothing(tmp_path, monkeypatch, make):
    folder = tmp_path / "my_smplx"
    if make == "empty":
        folder.mkdir()

    def no_network(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    with pytest.raises(FileNotFoundError) as error:
        SmplxBody(folder)
    message = str(error.value)
    assert str(folder) in message
    assert SMPLX_URL in message and "licence" in message
