"""The retargeting math: a source `Motion` onto a target armature, by matching bone directions.

For every bone pair (source joint, target bone) the target bone turns in the world as the
source joint does, after a fixed rest alignment A that takes the target's rest bone direction
onto the source's. Rest-pose differences (A pose against T pose, rolls, bone axes) cancel in
A; the source's own turn carries the twist; a last swing per frame puts the bone exactly on
the source's direction when joints in between (a CMU LowerBack, a fourth spine bone) moved
too. Bones without a pair keep their rest pose relative to their parent. Axes: the source's
up and left (from its bones) are turned onto the target's; the root moves by the source's
root motion scaled by the ratio of leg lengths, so feet neither slide nor float.

Target conventions: Blender's, as in `kinematics`. Units: metres on the target side, source
units on the source side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from . import bone_maps
from .bone_maps import SIDES, LayoutMatch, UnknownSkeletonError, detect_layout
from .bvh import Motion
from .kinematics import TargetRig, pose_frames, rotation_between

log = logging.getLogger(__name__)

_SPINE = ("hips", "spine", "chest", "upper_chest", "neck", "upper_neck", "head", "head_end")
_FEET = tuple(f"{s}_{j}" for s in SIDES for j in ("foot", "toes", "toes_end"))
_HAND_AIMS = ("palm", "middle1", "index1", "ring1", "little1", "hand_end")


def _chain_aims() -> dict[str, tuple[str, ...]]:
    """Semantic joint -> joints further along its chain, nearest first: the candidates for the
    point a bone aims at. Hips get none: the pelvis follows the root's turn alone."""
    aims: dict[str, tuple[str, ...]] = {j: _SPINE[i + 1 :] for i, j in enumerate(_SPINE[1:], 1)}
    for s in SIDES:
        for chain in (
            ("upper_leg", "lower_leg", "foot", "toes", "toes_end"),
            ("shoulder", "upper_arm", "lower_arm", "hand"),
            *((f"{f}1", f"{f}2", f"{f}3") for f in ("thumb", "index", "middle", "ring", "little")),
        ):
            for i, j in enumerate(chain):
                aims[f"{s}_{j}"] = tuple(f"{s}_{k}" for k in chain[i + 1 :])
        aims[f"{s}_hand"] = tuple(f"{s}_{k}" for k in _HAND_AIMS)
        aims[f"{s}_palm"] = tuple(f"{s}_{k}" for k in _HAND_AIMS[1:])
    return aims


AIMS = _chain_aims()


@dataclass(frozen=True)
class RetargetedMotion:
    """The motion on the target armature.

    rotations: (T, J, 3, 3) float64 local rotation of every target bone in its rest frame;
    root_bone: index of the bone that carries the root motion (the hips);
    root_translations: (T, 3) float64 metres, armature space: the root bone's head minus its
    rest head; scale: target metres per source unit (leg-length ratio); bone_map: the source
    -> target bone pairs used; source_layout: the detected source layout ('' when unknown);
    axes: (3, 3) the rotation from the source's axes to the target's; links: the bones whose
    directions were matched, as (source joint, source joint it points at, target bone,
    target bone it points at) indices.
    """

    bone_names: list[str]
    rotations: np.ndarray
    root_bone: int
    root_translations: np.ndarray
    fps: float
    scale: float
    bone_map: dict[str, str]
    source_layout: str = ""
    axes: np.ndarray = field(default_factory=lambda: np.eye(3))
    links: list[tuple[int, int, int, int]] = field(default_factory=list)

    def root_locations(self, target: TargetRig) -> np.ndarray:
        """(T, 3) the root translations in the root bone's rest frame: Blender's pose-bone
        `location` (valid while the root bone's ancestors stay at rest)."""
        frame = target.rest_matrices[self.root_bone, :3, :3]
        return self.root_translations @ frame


@dataclass(frozen=True)
class _Pairing:
    """The bone pairs of one retarget with what is known of them.

    pairs: (source index, target index) in target order; joints: semantic joint per pair
    (None for a hand-made pair no layout names); src_rest / tgt_rest: (J, 3) rest heads,
    the source's already turned into the target's axes; up: (3,) the target's up axis.
    """

    pairs: list[tuple[int, int]]
    joints: list[str | None]
    src_rest: np.ndarray
    tgt_rest: np.ndarray
    up: np.ndarray

    def index(self, joint: str) -> int | None:
        return self.joints.index(joint) if joint in self.joints else None

    def heads(self, side: int) -> dict[str, np.ndarray]:
        """Semantic joint -> rest head, of the source (side 0) or the target (side 1)."""
        rest = (self.src_rest, self.tgt_rest)[side]
        return {j: rest[p[side]] for j, p in zip(self.joints, self.pairs, strict=True) if j}


