"""The pose space of the body fit: which bones turn, how, and what an unnatural pose costs.

A pose is one rotation per bone in that bone's own rest frame (the local rotations of
`skinning.forward_kinematics`). The root stays unrotated: the camera holds the person's
global rotation. Fingers, toes and helper bones stay at rest. Elbows and knees are hinges:
one bend angle about an axis found on the rest body (the forearm bends forward, the shin
backward), plus a twist about the bone for the forearm; they cannot bend the wrong way.
Spine, neck and head may bend but hardly twist. Roles are found from the rig's keypoint
bones, so every rig of the body model gets the same treatment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .body_model import BodyModel, Rest
from .skinning import axis_angle_to_matrix

# Prior weight per rotation component (local x, y = along the bone = twist, z), per role:
# the larger, the stiffer. Units: loss per rad².
_ROLE_WEIGHTS = {
    "spine": (4.0, 12.0, 6.0),
    "clavicle": (30.0, 30.0, 30.0),
    "upper_arm": (0.2, 1.0, 0.2),
    "hand": (2.0, 2.0, 2.0),
    "thigh": (0.5, 3.0, 0.5),
    "foot": (3.0, 6.0, 3.0),
    "neck": (2.0, 4.0, 3.0),
    "other": (30.0, 30.0, 30.0),
}
BEND_WEIGHT = 0.1
"""Prior on the hinge bend (per rad²): weak, bent elbows and knees are natural."""
FOREARM_TWIST_WEIGHT = 2.0
BEND_RANGE = (np.radians(-5.0), np.radians(150.0))
"""Total bend (rest bend included) that elbows and knees may reach, radians."""
SPINE_TWIST_LIMIT = np.radians(35.0)
"""Summed twist of the spine, neck and head bones beyond which the limit penalty starts."""
LIMIT_WEIGHT = 300.0


@dataclass(frozen=True)
class PoseSpace:
    """Free parameters -> local rotations, and the prior over them.

    free: bones with a 3-DOF rotation (axis-angle in the bone's rest frame);
    hinges: elbow and knee bones; hinge_axes (H, 3) their bend axes in the bone's rest
    frame; rest_bend (H,) radians of bend already in the rest pose; twists (H,) 1 where the
    hinge may also twist about the bone (forearms); weights (F, 3) prior per free component;
    twisting: indices into `free` of the spine, neck and head bones; trunk: the root and
    spine bones (what moves the torso).
    """

    bones: int
    free: list[int]
    hinges: list[int]
    hinge_axes: torch.Tensor
    rest_bend: torch.Tensor
    twists: torch.Tensor
    weights: torch.Tensor
    twisting: list[int]
    trunk: list[int]

    def zeros(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest-pose parameters: free (B, F, 3) axis-angles and hinges (B, H, 2) bend, twist."""
        return torch.zeros(batch, len(self.free), 3), torch.zeros(batch, len(self.hinges), 2)

    @property
    def moving(self) -> list[int]:
        """The bones `moving_rotations` turns, in its order."""
        return self.free + self.hinges

    def moving_rotations(self, free: torch.Tensor, hinge: torch.Tensor) -> torch.Tensor:
        """(B, F, 3), (B, H, 2) parameters -> (B, F + H, 3, 3) local rotations of `moving`."""
        along = torch.tensor([0.0, 1.0, 0.0])
        bend = hinge[..., :1] * self.hinge_axes
        twist = hinge[..., 1:] * self.twists[:, None] * along
        turns = axis_angle_to_matrix(torch.cat([free, bend, twist], dim=1))
        f, h = free.shape[1], hinge.shape[1]
        return torch.cat([turns[:, :f], turns[:, f : f + h] @ turns[:, f + h :]], dim=1)

    def rotations(self, free: torch.Tensor, hinge: torch.Tensor) -> torch.Tensor:
        """(B, F, 3), (B, H, 2) parameters -> (B, J, 3, 3) local rotations, identity elsewhere."""
        batch = free.shape[0]
        moved = self.moving_rotations(free, hinge)
        index = torch.tensor(self.moving)
        rest = torch.eye(3).expand(batch, self.bones, 3, 3)
        mask = torch.zeros(self.bones, dtype=torch.bool)
        mask[index] = True
        order = torch.full((self.bones,), 0, dtype=torch.long)
        order[index] = torch.arange(len(index))
        return torch.where(mask[None, :, None, None], moved[:, order], rest)

    def prior(self, free: torch.Tensor, hinge: torch.Tensor) -> torch.Tensor:
        """(B,) cost of the pose: weighted magnitude, joint limits and spine twist."""
        cost = (self.weights * free**2).sum((1, 2))
        cost = cost + BEND_WEIGHT * (hinge[..., 0] ** 2).sum(1)
        cost = cost + FOREARM_TWIST_WEIGHT * ((hinge[..., 1] * self.twists) ** 2).sum(1)
        total_bend = hinge[..., 0] + self.rest_bend
        low, high = BEND_RANGE
        beyond = torch.relu(low - total_bend) + torch.relu(total_bend - high)
        cost = cost + LIMIT_WEIGHT * (beyond**2).sum(1)
        twist = free[:, self.twisting, 1].sum(1)
        return cost + LIMIT_WEIGHT * torch.relu(twist.abs() - SPINE_TWIST_LIMIT) ** 2


def pose_space(body: BodyModel, rest: Rest) -> PoseSpace:
    """The pose space of `body`, hinge axes measured on `rest` (batch 1, average shape)."""
    parents = body.parents
    joint = body.joint_bones

    def ancestors(bone: int) -> list[int]:
        chain = []
        while parents[bone] >= 0:
            bone = parents[bone]
            chain.append(bone)
        return chain

    roots = {j for j, p in enumerate(parents) if p < 0}
    spine = set(ancestors(joint["left_shoulder"])) & set(ancestors(joint["right_shoulder"]))
    spine -= roots
    head = int(body.skin_weights[body.vertex_landmarks["nose"]].argmax())
    roles: dict[int, str] = dict.fromkeys(spine, "spine")
    roles.update(dict.fromkeys(set([head, *ancestors(head)]) - spine - roots, "neck"))
    hinges, axes, bends, twists = [], [], [], []
    heads = rest.heads[0]
    frames = rest.bone_matrices[0, :, :3, :3]
    for side in ("left", "right"):
        for upper, middle, end, role, forward, twist in (
            ("shoulder", "elbow", "wrist", "upper_arm", -1.0, 1.0),
            ("hip", "knee", "ankle", "thigh", 1.0, 0.0),
        ):
            a, b, c = (joint[f"{side}_{name}"] for name in (upper, middle, end))
            for bone in ancestors(a):
                roles.setdefault(bone, "clavicle" if role == "upper_arm" else "other")
            roles[a] = role
            roles[joint[f"{side}_{end}"]] = "hand" if role == "upper_arm" else "foot"
            parent_dir = heads[b] - heads[a]
            child_dir = heads[c] - heads[b]
            # Bending turns the limb toward `forward` (world -Y is the person's front).
            axis = torch.linalg.cross(parent_dir, torch.tensor([0.0, forward, 0.0]))
            axis = axis / axis.norm()
            bend = torch.atan2(
                torch.dot(torch.linalg.cross(parent_dir, child_dir), axis),
                torch.dot(parent_dir, child_dir),
            )
            hinges.append(b)
            axes.append(frames[b].T @ axis)
            bends.append(bend)
            twists.append(twist)
    for bone in roots:
        roles.pop(bone, None)
    free = sorted(roles)
    return PoseSpace(
        bones=len(parents),
        free=free,
        hinges=hinges,
        hinge_axes=torch.stack(axes).float(),
        rest_bend=torch.stack(bends).float(),
        twists=torch.tensor(twists),
        weights=torch.tensor([_ROLE_WEIGHTS[roles[b]] for b in free]),
        twisting=[i for i, b in enumerate(free) if roles[b] in ("spine", "neck")],
        trunk=sorted(spine | roots),
    )


class Poser:
    """Differentiable forward kinematics and skinning of a few vertices, for the fit.

    Only the bones that turn are posed, one tree level at a time (a few batched matmuls
    rather than one per bone): a bone at rest moves exactly like its parent, so its skinning
    weight goes to its nearest turning ancestor. Only the vertices the losses look at are
    skinned, with their largest weights.
    """

    def __init__(
        self, body: BodyModel, moving: list[int], vertices: np.ndarray, influences: int = 4
    ) -> None:
        """moving: the bones `rotations` turn, in that order (the roots are added, unturned);
        vertices: indices of the template vertices `skin` returns, in that order."""
        parents = body.parents
        roots = [j for j, p in enumerate(parents) if p < 0]
        carrier: dict[int, int] = {}
        depth = dict.fromkeys(roots, 0)
        for j, p in enumerate(parents):  # parents come before children in the rig
            if p >= 0 and j in moving:
                depth[j] = depth[carrier[p]] + 1
            carrier[j] = j if j in depth else carrier[p]
        # Nodes (the bones posed) sorted by tree level, so each level is a slice.
        self.nodes = sorted(depth, key=lambda j: (depth[j], j))
        node = {j: i for i, j in enumerate(self.nodes)}
        levels = [depth[j] for j in self.nodes]
        self.slices = [
            slice(levels.index(d), len(levels) - levels[::-1].index(d)) for d in sorted(set(levels))
        ]
        self.parent_node = torch.tensor(
            [node[carrier[parents[j]]] if parents[j] >= 0 else 0 for j in self.nodes]
        )
        self.parent_slots = [
            self.parent_node[s] - self.slices[i].start for i, s in enumerate(self.slices[1:])
        ]
        self.roots = len(roots)
        self.rotation_order = torch.tensor([moving.index(j) for j in self.nodes[self.roots :]])
        self.bone_index = torch.tensor(self.nodes)
        merged = torch.zeros(len(vertices), len(self.nodes))
        merged.index_add_(
            1,
            torch.tensor([node[carrier[j]] for j in range(len(parents))]),
            body.skin_weights[torch.as_tensor(vertices)],
        )
        weights, largest = merged.topk(min(influences, len(self.nodes)), dim=1)
        self.weights = torch.zeros_like(merged).scatter_(1, largest, weights)
        self.weights /= self.weights.sum(1, keepdim=True)
        self.vertices = torch.as_tensor(vertices, dtype=torch.long)
        self.joints = [node[j] for j in body.joint_bones.values()]

    def bone_frames(self, rest: Rest, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed frames of the nodes (`self.nodes`): rest (batch 1 or B), rotations
        (B, M, 3, 3) of the moving bones -> rotations (B, N, 3, 3) and heads (B, N, 3), world."""
        matrices = rest.bone_matrices[:, self.bone_index]
        frames, heads = matrices[..., :3, :3], matrices[..., :3, 3]
        batch = rotations.shape[0]
        parent_frames = frames[:, self.parent_node].transpose(-1, -2)[:, self.roots :]
        relative = parent_frames @ frames[:, self.roots :] @ rotations[:, self.rotation_order]
        offset = parent_frames @ (heads - heads[:, self.parent_node])[:, self.roots :, :, None]
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(*relative.shape[:2], 1, 4)
        local = torch.cat(
            [torch.cat([relative, offset.expand_as(relative[..., :1])], -1), bottom], -2
        )
        posed = [matrices[:, : self.roots].expand(batch, -1, -1, -1)]
        for level, slots in zip(self.slices[1:], self.parent_slots, strict=True):
            part = slice(level.start - self.roots, level.stop - self.roots)
            posed.append(posed[-1][:, slots] @ local[:, part])
        posed = torch.cat(posed, 1)
        return posed[..., :3, :3], posed[..., :3, 3]

    def skin(
        self, rest: Rest, turn: torch.Tensor, at: torch.Tensor, count: int | None = None
    ) -> torch.Tensor:
        """Posed vertices (B, V', 3) of the chosen vertices (the first `count` of them if
        given), from `bone_frames`' output."""
        frames = rest.bone_matrices[:, self.bone_index, :3, :3]
        heads = rest.bone_matrices[:, self.bone_index, :3, 3]
        rotation = turn @ frames.transpose(-1, -2)  # rest -> posed
        shift = at - (rotation @ heads[..., None])[..., 0]
        weights = self.weights[:count]
        points = rest.vertices[:, self.vertices[:count]]
        r = (weights @ rotation.flatten(2)).unflatten(2, (3, 3))
        return (r @ points[..., None])[..., 0] + weights @ shift
