"""Read BVH motion capture into a `Motion`: a skeleton at rest and its per-frame joint rotations.

BVH conventions kept as they are in the file (source axes and units; the retargeting solver
converts): every joint's rest frame has the world axes, a joint's OFFSET is its head relative
to its parent's head, and a frame's rotation of a joint is the product of its rotation channels
in the order they are listed (`Zrotation Xrotation Yrotation` -> Rz @ Rx @ Ry), in degrees.
The root's position channels are its absolute position (Blender's importer reads them so too).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
"""Metres per unit of the length units a BVH file may use ('cmu': the CMU ASF unit, 1/0.45 inch)."""

_TYPICAL_JOINT_HEIGHT_M = 1.6
"""Floor-to-head-joint height of an adult, metres: what the unit guess compares against."""


class BVHError(ValueError):
    """A file that is not BVH, or a malformed one; the message names the file and the line."""


@dataclass(frozen=True)
class Motion:
    """A skeleton and its motion, in the source's own axes and units.

    names (J) joint names, `parents` (J) with -1 for the root, parents before children;
    offsets: (J, 3) float64 rest head of each joint relative to its parent's head (the root's:
    its rest position); rotations: (T, J, 3, 3) float64 local rotation of each joint relative
    to its rest (rest frames are the world axes); root_translations: (T, 3) float64 position
    of the root per frame; is_end: (J) True for BVH End Sites (no channels, kept for bone
    directions); up_axis: '+y', '-z', ... guessed from the rest pose; unit_scale: metres per
    unit, guessed from the skeleton's size.
    """

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    rotations: np.ndarray
    root_translations: np.ndarray
    fps: float
    is_end: list[bool]
    up_axis: str = "+y"
    unit_scale: float = 0.01
    source: str = "<motion>"

    @property
    def frames(self) -> int:
        return int(self.rotations.shape[0])

    def rest_positions(self) -> np.ndarray:
        """(J, 3) joint heads at rest, source units, root at its rest offset."""
        heads = np.zeros((len(self.names), 3))
        for j, p in enumerate(self.parents):
            heads[j] = self.offsets[j] if p < 0 else heads[p] + self.offsets[j]
        return heads

    def world(self) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics: (T, J, 3) joint positions and (T, J, 3, 3) world rotations of
        each joint relative to its rest, source axes and units."""
        frames, joints = self.frames, len(self.names)
        positions = np.zeros((frames, joints, 3))
        rotations = np.zeros((frames, joints, 3, 3))
        for j, p in enumerate(self.parents):
            if p < 0:
                positions[:, j] = self.root_translations
                rotations[:, j] = self.rotations[:, j]
            else:
                positions[:, j] = positions[:, p] + rotations[:, p] @ self.offsets[j]
                rotations[:, j] = rotations[:, p] @ self.rotations[:, j]
        return positions, rotations

    @staticmethod
    def from_world(
        names: list[str],
        parents: list[int],
        rest_heads: np.ndarray,
        world_rotations: np.ndarray,
        root_positions: np.ndarray,
        fps: float,
        source: str = "<armature>",
    ) -> Motion:
        """A Motion from world-space joint data, e.g. an armature's action sampled in Blender.

        rest_heads: (J, 3) heads at rest; world_rotations: (T, J, 3, 3) each joint's world
        rotation relative to its rest (posed bone matrix @ inverse rest bone matrix);
        root_positions: (T, 3) root head per frame. Same axes and units for all of them.
        """
        rest_heads = np.asarray(rest_heads, dtype=np.float64)
        world_rotations = np.asarray(world_rotations, dtype=np.float64)
        offsets = rest_heads.copy()
        local = world_rotations.copy()
        for j, p in enumerate(parents):
            if p >= 0:
                offsets[j] = rest_heads[j] - rest_heads[p]
                local[:, j] = np.swapaxes(world_rotations[:, p], -1, -2) @ world_rotations[:, j]
        up, scale = guess_up_and_units(offsets, parents)
        return Motion(
            list(names),
            list(parents),
            offsets,
            local,
            np.asarray(root_positions, dtype=np.float64),
            float(fps),
            [False] * len(names),
            up,
            scale,
            source,
        )


