"""Retargeting without Blender: BVH reading, skeleton detection, and motions written here (a
CMU-like and a Mixamo-like skeleton with known joint rotations) put on the anny mixamo rig
with bone directions, foot heights and joints intact."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from photo_avatar.core import skinning
from photo_avatar.core.retarget import motions
from photo_avatar.core.retarget.bone_maps import UnknownSkeletonError, bone_map, detect_layout
from photo_avatar.core.retarget.bvh import BVHError, parse_bvh, read_bvh
from photo_avatar.core.retarget.kinematics import TargetRig
from photo_avatar.core.retarget.solve import RetargetedMotion, retarget

FPS = 30
FRAMES = 90

# (name, parent, rest offset from the parent's head): Y up, facing +Z, the person's left +X.
# CMU-like: 31 joints, CMU's names, CMU's units (about 1/0.45 inch), legs apart at rest.
CMU = (
    ("Hips", None, (0.0, 0.0, 0.0)),
    *(
        joint
        for s, S, x in (("L", "Left", 1.0), ("R", "Right", -1.0))
        for joint in (
            (f"{s}HipJoint", "Hips", (0.0, 0.0, 0.0)),
            (f"{S}UpLeg", f"{s}HipJoint", (1.4 * x, -1.8, 0.8)),
            (f"{S}Leg", f"{S}UpLeg", (2.4 * x, -6.8, 0.0)),
            (f"{S}Foot", f"{S}Leg", (2.4 * x, -6.6, 0.0)),
            (f"{S}ToeBase", f"{S}Foot", (0.1 * x, -0.5, 2.2)),
        )
    ),
    ("LowerBack", "Hips", (0.0, 0.0, 0.0)),
    ("Spine", "LowerBack", (0.0, 2.0, -0.1)),
    ("Spine1", "Spine", (0.0, 2.0, 0.0)),
    ("Neck", "Spine1", (0.0, 2.0, 0.0)),
    ("Neck1", "Neck", (0.0, 1.6, 0.1)),
    ("Head", "Neck1", (0.0, 1.6, 0.0)),
    *(
        joint
        for s, S, x in (("L", "Left", 1.0), ("R", "Right", -1.0))
        for joint in (
            (f"{S}Shoulder", "Spine1", (0.0, 2.0, 0.0)),
            (f"{S}Arm", f"{S}Shoulder", (3.2 * x, 0.0, 0.0)),
            (f"{S}ForeArm", f"{S}Arm", (5.0 * x, 0.0, 0.0)),
            (f"{S}Hand", f"{S}ForeArm", (3.5 * x, 0.0, 0.0)),
            (f"{S}FingerBase", f"{S}Hand", (0.8 * x, 0.0, 0.0)),
            (f"{S}HandIndex1", f"{S}FingerBase", (0.7 * x, 0.0, 0.0)),
            (f"{s}Thumb", f"{S}Hand", (0.6 * x, 0.0, 0.6)),
        )
    ),
)

# Mixamo-like without the mixamorig: prefix: centimetres, T pose, feet together.
MIXAMO = (
    ("Hips", None, (0.0, 100.0, 0.0)),
    ("Spine", "Hips", (0.0, 10.0, 0.5)),
    ("Spine1", "Spine", (0.0, 12.0, 0.0)),
    ("Spine2", "Spine1", (0.0, 13.0, 0.0)),
    ("Neck", "Spine2", (0.0, 15.0, -1.0)),
    ("Head", "Neck", (0.0, 10.0, 1.5)),
    ("HeadTop_End", "Head", (0.0, 19.0, 0.5)),
    *(
        joint
        for S, x in (("Left", 1.0), ("Right", -1.0))
        for joint in (
            (f"{S}Shoulder", "Spine2", (6.0 * x, 11.0, -0.5)),
            (f"{S}Arm", f"{S}Shoulder", (12.0 * x, 0.0, 0.0)),
            (f"{S}ForeArm", f"{S}Arm", (27.0 * x, 0.0, 0.0)),
            (f"{S}Hand", f"{S}ForeArm", (26.0 * x, 0.0, 0.0)),
            (f"{S}HandMiddle1", f"{S}Hand", (9.0 * x, 0.0, 0.0)),
            (f"{S}UpLeg", "Hips", (9.0 * x, -6.0, 0.0)),
            (f"{S}Leg", f"{S}UpLeg", (0.0, -43.0, 0.0)),
            (f"{S}Foot", f"{S}Leg", (0.0, -42.0, -1.0)),
            (f"{S}ToeBase", f"{S}Foot", (0.0, -7.0, 12.0)),
            (f"{S}Toe_End", f"{S}ToeBase", (0.0, 0.0, 8.0)),
        )
    ),
)

# The bones whose directions the tests compare, as (from, to) semantic joints.
_SEGMENTS = [
    (f"{s}_{a}", f"{s}_{b}")
    for s in ("left", "right")
    for a, b in (
        ("upper_leg", "lower_leg"),
        ("lower_leg", "foot"),
        ("foot", "toes"),
        ("upper_arm", "lower_arm"),
        ("lower_arm", "hand"),
    )
] + [
    ("hips", "head"),
    ("neck", "head"),
    ("right_upper_leg", "left_upper_leg"),
    ("right_upper_arm", "left_upper_arm"),
]
SOURCE_TO_TARGET = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
"""BVH axes (Y up, facing +Z) -> the avatar's (Z up, facing -Y); the person's left stays +X."""


def _rotvec(axis: tuple[float, float, float], degrees: np.ndarray) -> np.ndarray:
    return np.radians(degrees)[:, None] * np.asarray(axis)[None]


def _local_rotations(skeleton) -> np.ndarray:
    """(T, J, 3, 3) known joint rotations: a stride-like leg swing with the knee bending the
    right way, a hop, hips turning, the spine bending, the arms lowered and swinging with
    bent elbows, a forearm twist. Same motion for both skeletons, by semantic part."""
    t = np.arange(FRAMES) / FPS
    phase = 2 * np.pi * t / 1.2
    names = [j[0] for j in skeleton]
    vectors = np.zeros((FRAMES, len(names), 3))

    def put(name: str, axis, degrees) -> None:
        vectors[:, names.index(name)] += _rotvec(axis, np.broadcast_to(degrees, t.shape))

    put("Hips", (0, 1, 0), 15 * np.sin(phase))
    put("Spine1", (1, 0, 0), 8 + 6 * np.sin(phase))
    if "Neck1" in names:  # a joint the target lacks: its turn must still reach the head
        put("Neck1", (0, 0, 1), 25 * np.sin(phase))
    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        swing = sign * 25 * np.sin(phase)
        put(f"{side}UpLeg", (1, 0, 0), -swing - 10)
        put(f"{side}Leg", (1, 0, 0), 35 + 25 * np.sin(phase + sign * 1.0))
        put(f"{side}Foot", (1, 0, 0), -10 * np.cos(phase))
        put(f"{side}Arm", (0, 0, 1), -sign * (65 + 10 * np.sin(2 * phase)))
        put(f"{side}Arm", (0, 1, 0), sign * 20 * np.sin(phase))
        put(f"{side}ForeArm", (0, 1, 0), sign * (40 + 30 * np.sin(phase)))
        put(f"{side}ForeArm", (1, 0, 0), 30 * np.sin(phase))
    return Rotation.from_rotvec(vectors.reshape(-1, 3)).as_matrix().reshape(FRAMES, -1, 3, 3)


def _forward_kinematics(skeleton, local: np.ndarray, root: np.ndarray) -> np.ndarray:
    """(T, J, 3) joint positions from local rotations (T, J, 3, 3) and root positions (T, 3)."""
    names = [j[0] for j in skeleton]
    positions = np.zeros((FRAMES, len(names), 3))
    world = np.zeros_like(local)
    for j, (_, parent, offset) in enumerate(skeleton):
        if parent is None:
            positions[:, j], world[:, j] = root, local[:, j]
        else:
            p = names.index(parent)
            positions[:, j] = positions[:, p] + world[:, p] @ np.asarray(offset)
            world[:, j] = world[:, p] @ local[:, j]
    return positions


def _motion(skeleton) -> tuple[str, np.ndarray]:
    """BVH text of the known motion, and the source joint positions (T, J, 3) in its units,
    in the file's joint order.

    The root walks forward along +Z with the lowest toe on the ground (y = 0), except for a
    hop of 4 leg-percent in the middle third: feet have a known height at every frame.
    """
    local = _local_rotations(skeleton)
    names = [j[0] for j in skeleton]
    at_origin = _forward_kinematics(skeleton, local, np.zeros((FRAMES, 3)))
    toes = [names.index(f"{s}ToeBase") for s in ("Left", "Right")]
    leg = sum(abs(skeleton[names.index(f"Left{b}")][2][1]) for b in ("Leg", "Foot"))
    hop = 0.2 * leg * np.clip(np.sin(3 * np.pi * (np.arange(FRAMES) / FRAMES - 1 / 3)), 0, None)
    hop[: FRAMES // 3] = 0.0
    hop[2 * FRAMES // 3 :] = 0.0
    root = np.zeros((FRAMES, 3))
    root[:, 1] = -at_origin[:, toes, 1].min(1) + hop
    root[:, 2] = np.arange(FRAMES) / FPS * leg * 1.2
    positions = at_origin + root[:, None]
    lines = ["HIERARCHY"]

    def write(j: int, level: int) -> None:
        name, parent, offset = skeleton[j]
        pad = "  " * level
        channels = "6 Xposition Yposition Zposition" if parent is None else "3"
        lines.extend([
            f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}",
            pad + "{",
            f"{pad}  OFFSET {offset[0]:.5f} {offset[1]:.5f} {offset[2]:.5f}",
            f"{pad}  CHANNELS {channels} Zrotation Xrotation Yrotation",
        ])  # fmt: skip
        for k, child in enumerate(skeleton):
            if child[1] == name:
                write(k, level + 1)
        lines.append(pad + "}")

    write(0, 0)
    order = [names.index(line.split()[1]) for line in lines if line.split()[0] in ("ROOT", "JOINT")]
    angles = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True)
    angles = angles.reshape(FRAMES, len(names), 3)
    lines += ["MOTION", f"Frames: {FRAMES}", f"Frame Time: {1 / FPS:.6f}"]
    for t in range(FRAMES):
        values = [*root[t], *angles[t, order].reshape(-1)]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n", positions[:, order]


@pytest.fixture(scope="module", params=["model", "a"])
def rig(request, body) -> TargetRig:
    """The anny mixamo armature in the model's own rest pose and in the avatar's A pose."""
    if request.param == "a":
        return TargetRig.from_body("mixamo", rest_pose="a")
    rest = body.rest(body.default_phenotype)
    return TargetRig(
        list(body.bone_names), list(body.parents), rest.bone_matrices[0].double().numpy()
    )


def _posed_heads(rig: TargetRig, result) -> np.ndarray:
    """(T, J, 3) bone heads of the retargeted armature, by the project's own skinning."""
    frames = result.rotations.shape[0]
    rest = torch.as_tensor(rig.rest_matrices)[None].expand(frames, -1, -1, -1)
    posed = skinning.forward_kinematics(rest, rig.parents, torch.as_tensor(result.rotations))
    return posed[..., :3, 3].numpy() + result.root_translations[:, None]