def retarget(
    motion: Motion,
    target: TargetRig,
    bone_map: dict[str, str] | None = None,
    anchor_start: bool = True,
) -> RetargetedMotion:
    """Retarget `motion` onto `target`.

    bone_map: source bone -> target bone (as `bone_maps.bone_map` gives and the user may
    correct); None detects both layouts. anchor_start: the root starts above the target's
    rest place (True) or keeps the source's absolute placement, scaled.
    Raises `UnknownSkeletonError` when no layout fits and no map is given, ValueError for a
    map naming bones that do not exist.
    """
    source_match = _try_detect(motion.names, motion.source)
    if bone_map is None:
        bone_map = bone_maps.bone_map(motion.names, target.bone_names, motion.source)
    pairs = _pairs(motion, target, bone_map)
    joints = _semantics(pairs, motion, target, source_match)
    turn, up = _axis_alignment(pairs, joints, motion, target)
    tgt_rest = target.rest_matrices[:, :3, 3]
    pairing = _Pairing(pairs, joints, motion.rest_positions() @ turn.T, tgt_rest, up)
    positions, world = motion.world()
    positions = positions @ turn.T
    world = turn @ world @ turn.T

    root = _root_pair(pairing, target)
    src_leg, tgt_leg = _leg_lengths(pairing)
    scale = tgt_leg / src_leg if src_leg > 0 else motion.unit_scale
    aims = _aims(pairing, motion.parents, target.parents, src_leg, tgt_leg)
    alignments = _alignments(pairing, aims, target.parents, root)
    target_world = _target_world(pairing, aims, alignments, world, positions, target)
    rotations = _local_rotations(target, target_world)
    translations = _root_motion(pairing, root, positions, rotations, scale, target, anchor_start)
    links = [(*pairs[k], *pairs[m]) for k, m in enumerate(aims) if m is not None and k != root]
    return RetargetedMotion(
        list(target.bone_names),
        rotations,
        pairs[root][1],
        translations,
        motion.fps,
        scale,
        {motion.names[s]: target.bone_names[t] for s, t in pairs},
        source_match.layout if source_match else "",
        turn,
        [(s, ms, t, mt) for s, t, ms, mt in links],
    )


def _try_detect(names: list[str], what: str) -> LayoutMatch | None:
    try:
        return detect_layout(names, what)
    except UnknownSkeletonError:
        return None


def _up_vector(motion: Motion) -> np.ndarray:
    up = np.zeros(3)
    up["xyz".index(motion.up_axis[1])] = 1.0 if motion.up_axis[0] == "+" else -1.0
    return up


def _pairs(motion: Motion, target: TargetRig, mapping: dict[str, str]) -> list[tuple[int, int]]:
    """(source index, target index) per mapped bone, in target order (parents first)."""
    src = {n: i for i, n in enumerate(motion.names)}
    tgt = {n: i for i, n in enumerate(target.bone_names)}
    unknown = [n for n in mapping if n not in src] + [n for n in mapping.values() if n not in tgt]
    if unknown:
        raise ValueError(f"the bone map names bones that do not exist: {', '.join(unknown[:5])}")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("the bone map drives one target bone from two source bones")
    if not mapping:
        raise ValueError(f"{motion.source}: no bone pairs between the source and the target")
    return sorted(((src[s], tgt[t]) for s, t in mapping.items()), key=lambda p: p[1])


def _semantics(pairs, motion, target, source_match) -> list[str | None]:
    """The semantic joint of every pair: the target bone's, else the source bone's."""
    target_match = _try_detect(target.bone_names, "target armature")
    joints: list[str | None] = []
    for s, t in pairs:
        joint = target_match.joints.get(target.bone_names[t]) if target_match else None
        if joint is None and source_match is not None:
            joint = source_match.joints.get(motion.names[s])
        joints.append(joint if joint not in joints else None)
    return joints


