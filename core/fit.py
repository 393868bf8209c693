"""Fit the body model to all photos at once: one shape, one pose and one camera per photo.

Stages, each a few Adam steps on the CPU:
1. facing: for each photo, four mirror images of the yaw read from the keypoints (front or
   back, left or right side) each get a camera from the person's pixel size and position,
   refined on the torso keypoints;
2. pose: camera and pose of every hypothesis on all keypoints, the detector's 3D limb
   directions, the pose prior and interpenetration; the best hypothesis of each photo stays;
3. shape: the shared phenotype joins, with the silhouette terms and the shape prior, and
   the photos' poses are pulled together where they nearly agree (`_pose_agreement`).
The body's root bone stays unrotated: the camera holds the person's whole rigid placement.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from .avatar import KEYPOINT_NAMES, BodyFit, Perception, Photo, Settings
from .body_model import BodyModel, Rest
from .camera import FRONT_VIEW, Camera
from .crop import default_focal_px
from .fit_losses import (
    REFERENCE_SIDE,
    BodyProxies,
    SilhouetteTarget,
    body_proxies,
    direction_loss,
    geman_mcclure,
    keypoint_loss,
    penetration_loss,
    silhouette_loss,
    silhouette_target,
)
from .pose_prior import Poser, PoseSpace, pose_space
from .progress import Progress
from .skinning import axis_angle_to_matrix

log = logging.getLogger(__name__)

STAGE_SHARES = (0.1, 0.35, 0.55)
"""Share of `Settings.fit_iterations` spent on facing, pose, and shape with silhouette."""
KEYPOINT_SIGMA = 40.0
"""Reference pixels beyond which a keypoint counts as an outlier (Geman-McClure)."""
SILHOUETTE_SIGMA = 20.0
WEIGHTS = {
    "keypoints": 1.0,
    "directions": 300.0,
    "pose": 30.0,
    "penetration": 1e5,
    "inside": 1.0,
    "coverage": 1.0,
    "shape": 20.0,
    "agreement": 300.0,
}
"""Loss weights; image terms are in reference pixels², the rest scaled to match."""
LEARNING_RATES = {"pose": 0.03, "turn": 0.02, "place": 0.02, "shape": 0.05}
SHAPE_REFRESH = 10
"""Iterations between re-expansions of the linear rest body around the current shape."""
SHAPE_STEP = 1e-3
"""Phenotype step of the finite differences."""
VOXEL = 0.025
"""Metres: one template vertex per voxel this size feeds the silhouette terms."""
AGREEMENT_SIGMA = 0.15
"""Radians: photos whose joint rotations differ by less than this are pulled to one pose
(a person standing still, photographed from several sides); a joint that moved further
between photos (an arm raised in one) is left to its keypoints."""
MIN_CONFIDENCE = 0.5
"""Keypoints below this confidence are left out of the reported error."""
_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
_NOT_ARMS = (*_TORSO, "left_knee", "right_knee", "left_ankle", "right_ankle", "nose")
_LIMBS = (
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("right_shoulder", "left_shoulder"), ("right_hip", "left_hip"),
    ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
    ("left_heel", "left_foot_index"), ("right_heel", "right_foot_index"),
)  # fmt: skip
"""Landmark pairs whose 3D direction the detector's world keypoints give."""


@dataclass
class _Targets:
    """What the photos say, stacked over photos (N) in reference pixels.

    keypoints (N, L, 2) and confidence (N, L) for the body's landmarks; directions (N, P, 3)
    and their confidence (N, P) from the world keypoints (zero without them); intrinsics
    (N, 4) fx, fy, cx, cy in photo pixels; scale (N,) reference pixels per photo pixel.
    """

    keypoints: torch.Tensor
    confidence: torch.Tensor
    directions: torch.Tensor
    direction_confidence: torch.Tensor
    intrinsics: torch.Tensor
    scale: torch.Tensor
    silhouettes: list[SilhouetteTarget]
    sizes: list[tuple[int, int]]
    """Width and height of each photo, pixels."""

    def repeat(self, times: int) -> _Targets:
        """The same targets for `times` hypotheses per photo (photo-major order)."""
        rep = lambda t: t.repeat_interleave(times, 0)  # noqa: E731
        return _Targets(
            rep(self.keypoints), rep(self.confidence), rep(self.directions),
            rep(self.direction_confidence), rep(self.intrinsics), rep(self.scale),
            [s for s in self.silhouettes for _ in range(times)],
            [s for s in self.sizes for _ in range(times)],
        )  # fmt: skip