def euler_matrix(axes: str, degrees: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation R = R_axes[0] @ R_axes[1] @ R_axes[2] for angles (..., 3) in
    degrees, `axes` like 'ZXY' (BVH's channel order)."""
    radians = np.radians(np.asarray(degrees, dtype=np.float64))
    result = np.broadcast_to(np.eye(3), (*radians.shape[:-1], 3, 3)).copy()
    for k, axis in enumerate(axes.upper()):
        c, s = np.cos(radians[..., k]), np.sin(radians[..., k])
        m = np.zeros((*radians.shape[:-1], 3, 3))
        i = "XYZ".index(axis)
        a, b = (i + 1) % 3, (i + 2) % 3
        m[..., i, i] = 1.0
        m[..., a, a] = c
        m[..., b, b] = c
        m[..., a, b] = -s
        m[..., b, a] = s
        result = result @ m
    return result


def guess_up_and_units(offsets: np.ndarray, parents: list[int]) -> tuple[str, float]:
    """Up axis ('+y', '-z', ...) and metres per unit of a skeleton at rest.

    Up: away from the legs, snapped to an axis. The legs are the root's branches other than
    the largest (the spine, which carries arms and head); they hang down in any rest pose,
    where the arms may hang too and so cannot tell.
    Units: the one among `UNITS` that makes the rest height closest to an adult's.
    """
    heads = np.zeros_like(offsets)
    children: list[list[int]] = [[] for _ in parents]
    for j, p in enumerate(parents):
        heads[j] = offsets[j] if p < 0 else heads[p] + offsets[j]
        if p >= 0:
            children[p].append(j)
    root = parents.index(-1)

    def subtree(j: int) -> list[int]:
        return [j] + [k for c in children[j] for k in subtree(c)]

    branches = sorted((subtree(c) for c in children[root]), key=len)
    legs = [j for branch in branches[:-1] for j in branch]
    direction = heads[root] - heads[legs].mean(0) if legs else heads.mean(0) - heads[root]
    axis = int(np.abs(direction).argmax())
    up = ("+" if direction[axis] >= 0 else "-") + "xyz"[axis]
    height = float(np.ptp(heads[:, axis])) or 1.0
    unit = min(UNITS.values(), key=lambda s: abs(np.log(height * s / _TYPICAL_JOINT_HEIGHT_M)))
    return up, unit


@dataclass
class _Joint:
    name: str
    parent: int
    line: int
    offset: np.ndarray | None = None
    channels: tuple[str, ...] = ()
    is_end: bool = False


_CHANNELS = {f"{a}{kind}" for a in "xyz" for kind in ("position", "rotation")}


def _lines(text: str) -> list[tuple[int, list[str]]]:
    """Non-empty lines as (1-based line number, tokens), braces split off as their own lines."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        for part in re.split(r"([{}])", line):
            tokens = part.split()
            if tokens:
                out.append((number, tokens))
    return out


def parse_bvh(text: str, source: str = "<text>") -> Motion:
    """Parse BVH text; `source` names the file in error messages."""

    def fail(line: int, why: str) -> BVHError:
        return BVHError(f"{source}, line {line}: {why}")

    lines = _lines(text)
    if not lines or lines[0][1][0].upper() != "HIERARCHY":
        raise fail(lines[0][0] if lines else 1, "not a BVH file (it must start with HIERARCHY)")
    joints: list[_Joint] = []
    stack: list[int] = []
    pending: _Joint | None = None
    i = 1
    while i < len(lines):
        number, tokens = lines[i]
        word = tokens[0].upper()
        if word in ("ROOT", "JOINT"):
            if (word == "ROOT") != (not stack):
                raise fail(
                    number, f"{tokens[0]} where a {'ROOT' if not stack else 'JOINT'} was due"
                )
            if len(tokens) < 2:
                raise fail(number, f"{tokens[0]} without a name")
            pending = _Joint(" ".join(tokens[1:]), stack[-1] if stack else -1, number)
        elif word == "END":
            if not stack:
                raise fail(number, "End Site outside a joint")
            parent = joints[stack[-1]]
            pending = _Joint(f"{parent.name}_end", stack[-1], number, is_end=True)
        elif word == "{":
            if pending is None:
                raise fail(number, "'{' without a joint before it")
            joints.append(pending)
            stack.append(len(joints) - 1)
            pending = None
        elif word == "}":
            if not stack:
                raise fail(number, "unbalanced '}'")
            joint = joints[stack.pop()]
            if joint.offset is None:
                raise fail(joint.line, f"joint {joint.name!r} has no OFFSET")
            if not stack:
                i += 1
                break
        elif word == "OFFSET":
            if not stack or len(tokens) != 4:
                raise fail(number, "OFFSET needs three numbers inside a joint")
            joints[stack[-1]].offset = _floats(tokens[1:], number, fail)
        elif word == "CHANNELS":
            if not stack:
                raise fail(number, "CHANNELS outside a joint")
            channels = tuple(t.lower() for t in tokens[2:])
            if not tokens[1].isdigit() or int(tokens[1]) != len(channels):
                raise fail(number, "CHANNELS count does not match the channel names")
            unknown = [c for c in channels if c not in _CHANNELS]
            if unknown:
                raise fail(number, f"unknown channel {unknown[0]!r}")
            joints[stack[-1]].channels = channels
        else:
            raise fail(number, f"unexpected {tokens[0]!r} in the hierarchy")
        i += 1
    if stack or not joints:
        raise fail(lines[-1][0], "the hierarchy is not closed")
    return _read_motion(lines[i:], lines[i - 1][0], joints, source, fail)


def _floats(tokens: list[str], line: int, fail) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens])
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise fail(line, f"{bad!r} is not a number") from None


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_motion(lines, end: int, joints: list[_Joint], source: str, fail) -> Motion:
    """The MOTION section: `lines` after the hierarchy, which closed on line `end`."""
    if not lines:
        raise fail(end, "no MOTION section after the hierarchy")
    if lines[0][1][0].upper() != "MOTION":
        found = lines[0][1][0]
        raise fail(lines[0][0], f"expected MOTION, found {found!r} (one skeleton per file)")
    header = {}
    for number, tokens in lines[1:3]:
        key = " ".join(tokens).split(":")[0].strip().lower()
        value = " ".join(tokens).split(":")[-1].strip()
        header[key] = (number, value)
    if "frames" not in header or "frame time" not in header:
        raise fail(lines[0][0], "MOTION must be followed by 'Frames:' and 'Frame Time:'")
    try:
        declared = int(header["frames"][1])
        frame_time = float(header["frame time"][1])
    except ValueError:
        raise fail(header["frames"][0], "bad 'Frames:' or 'Frame Time:' value") from None
    if frame_time <= 0:
        raise fail(header["frame time"][0], "'Frame Time:' must be positive")
    width = sum(len(j.channels) for j in joints)
    rows = []
    for number, tokens in lines[3:]:
        if len(tokens) != width:
            raise fail(number, f"a frame needs {width} values, this line has {len(tokens)}")
        rows.append(_floats(tokens, number, fail))
    if not rows:
        raise fail(lines[-1][0], "no frames of motion")
    if len(rows) != declared:
        log.warning("%s declares %d frames and holds %d", source, declared, len(rows))
    data = np.stack(rows)
    return _assemble(joints, data, frame_time, source)


def _assemble(joints: list[_Joint], data: np.ndarray, frame_time: float, source: str) -> Motion:
    frames = data.shape[0]
    rotations = np.broadcast_to(np.eye(3), (frames, len(joints), 3, 3)).copy()
    offsets = np.stack([j.offset for j in joints])
    root = offsets[0] + np.zeros((frames, 3))
    column = 0
    for index, joint in enumerate(joints):
        cols = {c: column + k for k, c in enumerate(joint.channels)}
        column += len(joint.channels)
        order = "".join(c[0] for c in joint.channels if c.endswith("rotation"))
        if order:
            angles = data[:, [cols[f"{a}rotation"] for a in order.lower()]]
            rotations[:, index] = euler_matrix(order, angles)
        if index == 0:
            for k, axis in enumerate("xyz"):
                if f"{axis}position" in cols:
                    root[:, k] = data[:, cols[f"{axis}position"]]
    parents = [j.parent for j in joints]
    up, scale = guess_up_and_units(offsets, parents)
    fps = 1.0 / frame_time
    if abs(fps - round(fps)) < 0.01:
        fps = float(round(fps))
    return Motion(
        [j.name for j in joints],
        parents,
        offsets,
        rotations,
        root,
        fps,
        [j.is_end for j in joints],
        up,
        scale,
        source,
    )


def read_bvh(path: str | Path) -> Motion:
    """Read a BVH file; a missing, binary or malformed file raises `BVHError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BVHError(f"{path.name}: not a BVH file (binary content)") from None
    except OSError as error:
        raise BVHError(f"{path.name}: cannot read the file ({error.strerror})") from None
    return parse_bvh(text, path.name)