def _basis(heads: dict[str, np.ndarray]) -> np.ndarray | None:
    """(3, 3) columns left, up, forward of a skeleton at rest, snapped to axes; None when
    the skeleton lacks the joints to tell."""
    top = next((heads[j] for j in ("head", "neck", "upper_chest", "chest") if j in heads), None)
    if top is None or "hips" not in heads:
        return None
    for joint in ("upper_leg", "upper_arm", "shoulder", "foot"):
        if f"left_{joint}" in heads and f"right_{joint}" in heads:
            left = heads[f"left_{joint}"] - heads[f"right_{joint}"]
            break
    else:
        return None
    up = _snap(top - heads["hips"])
    left = _snap(left - up * np.dot(left, up))
    if abs(np.dot(up, left)) > 0.5:
        return None
    return np.stack([left, up, np.cross(left, up)], axis=1)


def _snap(v: np.ndarray) -> np.ndarray:
    axis = int(np.abs(v).argmax())
    out = np.zeros(3)
    out[axis] = np.sign(v[axis]) or 1.0
    return out


def _axis_alignment(pairs, joints, motion: Motion, target: TargetRig):
    """(3, 3) rotation from the source's axes to the target's (left onto left, up onto up),
    and the target's up (3,). Without enough named joints the source is taken as BVH usually
    is (its guessed up axis, the person's left along +X), the target as ours (Z up, left +X).
    """
    src_rest = motion.rest_positions()
    tgt_rest = target.rest_matrices[:, :3, 3]
    named = [(j, s, t) for j, (s, t) in zip(joints, pairs, strict=True) if j is not None]
    src = _basis({j: src_rest[s] for j, s, _ in named})
    tgt = _basis({j: tgt_rest[t] for j, _, t in named})
    if src is None:
        up = _up_vector(motion)
        left = np.array([1.0, 0.0, 0.0]) if up[0] == 0 else np.array([0.0, 1.0, 0.0])
        src = np.stack([left, up, np.cross(left, up)], axis=1)
        log.info("%s: facing unknown, assuming up %s", motion.source, motion.up_axis)
    if tgt is None:
        tgt = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]).T
    return tgt @ src.T, tgt[:, 1]


def _root_pair(pairing: _Pairing, target: TargetRig) -> int:
    """The pair that carries root motion: the hips, else the shallowest target bone."""
    hips = pairing.index("hips")
    if hips is not None:
        return hips

    def depth(j: int) -> int:
        return 0 if target.parents[j] < 0 else 1 + depth(target.parents[j])

    return min(range(len(pairing.pairs)), key=lambda k: depth(pairing.pairs[k][1]))


def _foot_joints(pairing: _Pairing) -> list[int]:
    """Pair indices of the feet and toes: what touches the ground."""
    return [k for k in map(pairing.index, _FEET) if k is not None]


def _leg_lengths(pairing: _Pairing) -> tuple[float, float]:
    """(source, target) leg length at rest: thigh + shin + ankle height over the lowest foot
    joint, averaged over the sides both skeletons have; the hips-to-head length when no leg
    is paired; (0, 0) when that is missing too."""
    feet = [j for j in _FEET if j in pairing.joints]
    lengths = []
    for side in (0, 1):
        heads = pairing.heads(side)
        ground = min((heads[j] @ pairing.up for j in feet), default=0.0)
        legs = []
        for s in SIDES:
            chain = [heads.get(f"{s}_{j}") for j in ("upper_leg", "lower_leg", "foot")]
            if all(h is not None for h in chain):
                hip, knee, ankle = chain
                thigh, shin = np.linalg.norm(knee - hip), np.linalg.norm(ankle - knee)
                legs.append(thigh + shin + ankle @ pairing.up - ground)
        if legs:
            lengths.append(float(np.mean(legs)))
        elif "hips" in heads and "head" in heads:
            lengths.append(float(np.linalg.norm(heads["head"] - heads["hips"])))
        else:
            lengths.append(0.0)
    return lengths[0], lengths[1]


def _descends(parents: list[int], child: int, ancestor: int) -> bool:
    while child >= 0:
        child = parents[child]
        if child == ancestor:
            return True
    return False


def _aims(pairing, src_parents, tgt_parents, src_leg, tgt_leg) -> list[int | None]:
    """Per pair, the pair whose head its bone points at (nearest further along the chain in
    both skeletons, with a rest length above 1 % of the leg), or None."""
    aims: list[int | None] = []
    for (s, t), joint in zip(pairing.pairs, pairing.joints, strict=True):
        if joint is None:
            candidates = [m for m, (_, u) in enumerate(pairing.pairs) if tgt_parents[u] == t]
        else:
            candidates = [m for m in map(pairing.index, AIMS.get(joint, ())) if m is not None]
        aim = None
        for m in candidates:
            ms, mt = pairing.pairs[m]
            long_enough = (
                np.linalg.norm(pairing.src_rest[ms] - pairing.src_rest[s]) > 0.01 * src_leg
                and np.linalg.norm(pairing.tgt_rest[mt] - pairing.tgt_rest[t]) > 0.01 * tgt_leg
            )
            if _descends(src_parents, ms, s) and _descends(tgt_parents, mt, t) and long_enough:
                aim = m
                break
        aims.append(aim if joint is not None or len(candidates) == 1 else None)
    return aims