@dataclass
class _State:
    """The free variables of B fits: pose (B, F, 3) and (B, H, 2); camera rotation
    (B, 3) axis-angle on top of `base` (B, 3, 3); pelvis position in camera (B, 3) as x, y
    and log z (metres); phenotype logits (1, P)."""

    free: torch.Tensor
    hinge: torch.Tensor
    turn: torch.Tensor
    base: torch.Tensor
    place: torch.Tensor
    shape: torch.Tensor

    def select(self, index: torch.Tensor) -> _State:
        return _State(
            self.free[index].detach(), self.hinge[index].detach(), self.turn[index].detach(),
            self.base[index], self.place[index].detach(), self.shape.detach(),
        )  # fmt: skip

    def rotation(self) -> torch.Tensor:
        """(B, 3, 3) world -> camera rotation."""
        return axis_angle_to_matrix(self.turn) @ self.base

    def translation(self) -> torch.Tensor:
        """(B, 3) pelvis position in camera space, metres."""
        return torch.cat([self.place[:, :2], self.place[:, 2:].exp()], dim=1)


def fit_body(
    photos: list[Photo],
    perceptions: list[Perception],
    body: BodyModel,
    settings: Settings,
    progress: Progress | None = None,
) -> BodyFit:
    """Fit one body shape, and a pose and a camera per photo, to the detector's keypoints
    and masks. Raises `Cancelled` when `progress` is cancelled."""
    if len(photos) != len(perceptions) or not photos:
        raise ValueError("fit_body needs one perception per photo, and at least one photo")
    progress = progress or Progress()
    torch.manual_seed(settings.seed)
    with torch.no_grad():
        rest = body.rest(body.default_phenotype)
    space = pose_space(body, rest)
    template = rest.vertices[0].numpy()
    _, picks = np.unique(np.floor(template / VOXEL).astype(np.int64), axis=0, return_index=True)
    skin = np.concatenate([list(body.vertex_landmarks.values()), np.sort(picks)])
    poser = Poser(body, space.moving, skin)
    fitter = _Fitter(body, space, poser, body_proxies(body, rest, space.trunk))
    targets = _prepare(photos, perceptions, body.landmark_names, settings.seed)

    iterations = [max(1, round(settings.fit_iterations * s)) for s in STAGE_SHARES]
    reporter = _Reporter(progress, sum(iterations))
    yaws = [_yaw_estimate(p.keypoints, p.world_keypoints, fitter.width_ratio) for p in perceptions]
    hypotheses = torch.tensor([[a, -a, math.pi - a, math.pi + a] for a in yaws])
    count = hypotheses.shape[1]
    many = targets.repeat(count)
    state = fitter.initial_state(hypotheses.reshape(-1), many)
    fitter.run(state, many, iterations[0], "facing", reporter)
    losses = fitter.run(state, many, iterations[1], "pose", reporter)
    best = losses.view(len(photos), count).argmin(1)
    state = state.select(torch.arange(len(photos)) * count + best)
    log.info("facing hypotheses kept: %s", best.tolist())
    fitter.run(state, targets, iterations[2], "shape", reporter)
    return fitter.result(state, targets)


def _pose_agreement(free: torch.Tensor, hinge: torch.Tensor) -> torch.Tensor:
    """(B,) robust distance of each photo's joint rotations from the photos' mean.

    One photo fixes a limb poorly along its own view ray, and the photos are fused in the
    canonical pose through their own poses: small disagreements blur the fused surface.
    Robust per joint, so that a joint that really moved is let go as a whole.
    """
    squared = torch.cat(
        [((x - x.mean(0, keepdim=True)) ** 2).sum(-1) for x in (free, hinge)], dim=1
    )
    return geman_mcclure(squared, AGREEMENT_SIGMA).sum(1)