def _leg_length(heads: dict[str, np.ndarray], up: np.ndarray, ground: float) -> float:
    hip, knee, ankle = (heads[f"left_{j}"] for j in ("upper_leg", "lower_leg", "foot"))
    return float(np.linalg.norm(knee - hip) + np.linalg.norm(ankle - knee) + ankle @ up - ground)


@dataclass
class Case:
    """One source skeleton retargeted. source: (T, Js, 3) its joints in the target's axes,
    metres after our own leg-length scale; heads: (T, J, 3) the posed target's bone heads;
    both: semantic joint -> (source index, target index); ground: the target's rest floor."""

    name: str
    source: np.ndarray
    heads: np.ndarray
    both: dict[str, tuple[int, int]]
    result: RetargetedMotion
    scale: float
    ground: float


@pytest.fixture(scope="module", params=["cmu", "mixamo"])
def case(request, rig) -> Case:
    skeleton = CMU if request.param == "cmu" else MIXAMO
    text, positions = _motion(skeleton)
    motion = parse_bvh(text, f"{request.param}.bvh")
    result = retarget(motion, rig)
    source_joints = detect_layout(motion.names).bone_for()
    target_joints = detect_layout(rig.bone_names).bone_for()
    both = {
        j: (motion.names.index(source_joints[j]), rig.bone_names.index(target_joints[j]))
        for j in source_joints
        if j in target_joints
    }
    up = np.array([0.0, 0.0, 1.0])
    feet = [j for j in both if j.endswith(("_foot", "_toes"))]
    ground = min(rig.rest_matrices[both[j][1], 2, 3] for j in feet)
    source_rest = motion.rest_positions() @ SOURCE_TO_TARGET.T
    source_rest -= up * min(source_rest[both[j][0]] @ up for j in feet)
    scale = _leg_length(
        {j: rig.rest_matrices[t, :3, 3] for j, (_, t) in both.items()}, up, ground
    ) / _leg_length({j: source_rest[s] for j, (s, _) in both.items()}, up, 0.0)
    source = positions @ SOURCE_TO_TARGET.T * scale
    return Case(request.param, source, _posed_heads(rig, result), both, result, scale, ground)