def _alignments(pairing: _Pairing, aims, tgt_parents, root: int) -> np.ndarray:
    """(P, 3, 3) per pair the rest alignment A taking the target's rest bone direction onto
    the source's; a bone without an aim inherits its nearest paired ancestor's."""
    by_target = {t: k for k, (_, t) in enumerate(pairing.pairs)}
    out = np.zeros((len(pairing.pairs), 3, 3))
    for k, (s, t) in enumerate(pairing.pairs):
        if aims[k] is not None and k != root:
            ms, mt = pairing.pairs[aims[k]]
            out[k] = rotation_between(
                pairing.tgt_rest[mt] - pairing.tgt_rest[t],
                pairing.src_rest[ms] - pairing.src_rest[s],
            )
            continue
        out[k] = np.eye(3)
        parent = tgt_parents[t]
        while parent >= 0 and k != root:
            if parent in by_target:
                out[k] = out[by_target[parent]]
                break
            parent = tgt_parents[parent]
    return out


def _target_world(pairing, aims, alignments, world, positions, target) -> dict[int, np.ndarray]:
    """Target bone index -> (T, 3, 3) posed world rotation of every paired target bone."""
    out = {}
    for k, (s, t) in enumerate(pairing.pairs):
        turn = world[:, s] @ alignments[k]
        if aims[k] is not None:
            ms = pairing.pairs[aims[k]][0]
            predicted = world[:, s] @ (pairing.src_rest[ms] - pairing.src_rest[s])
            actual = positions[:, ms] - positions[:, s]
            turn = rotation_between(predicted, actual) @ turn
        out[t] = turn @ target.rest_matrices[t, :3, :3]
    return out


def _local_rotations(target: TargetRig, posed: dict[int, np.ndarray]) -> np.ndarray:
    """(T, J, 3, 3) local rotations that give the paired bones their posed world rotations;
    unpaired bones keep their rest pose relative to their parent."""
    rest = target.rest_matrices[:, :3, :3]
    frames = next(iter(posed.values())).shape[0]
    world = np.zeros((frames, len(target.parents), 3, 3))
    local = np.broadcast_to(np.eye(3), world.shape).copy()
    for j, p in enumerate(target.parents):
        carried = rest[j] if p < 0 else world[:, p] @ rest[p].T @ rest[j]
        if j in posed:
            world[:, j] = posed[j]
            local[:, j] = np.swapaxes(carried, -1, -2) @ posed[j]
        else:
            world[:, j] = carried
    return local


def _root_motion(pairing, root, positions, rotations, scale, target, anchor_start) -> np.ndarray:
    """(T, 3) metres: the root bone's head minus its rest head.

    Height: whatever puts the target's lowest foot joint as high over the target's ground (its
    lowest foot joint at rest) as the source's lowest foot joint is over the source's ground
    (the 5th percentile of that lowest joint over the motion), scaled: feet land on the
    ground whatever the two rest poses (CMU's legs stand apart at rest, anny's do not).
    Without paired feet, the source root's height change, scaled. Horizontal: the source
    root's displacement, scaled, from the first frame (anchor_start) or from the origin.
    """
    s, t = pairing.pairs[root]
    up = pairing.up
    hips = positions[:, s]
    feet = _foot_joints(pairing)
    if feet:
        source_low = (positions[:, [pairing.pairs[k][0] for k in feet]] @ up).min(1)
        above = source_low - np.percentile(source_low, 5)
        tgt_feet = [pairing.pairs[k][1] for k in feet]
        posed = pose_frames(target, rotations)[:, tgt_feet][..., :3, 3] @ up
        ground = (target.rest_matrices[tgt_feet, :3, 3] @ up).min()
        lift = ground + scale * above - posed.min(1)
    else:
        lift = scale * (hips - hips[0]) @ up
    flat = hips - np.outer(hips @ up, up)
    if anchor_start:
        offset = -scale * flat[0]
    else:
        rest_head = target.rest_matrices[t, :3, 3]
        offset = -(rest_head - up * (rest_head @ up))
    return scale * flat + offset + np.outer(lift, up)
