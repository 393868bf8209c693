"""The project's own motions: a walk cycle and a light dance, made procedurally (no mocap).

Both are `Motion`s on a small skeleton named with the semantic joints (`bone_maps`), in
metres, Z up, the person facing -Y with the left at +X, a T pose at rest; so they retarget
onto any armature like a BVH file would. Each limb is posed by world-space angles (gait
curves after the textbook shape of sagittal hip, knee and ankle angles over a stride), the
local rotations follow, and the root is placed so that the foot on the ground stays put and
its sole touches z = 0. Both loop: the last frame runs into the first.
"""

from __future__ import annotations

import numpy as np

from .bvh import Motion

# (name, parent, offset from the parent's head in metres); the root's offset is its rest place.
_BONES: tuple[tuple[str, str | None, tuple[float, float, float]], ...] = (
    ("hips", None, (0.0, 0.0, 0.95)),
    ("spine", "hips", (0.0, 0.0, 0.10)),
    ("chest", "spine", (0.0, 0.0, 0.12)),
    ("upper_chest", "chest", (0.0, 0.0, 0.13)),
    ("neck", "upper_chest", (0.0, 0.0, 0.13)),
    ("head", "neck", (0.0, -0.01, 0.10)),
    ("head_end", "head", (0.0, 0.0, 0.18)),
    *(
        bone
        for side, x in (("left", 1.0), ("right", -1.0))
        for bone in (
            (f"{side}_shoulder", "upper_chest", (0.02 * x, 0.0, 0.10)),
            (f"{side}_upper_arm", f"{side}_shoulder", (0.16 * x, 0.0, 0.0)),
            (f"{side}_lower_arm", f"{side}_upper_arm", (0.28 * x, 0.0, 0.0)),
            (f"{side}_hand", f"{side}_lower_arm", (0.26 * x, 0.0, 0.0)),
            (f"{side}_middle1", f"{side}_hand", (0.09 * x, 0.0, 0.0)),
            (f"{side}_middle1_end", f"{side}_middle1", (0.08 * x, 0.0, 0.0)),
            (f"{side}_upper_leg", "hips", (0.09 * x, 0.0, -0.05)),
            (f"{side}_lower_leg", f"{side}_upper_leg", (0.0, 0.0, -0.42)),
            (f"{side}_foot", f"{side}_lower_leg", (0.0, 0.0, -0.40)),
            (f"{side}_toes", f"{side}_foot", (0.0, -0.13, -0.055)),
            (f"{side}_toes_end", f"{side}_toes", (0.0, -0.055, 0.0)),
        )
    ),
)
_NAMES = [b[0] for b in _BONES]
_SOLE = 0.02
"""Depth of the sole below the toe joints, metres (the heel's sole point is set apart)."""
_HEEL = (0.0, 0.05, -0.075)
"""The heel's sole point relative to the ankle, metres, in the foot's rest frame."""