class _Reporter:
    """Calls `progress.step` every few iterations (that is also where cancelling happens)."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def tick(self) -> None:
        if self.done % 5 == 0:
            self.progress.step("fitting the body", self.done / self.total)
        self.done += 1


def _prepare(
    photos: list[Photo], perceptions: list[Perception], names: list[str], seed: int
) -> _Targets:
    """Stack the keypoints, 3D directions, intrinsics and masks of every photo."""
    index = [KEYPOINT_NAMES.index(n) for n in names]
    pairs = [(index[names.index(a)], index[names.index(b)]) for a, b in _LIMBS]
    keypoints, confidence, directions, dir_conf, intrinsics, scales, silhouettes = (
        [] for _ in range(7)
    )
    for photo, seen in zip(photos, perceptions, strict=True):
        scale = REFERENCE_SIDE / max(photo.height, photo.width)
        focal = photo.focal_px or default_focal_px(photo)
        keypoints.append(seen.keypoints[index, :2] * scale)
        confidence.append(seen.keypoints[index, 2])
        if seen.world_keypoints is None:
            directions.append(np.zeros((len(pairs), 3)))
            dir_conf.append(np.zeros(len(pairs)))
        else:
            world = seen.world_keypoints
            limb = np.array([world[b] - world[a] for a, b in pairs])
            directions.append(limb / np.maximum(np.linalg.norm(limb, axis=1, keepdims=True), 1e-6))
            dir_conf.append([min(seen.keypoints[a, 2], seen.keypoints[b, 2]) for a, b in pairs])
        intrinsics.append([focal, focal, photo.width / 2, photo.height / 2])
        scales.append(scale)
        silhouettes.append(silhouette_target(seen.mask, scale, seed))
    as_tensor = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    return _Targets(
        as_tensor(keypoints), as_tensor(confidence), as_tensor(directions), as_tensor(dir_conf),
        as_tensor(intrinsics), as_tensor(scales), silhouettes,
        [(p.width, p.height) for p in photos],
    )  # fmt: skip


def _yaw_estimate(keypoints: np.ndarray, world: np.ndarray | None, width_ratio: float) -> float:
    """Yaw (radians, `Camera.looking_at_person` convention: 0 sees the front, π/2 the
    person's left) from the shoulders and hips: their 3D left-right direction when the
    detector gives world keypoints, else their 2D spread against the torso length
    (`width_ratio`: shoulder plus hip width over torso length of the body), with the nose's
    side telling which profile is seen."""
    if world is not None:
        w = {n: world[KEYPOINT_NAMES.index(n)] for n in _TORSO}
        across = w["left_shoulder"] - w["right_shoulder"] + w["left_hip"] - w["right_hip"]
        return math.atan2(-across[2], across[0])
    k = {n: keypoints[KEYPOINT_NAMES.index(n)] for n in (*_TORSO, "nose")}
    shoulders = 0.5 * (k["left_shoulder"][:2] + k["right_shoulder"][:2])
    hips = 0.5 * (k["left_hip"][:2] + k["right_hip"][:2])
    torso = np.linalg.norm(shoulders - hips)
    spread = k["left_shoulder"][0] - k["right_shoulder"][0] + k["left_hip"][0] - k["right_hip"][0]
    cos = float(np.clip(spread / max(torso * width_ratio, 1e-6), -1.0, 1.0))
    # The face points along -sin(yaw) in the image's u: the nose leads on the side it faces.
    sin_sign = -1.0 if k["nose"][2] >= MIN_CONFIDENCE and k["nose"][0] > shoulders[0] else 1.0
    return math.atan2(sin_sign * math.sqrt(1 - cos**2), cos)


class _LinearRest:
    """The rest body as a linear function of the phenotype near where it was last expanded:
    anny's own rest costs about 10 ms with gradients, this a fraction of a millisecond."""

    def __init__(self, body: BodyModel) -> None:
        self.body = body

    def expand_at(self, phenotype: torch.Tensor) -> None:
        """Take value and slope (finite differences) at `phenotype` (1, P)."""
        steps = torch.cat(
            [torch.zeros(1, phenotype.shape[1]), SHAPE_STEP * torch.eye(phenotype.shape[1])]
        )
        with torch.no_grad():
            rest = self.body.rest((phenotype + steps).clamp(0.0, 1.0))
        self.at = phenotype
        values = (rest.vertices, rest.bone_matrices)
        self.base = tuple(x[:1] for x in values)
        self.slope = tuple((x[1:] - x[:1]) / SHAPE_STEP for x in values)

    def __call__(self, phenotype: torch.Tensor) -> Rest:
        delta = phenotype - self.at
        vertices, matrices = (
            base + torch.einsum("bp,p...->b...", delta, slope)
            for base, slope in zip(self.base, self.slope, strict=True)
        )
        return Rest(vertices, matrices, matrices[..., :3, 3], matrices[..., :3, 3])


class _Fitter:
    """The objective of every stage over a batch of fits, and the Adam loop that lowers it."""

    def __init__(
        self, body: BodyModel, space: PoseSpace, poser: Poser, proxies: BodyProxies
    ) -> None:
        self.body, self.space, self.poser, self.proxies = body, space, poser, proxies
        self.names = body.landmark_names
        self.skin_landmarks = len(body.vertex_landmarks)
        with torch.no_grad():
            self.rest = body.rest(body.default_phenotype)
            points, _ = self.points(self.rest, *space.zeros(1), vertices=False)
        self.rest_landmarks = points
        self.pelvis = self.rest.heads[0, space.trunk[0]].clone()
        self.not_arms = torch.tensor([float(n in _NOT_ARMS) for n in self.names])
        self.pairs = torch.tensor([[self.names.index(a), self.names.index(b)] for a, b in _LIMBS])
        at = {n: points[0, i] for i, n in enumerate(self.names)}
        width = (at["left_shoulder"] - at["right_shoulder"]).norm() + (
            at["left_hip"] - at["right_hip"]
        ).norm()
        torso = 0.5 * (
            at["left_shoulder"] + at["right_shoulder"] - at["left_hip"] - at["right_hip"]
        )
        self.width_ratio = float(width / torso.norm())

    def points(
        self, rest: Rest, free: torch.Tensor, hinge: torch.Tensor, vertices: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """World landmarks (B, L, 3) and, if asked, the silhouette vertices (B, V', 3)."""
        turn, at = self.poser.bone_frames(rest, self.space.moving_rotations(free, hinge))
        count = None if vertices else self.skin_landmarks
        skinned = self.poser.skin(rest, turn, at, count)
        landmarks = torch.cat([at[:, self.poser.joints], skinned[:, : self.skin_landmarks]], 1)
        return landmarks, (skinned[:, self.skin_landmarks :] if vertices else None)

    def to_camera(self, state: _State, points: torch.Tensor) -> torch.Tensor:
        """(B, K, 3) world points -> camera space, metres."""
        rotated = (points - self.pelvis) @ state.rotation().transpose(1, 2)
        return rotated + state.translation()[:, None]

    @staticmethod
    def project(camera_points: torch.Tensor, targets: _Targets) -> torch.Tensor:
        """(B, K, 3) camera points -> (B, K, 2) reference pixels."""
        k = targets.intrinsics[:, None]
        z = camera_points[..., 2].clamp(min=1e-3)
        u = k[..., 0] * camera_points[..., 0] / z + k[..., 2]
        v = k[..., 1] * camera_points[..., 1] / z + k[..., 3]
        return torch.stack([u, v], -1) * targets.scale[:, None, None]

    def initial_state(self, yaws: torch.Tensor, targets: _Targets) -> _State:
        """Cameras at `yaws` (B,), placed by least squares so the rest body's torso, legs and
        head land on their keypoints; rest pose; average shape."""
        cos, sin = torch.cos(yaws), torch.sin(yaws)
        zero, one = torch.zeros_like(yaws), torch.ones_like(yaws)
        yaw = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).view(-1, 3, 3)
        base = torch.as_tensor(FRONT_VIEW) @ yaw.transpose(1, 2)
        points = (self.rest_landmarks - self.pelvis) @ base.transpose(1, 2)  # (B, L, 3)
        fx, fy, cx, cy = targets.intrinsics.unbind(1)
        pixels = targets.keypoints / targets.scale[:, None, None]
        du = pixels[..., 0] - cx[:, None]
        dv = pixels[..., 1] - cy[:, None]
        zeros = torch.zeros_like(du)
        # fx tx - du tz = du Yz - fx Yx (and the same for v): linear in the translation.
        rows = torch.cat(
            [
                torch.stack([fx[:, None].expand_as(du), zeros, -du], -1),
                torch.stack([zeros, fy[:, None].expand_as(dv), -dv], -1),
            ],
            1,
        )
        rhs = torch.cat(
            [
                du * points[..., 2] - fx[:, None] * points[..., 0],
                dv * points[..., 2] - fy[:, None] * points[..., 1],
            ],
            1,
        )
        weight = (targets.confidence * self.not_arms).repeat(1, 2).sqrt()
        solution = torch.linalg.lstsq(rows * weight[..., None], (rhs * weight)[..., None]).solution
        t = solution[..., 0]
        t[:, 2] = t[:, 2].clamp(min=0.5)
        free, hinge = self.space.zeros(len(yaws))
        place = torch.cat([t[:, :2], t[:, 2:].log()], 1)
        return _State(free, hinge, torch.zeros(len(yaws), 3), base, place, torch.zeros(1, 0))

    def objective(self, state: _State, targets: _Targets, stage: str, rest: Rest) -> torch.Tensor:
        """(B,) total loss of each fit at `stage` ('facing', 'pose' or 'shape')."""
        landmarks, vertices = self.points(rest, state.free, state.hinge, stage == "shape")
        cam = self.to_camera(state, landmarks)
        confidence = targets.confidence * (self.not_arms if stage == "facing" else 1.0)
        pixels = self.project(cam, targets)
        loss = WEIGHTS["keypoints"] * keypoint_loss(
            pixels, targets.keypoints, confidence, KEYPOINT_SIGMA
        )
        loss = loss + WEIGHTS["directions"] * direction_loss(
            cam, targets.directions, targets.direction_confidence, self.pairs
        )
        if stage == "facing":
            return loss
        loss = loss + WEIGHTS["pose"] * self.space.prior(state.free, state.hinge)
        loss = loss + WEIGHTS["penetration"] * penetration_loss(landmarks, self.names, self.proxies)
        if stage == "pose":
            return loss
        outline = self.project(self.to_camera(state, vertices), targets)
        for b, silhouette in enumerate(targets.silhouettes):
            inside, coverage = silhouette_loss(outline[b], silhouette, SILHOUETTE_SIGMA)
            loss[b] = loss[b] + WEIGHTS["inside"] * inside + WEIGHTS["coverage"] * coverage
        # The prior holds against each photo, not against their sum: photos from more sides
        # repeat the same clothes around the body (the silhouettes' coverage pulls the body
        # out to them), they do not outvote the prior (a person from 1, 2, 4 photos fitted
        # 21.8, 24.1, 25.6 cm deep at the chest, truth 21.3).
        shape_prior = WEIGHTS["shape"] * ((torch.sigmoid(state.shape) - 0.5) ** 2).sum()
        agreement = WEIGHTS["agreement"] * _pose_agreement(state.free, state.hinge)
        return loss + shape_prior + agreement

    def run(
        self, state: _State, targets: _Targets, iterations: int, stage: str, reporter: _Reporter
    ) -> torch.Tensor:
        """Lower the stage's objective in place; returns (B,) final losses."""
        groups = [("turn", state.turn), ("place", state.place)]
        if stage != "facing":
            groups += [("pose", state.free), ("pose", state.hinge)]
        if stage == "shape":
            if state.shape.shape[1] == 0:
                state.shape = torch.zeros(1, len(self.body.phenotype_names))
            groups.append(("shape", state.shape))
        for _, tensor in groups:
            tensor.requires_grad_(True)
        optimiser = torch.optim.Adam(
            [{"params": [t], "lr": LEARNING_RATES[n]} for n, t in groups], foreach=True
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda i: 1.0 - 0.9 * i / max(iterations, 1)
        )
        shape = _LinearRest(self.body)
        rest = self.rest
        for i in range(iterations):
            reporter.tick()
            if stage == "shape":
                if i % SHAPE_REFRESH == 0:
                    shape.expand_at(torch.sigmoid(state.shape.detach()))
                rest = shape(torch.sigmoid(state.shape))
            optimiser.zero_grad()
            self.objective(state, targets, stage, rest).sum().backward()
            optimiser.step()
            schedule.step()
        for _, tensor in groups:
            tensor.requires_grad_(False)
        with torch.no_grad():
            if stage == "shape":
                rest = self.body.rest(torch.sigmoid(state.shape))
            return self.objective(state, targets, stage, rest)

    def result(self, state: _State, targets: _Targets) -> BodyFit:
        """The fitted shape, poses and cameras, with each photo's median keypoint error."""
        with torch.no_grad():
            phenotype = torch.sigmoid(state.shape)
            rest = self.body.rest(phenotype)
            landmarks, _ = self.points(rest, state.free, state.hinge, vertices=False)
            pixels = self.project(self.to_camera(state, landmarks), targets)
            errors = (pixels - targets.keypoints).norm(dim=-1) / targets.scale[:, None]
            rotation = state.rotation()
            translation = state.translation() - rotation @ self.pelvis
            poses = self.space.rotations(state.free, state.hinge)
        cameras, medians = [], []
        for b, (size, k) in enumerate(zip(targets.sizes, targets.intrinsics.tolist(), strict=True)):
            cameras.append(
                Camera(*k, *size, rotation[b].numpy().copy(), translation[b].numpy().copy())
            )
            seen = targets.confidence[b] >= MIN_CONFIDENCE
            medians.append(float(errors[b][seen].median()) if seen.any() else float("nan"))
        return BodyFit(
            rig=self.body.rig,
            phenotype=phenotype.numpy().astype(np.float32),
            poses=poses.numpy().astype(np.float32),
            cameras=cameras,
            keypoint_error_px=medians,
        )