def _direction_errors(case: Case) -> np.ndarray:
    """(T, S) degrees between each of `_SEGMENTS` on the source and on the target."""
    errors = []
    for a, b in _SEGMENTS:
        u = case.source[:, case.both[b][0]] - case.source[:, case.both[a][0]]
        v = case.heads[:, case.both[b][1]] - case.heads[:, case.both[a][1]]
        cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
        errors.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.stack(errors, 1)


def _turn_per_frame(rotations: np.ndarray) -> np.ndarray:
    """(T - 1, J) degrees each local rotation (T, J, 3, 3) turns from one frame to the next."""
    step = rotations[1:] @ np.swapaxes(rotations[:-1], -1, -2)
    cos = (np.trace(step, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_bone_directions_follow_the_source(case):
    errors = _direction_errors(case)
    assert errors.mean() < 5.0, f"{case.name}: mean bone-direction error {errors.mean():.1f}°"
    worst = _SEGMENTS[int(errors.max(0).argmax())]
    assert errors.max() < 8.0, f"{case.name}: {worst} off by {errors.max():.1f}°"


def test_feet_follow_the_source_height_over_the_ground(case):
    for side in ("left", "right"):
        s, t = case.both[f"{side}_foot"]
        source_lift = case.source[:, s, 2] - case.source[0, s, 2]
        target_lift = case.heads[:, t, 2] - case.heads[0, t, 2]
        assert np.abs(target_lift - source_lift).max() < 0.02, f"{case.name} {side} foot"
    feet = [t for j, (_, t) in case.both.items() if j.endswith(("_foot", "_toes"))]
    assert abs(case.heads[:, feet, 2].min() - case.ground) < 0.01


def test_hop_lifts_the_feet_as_far_as_the_source(case):
    toes = [case.both[f"{s}_toes"] for s in ("left", "right")]
    source_low = np.min([case.source[:, s, 2] for s, _ in toes], axis=0)
    target_low = np.min([case.heads[:, t, 2] for _, t in toes], axis=0) - case.ground
    assert source_low.max() > 0.1  # the hop is there
    assert np.abs(target_low - (source_low - source_low.min())).max() < 0.02


def test_no_nan_and_no_flipped_joint(case):
    result = case.result
    assert np.isfinite(result.rotations).all() and np.isfinite(result.root_translations).all()
    # the source turns a few degrees a frame: a bone that flips would turn far more
    assert _turn_per_frame(result.rotations).max() < 15.0
    # knees bend forward (the shin swings back), as in the source
    for side in ("left", "right"):
        hip, knee, ankle = (case.both[f"{side}_{j}"] for j in ("upper_leg", "lower_leg", "foot"))
        for k, joints in ((0, case.source), (1, case.heads)):
            thigh = joints[:, knee[k]] - joints[:, hip[k]]
            shin = joints[:, ankle[k]] - joints[:, knee[k]]
            assert (np.cross(thigh, shin)[:, 0] > 0).all(), f"{case.name} {side} knee"


def test_root_travels_as_far_as_the_source_scaled(case):
    s, t = case.both["hips"]
    source_path = case.source[-1, s, :2] - case.source[0, s, :2]
    target_path = case.heads[-1, t, :2] - case.heads[0, t, :2]
    assert np.linalg.norm(target_path - source_path) < 0.02 * np.linalg.norm(source_path)
    assert case.result.scale == pytest.approx(case.scale, rel=0.03)
    assert case.result.fps == FPS


def test_mixamo_names_with_the_prefix_are_the_same_skeleton():
    bare = [j[0] for j in MIXAMO]
    prefixed = [f"mixamorig:{n}" for n in bare]
    assert detect_layout(bare).layout == detect_layout(prefixed).layout == "mixamo"
    assert bone_map(prefixed, bare) == dict(zip(prefixed, bare, strict=True))


@pytest.mark.parametrize(
    ("names", "layout"),
    [
        ([j[0] for j in CMU], "cmu"),
        (["Hips", "LHipJoint", "LeftHip", "LeftKnee", "LeftAnkle", "RHipJoint", "RightHip",
          "RightKnee", "RightAnkle", "lowerback", "Chest", "Head", "LeftShoulder", "LeftElbow",
          "LeftWrist", "RightShoulder", "RightElbow", "RightWrist"], "cmu_asf"),
        (["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
          "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
          "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
          "left_elbow", "right_elbow", "left_wrist", "right_wrist"], "smpl"),
        ([f"m_avg_{n}" for n in ("Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee",
          "Head", "L_Ankle", "R_Ankle", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
          "L_Wrist", "R_Wrist")], "smpl"),
        (["Hips", "Spine1", "Head", "LeftThigh", "LeftShin", "LeftFoot", "RightThigh",
          "RightShin", "RightFoot", "LeftArm", "LeftForeArm", "LeftHand", "RightArm",
          "RightForeArm", "RightHand"], "rokoko"),
    ],
)  # fmt: skip
def test_common_skeletons_are_recognised(names, layout):
    match = detect_layout(names)
    assert match.layout == layout
    assert match.score == 1.0


def test_unrecognisable_names_give_a_clear_error(rig):
    text, _ = _motion(CMU)
    for k, (name, _, _) in enumerate(CMU):
        text = text.replace(f" {name}\n", f" bone_{k:03d}\n")
    motion = parse_bvh(text, "robot.bvh")
    with pytest.raises(UnknownSkeletonError, match=r"robot\.bvh.*not recognised.*bone_000"):
        retarget(motion, rig)


def test_a_file_that_is_not_bvh_gives_a_clear_error(tmp_path):
    png = tmp_path / "walk.bvh"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x00")
    with pytest.raises(BVHError, match=r"walk\.bvh.*not a BVH file"):
        read_bvh(png)
    json = tmp_path / "pose.bvh"
    json.write_text('{"bones": []}\n')
    with pytest.raises(BVHError, match=r"pose\.bvh, line 1: not a BVH file"):
        read_bvh(json)
    with pytest.raises(BVHError, match="cannot read"):
        read_bvh(tmp_path / "missing.bvh")


def test_a_truncated_bvh_names_the_line(tmp_path):
    text, _ = _motion(MIXAMO)
    lines = text.splitlines()
    lines[-3] = " ".join(lines[-3].split()[:-2])
    with pytest.raises(BVHError, match=rf"line {len(lines) - 2}: a frame needs"):
        parse_bvh("\n".join(lines), "cut.bvh")


def test_units_and_up_axis_are_guessed():
    cmu = parse_bvh(_motion(CMU)[0])
    mixamo = parse_bvh(_motion(MIXAMO)[0])
    assert cmu.up_axis == mixamo.up_axis == "+y"
    assert mixamo.unit_scale == 0.01
    height = np.ptp(cmu.rest_positions()[:, 1]) * cmu.unit_scale
    assert 1.2 < height < 2.0


@pytest.mark.parametrize("make", [motions.walk, motions.dance])
def test_procedural_motions_move_the_avatar_with_feet_on_the_ground(make, rig):
    result = retarget(make(), rig)
    heads = _posed_heads(rig, result)
    names = rig.bone_names
    feet = [
        names.index(f"mixamorig:{s}{b}") for s in ("Left", "Right") for b in ("Foot", "ToeBase")
    ]
    ground = rig.rest_matrices[feet, 2, 3].min()
    assert np.abs(heads[:, feet, 2].min(1) - ground).max() < 0.03  # a foot is always down
    assert np.isfinite(result.rotations).all()
    assert _turn_per_frame(result.rotations).max() < 20.0
    # it loops: the last frame runs into the first
    loop = result.rotations[[-1, 0]]
    assert _turn_per_frame(loop).max() < 10.0
    assert np.ptp(heads[:, :, :], axis=0).max() > 0.2  # and it does move