def _rotation(axis: int, degrees: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about world axis 0/1/2 by angles (T,) in degrees."""
    radians = np.radians(np.asarray(degrees, dtype=np.float64))
    c, s = np.cos(radians), np.sin(radians)
    m = np.zeros((*radians.shape, 3, 3))
    a, b = (axis + 1) % 3, (axis + 2) % 3
    m[..., axis, axis] = 1.0
    m[..., a, a] = c
    m[..., b, b] = c
    m[..., a, b] = -s
    m[..., b, a] = s
    return m


def _rx(degrees) -> np.ndarray:
    return _rotation(0, degrees)


def _ry(degrees) -> np.ndarray:
    return _rotation(1, degrees)


def _rz(degrees) -> np.ndarray:
    return _rotation(2, degrees)


def _bump(phase: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A periodic Gaussian bump over phase (cycles), peak 1 at `centre`."""
    d = (phase - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


def _wave(phase: np.ndarray, peak: float) -> np.ndarray:
    """cos over one cycle with its maximum at phase `peak`."""
    return np.cos(2 * np.pi * (phase - peak))


def _forward_kinematics(world: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Joint positions (T, 3) with the hips at the origin, from world rotations (T, 3, 3)."""
    positions: dict[str, np.ndarray] = {}
    for name, parent, offset in _BONES:
        if parent is None:
            positions[name] = np.zeros((world[name].shape[0], 3))
        else:
            positions[name] = positions[parent] + world[parent] @ np.asarray(offset)
    return positions


def _soles(world, positions, side: str) -> np.ndarray:
    """(T, 3, 3) heel, ball and tip points of one foot's sole."""
    down = np.array([0.0, 0.0, -_SOLE])
    heel = positions[f"{side}_foot"] + world[f"{side}_foot"] @ np.asarray(_HEEL)
    ball = positions[f"{side}_toes"] + world[f"{side}_toes"] @ down
    tip = positions[f"{side}_toes_end"] + world[f"{side}_toes"] @ down
    return np.stack([heel, ball, tip], axis=1)


def _place_root(world, positions, stance: np.ndarray) -> np.ndarray:
    """(T, 3) root positions: the soles rest on z = 0 and the planted foot does not slide.

    stance: (T,) the foot that carries the body in each frame, 0 left, 1 right, -1 both.
    Frame to frame the root moves by the opposite of how the anchor moved relative to the
    hips, so the anchor stands still in the world. The anchor is the lowest sole point of the
    carrying foot (heel, then ball, then tip as the foot rolls), or the midpoint of both
    ankles when both carry. Choosing the foot by gait phase, not by height, keeps a landing
    foot, still moving, from dragging the body back.
    """
    soles = np.stack([_soles(world, positions, s) for s in ("left", "right")], axis=1)
    frames = soles.shape[0]
    ankles = np.stack([positions[f"{s}_foot"] for s in ("left", "right")], axis=1)
    both = ankles.mean(1)
    root = np.zeros((frames, 3))
    for t in range(1, frames):
        if stance[t] < 0:
            before, now = both[t - 1], both[t]
        else:
            k = soles[t, stance[t], :, 2].argmin()
            before, now = soles[t - 1, stance[t], k], soles[t, stance[t], k]
        root[t, :2] = root[t - 1, :2] + before[:2] - now[:2]
    root[:, 2] = -soles[..., 2].reshape(frames, -1).min(1)
    return root


def _hanging_arm(side: str, yaw, swing, spread, elbow) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (upper arm, forearm) for an arm lowered from the T pose.

    yaw: chest turn; swing: forward swing of the upper arm (degrees, + forward); spread:
    angle between the arm and the body side (90 = T pose); elbow: flexion (degrees).
    """
    sign = 1.0 if side == "left" else -1.0
    upper = _rz(yaw) @ _rx(-swing) @ _ry(sign * (90.0 - spread))
    return upper, upper @ _rz(-sign * elbow)


def _assemble(world: dict[str, np.ndarray], stance: np.ndarray, fps: float, source: str) -> Motion:
    """A Motion from world rotations of every named joint (ends follow their parent) and
    the carrying foot per frame (see `_place_root`)."""
    frames = world["hips"].shape[0]
    full = {}
    for name, parent, _ in _BONES:
        rotation = world[name] if name in world else full[parent]
        full[name] = np.broadcast_to(rotation, (frames, 3, 3))
    positions = _forward_kinematics(full)
    root = _place_root(full, positions, stance)
    index = {n: i for i, n in enumerate(_NAMES)}
    parents = [index[p] if p else -1 for _, p, _ in _BONES]
    local = np.zeros((frames, len(_BONES), 3, 3))
    for j, (name, parent, _) in enumerate(_BONES):
        local[:, j] = full[name] if parent is None else np.swapaxes(full[parent], 1, 2) @ full[name]
    offsets = np.array([b[2] for b in _BONES])
    return Motion(
        list(_NAMES),
        parents,
        offsets,
        local,
        root,
        fps,
        [n.endswith("_end") for n in _NAMES],
        "+z",
        1.0,
        source,
    )


def walk(cycles: int = 4, fps: float = 30.0, stride_frames: int = 32) -> Motion:
    """A walk cycle: `cycles` strides of `stride_frames` frames (32 at 30 fps: 112 steps a
    minute), heel strike, roll-off over the toes, arm swing against the legs, pelvis turn,
    drop and sway, the chest turning against the pelvis."""
    phase = np.arange(cycles * stride_frames) / stride_frames
    world: dict[str, np.ndarray] = {}
    pelvis_yaw = 4.0 * _wave(phase, 0.0)
    drop = 3.0 * np.sin(2 * np.pi * phase)  # the swing side of the pelvis drops
    # both legs lean so the pelvis sways 2 cm over the foot on the ground
    lean = np.degrees(np.arcsin(-0.02 * np.sin(2 * np.pi * phase) / 0.87))
    world["hips"] = _rz(pelvis_yaw) @ _ry(drop) @ _rx(-3.0 - 2.0 * _wave(2 * phase, 0.1))
    world["spine"] = _rz(0.4 * pelvis_yaw) @ _ry(-0.5 * drop) @ _rx(-1.0)
    world["chest"] = _rz(-0.3 * pelvis_yaw) @ _ry(-0.3 * drop)
    world["upper_chest"] = _rz(-0.8 * pelvis_yaw)
    world["neck"] = _rz(-0.5 * pelvis_yaw) @ _rx(4.0)
    world["head"] = _rx(-4.0 + 1.5 * _wave(2 * phase, 0.15))
    for side, shift in (("right", 0.0), ("left", 0.5)):
        p = (phase + shift) % 1.0
        hip = 8.0 + 20.0 * _wave(p, 0.95)
        knee = 4.0 + 14.0 * _bump(p, 0.14, 0.06) + 58.0 * _bump(p, 0.72, 0.11)
        ankle = (
            -7.0 * _bump(p, 0.06, 0.035)
            + 10.0 * _bump(p, 0.42, 0.12)
            - 22.0 * _bump(p, 0.62, 0.055)
            + 3.0 * _bump(p, 0.85, 0.08)
        )
        toes = 28.0 * _bump(p, 0.57, 0.05)
        sign = 1.0 if side == "left" else -1.0
        # legs splay a little and follow the pelvis turn; the knee and ankle add flexion
        thigh = _rz(pelvis_yaw) @ _ry(lean - sign * 1.5) @ _rx(-hip)
        world[f"{side}_upper_leg"] = thigh
        world[f"{side}_lower_leg"] = thigh @ _rx(knee)
        world[f"{side}_foot"] = world[f"{side}_lower_leg"] @ _rx(-ankle)
        world[f"{side}_toes"] = world[f"{side}_foot"] @ _rx(-toes)
        # the arm swings with the opposite leg: forward when this side's leg is back
        swing = 6.0 + 16.0 * _wave(p, 0.45)
        elbow = 18.0 + 12.0 * (0.5 + 0.5 * _wave(p, 0.45))
        yaw = -0.8 * pelvis_yaw
        world[f"{side}_shoulder"] = _rz(yaw)
        world[f"{side}_upper_arm"], world[f"{side}_lower_arm"] = _hanging_arm(
            side, yaw, swing, 8.0, elbow
        )
        world[f"{side}_hand"] = world[f"{side}_lower_arm"] @ _rz(-sign * 8.0)
    # the right foot strikes at phase 0 and pushes off at 0.6; one foot carries at a time
    stance = np.where((phase % 1.0 + 0.95) % 1.0 < 0.5, 1, 0)
    return _assemble(world, stance, fps, "procedural walk")


def dance(bars: int = 2, fps: float = 30.0, beat_frames: int = 15) -> Motion:
    """A light dance at 120 bpm (15 frames a beat at 30 fps): a knee bounce on every beat,
    the weight swaying from foot to foot over two beats with the hips rolling and turning,
    arms pumping bent at the elbows, then rising to wave overhead and coming back down over
    each four-beat bar pair; feet stay planted."""
    beats = bars * 8
    t = np.arange(beats * beat_frames) / beat_frames  # time in beats
    bounce = 0.5 - 0.5 * np.cos(2 * np.pi * t)  # down on each beat's middle
    sway = np.sin(np.pi * t)  # one side per two beats
    raise_ = 0.5 - 0.5 * np.cos(2 * np.pi * t / 8.0)  # arms up once every 8 beats
    world: dict[str, np.ndarray] = {}
    knee = 6.0 + 16.0 * bounce
    hip_yaw = 10.0 * np.sin(np.pi * t / 2.0)
    roll = 6.0 * sway
    world["hips"] = _rz(hip_yaw) @ _ry(roll) @ _rx(-2.0 - 3.0 * bounce)
    world["spine"] = _rz(0.6 * hip_yaw) @ _ry(-0.4 * roll) @ _rx(-1.0 - 2.0 * bounce)
    world["chest"] = _rz(0.3 * hip_yaw) @ _ry(-0.7 * roll)
    world["upper_chest"] = _rz(0.2 * hip_yaw) @ _ry(-0.8 * roll)
    world["neck"] = _rz(0.2 * hip_yaw) @ _ry(-0.5 * roll) @ _rx(3.0)
    world["head"] = _rz(0.1 * hip_yaw) @ _ry(-0.6 * roll) @ _rx(-6.0 * bounce + 3.0)
    lean = np.degrees(np.arcsin(0.05 * sway / 0.87))  # legs tilt so the pelvis moves 5 cm
    for side in ("left", "right"):
        sign = 1.0 if side == "left" else -1.0
        side_knee = knee + 6.0 * np.clip(sign * sway, 0.0, None)  # the unloaded knee bends
        thigh = _ry(lean) @ _rx(-0.5 * side_knee)
        world[f"{side}_upper_leg"] = _rz(sign * 5.0) @ thigh
        world[f"{side}_lower_leg"] = world[f"{side}_upper_leg"] @ _rx(side_knee)
        world[f"{side}_foot"] = _rz(sign * 5.0)
        world[f"{side}_toes"] = world[f"{side}_foot"]
        beat_swing = 20.0 * np.sin(np.pi * (t + (0.0 if side == "left" else 1.0)))
        swing = (1.0 - raise_) * (25.0 + beat_swing) + raise_ * 8.0 * sway * sign
        spread = (1.0 - raise_) * 22.0 + raise_ * (150.0 + 10.0 * sign * sway)
        elbow = (1.0 - raise_) * (80.0 + 10.0 * bounce) + raise_ * (25.0 + 10.0 * bounce)
        yaw = 0.2 * hip_yaw
        world[f"{side}_shoulder"] = _rz(yaw) @ _ry(-sign * 8.0 * raise_)
        world[f"{side}_upper_arm"], world[f"{side}_lower_arm"] = _hanging_arm(
            side, yaw, swing, spread, elbow
        )
        world[f"{side}_hand"] = world[f"{side}_lower_arm"] @ _rx(15.0 * bounce - 5.0)
    return _assemble(world, np.full(t.shape, -1), fps, "procedural dance")
