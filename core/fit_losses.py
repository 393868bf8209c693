"""The terms the body fit minimises: keypoints, limb directions, silhouette, interpenetration.

Image terms are in pixels of a 512-pixel image (`scale` converts each photo's pixels), so
their weights do not depend on the photo size. Every term returns one value per photo (B,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial import cKDTree

from .body_model import BodyModel, Rest

REFERENCE_SIDE = 512.0
"""Image terms are measured in pixels of an image this many pixels on its longer side."""
MASK_SAMPLES = 700
"""Outline and interior mask pixels each, at most, that the coverage term looks at."""
COVERAGE_SLACK = 1.0
"""Pixels: a mask pixel this close to a projected body vertex counts as covered (vertex
spacing in the image is a few pixels)."""
NEAREST_CHUNK = 2048
"""Queries per brute-force nearest search on a GPU (2048 × 20k distances: 160 MB)."""


def geman_mcclure(squared: torch.Tensor, sigma: float) -> torch.Tensor:
    """Robust cost of squared residuals: quadratic near zero, flat at sigma² for outliers."""
    return squared * sigma**2 / (squared + sigma**2)


def keypoint_loss(
    pixels: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Robust reprojection error: pixels and target (B, L, 2) in reference pixels,
    confidence (B, L) in [0, 1]. Returns (B,) confidence-weighted mean."""
    squared = ((pixels - target) ** 2).sum(-1)
    cost = (confidence * geman_mcclure(squared, sigma)).sum(1)
    return cost / confidence.sum(1).clamp(min=1e-6)


def direction_loss(
    points: torch.Tensor, directions: torch.Tensor, confidence: torch.Tensor, pairs: torch.Tensor
) -> torch.Tensor:
    """Disagreement of limb directions with the detector's 3D keypoints.

    points: (B, L, 3) landmarks in camera space; pairs: (P, 2) landmark indices (from, to);
    directions: (B, P, 3) unit directions the detector saw, camera axes; confidence (B, P).
    Returns (B,) weighted mean of 1 - cos.
    """
    limb = points[:, pairs[:, 1]] - points[:, pairs[:, 0]]
    cos = (F.normalize(limb, dim=-1) * directions).sum(-1)
    return (confidence * (1 - cos)).sum(1) / confidence.sum(1).clamp(min=1e-6)


@dataclass(frozen=True)
class SilhouetteTarget:
    """One photo's person mask, prepared for the silhouette terms.

    outside: (1, 1, H, W) distance (reference pixels) from each pixel to the mask, 0 inside;
    samples: (M, 2) u, v reference pixels of mask pixels (outline and interior) the body
    must cover; scale: reference pixels per photo pixel.
    """

    outside: torch.Tensor
    samples: torch.Tensor
    scale: float


def silhouette_target(mask: np.ndarray, scale: float, seed: int = 0) -> SilhouetteTarget:
    """Prepare the (H, W) float mask of one photo for `silhouette_loss`."""
    person = mask > 0.5
    outside = ndimage.distance_transform_edt(~person) * scale
    outline = person & ~ndimage.binary_erosion(person)
    rng = np.random.default_rng(seed)
    picks = []
    for region in (outline, person & ~outline):
        v, u = np.nonzero(region)
        keep = rng.choice(len(u), min(len(u), MASK_SAMPLES), replace=False)
        picks.append(np.stack([u[keep], v[keep]], axis=1))
    samples = np.concatenate(picks).astype(np.float32) * scale
    return SilhouetteTarget(
        torch.as_tensor(outside, dtype=torch.float32)[None, None],
        torch.as_tensor(samples),
        scale,
    )


def silhouette_loss(
    pixels: torch.Tensor, target: SilhouetteTarget, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Body vs mask in one photo. pixels: (V, 2) projected body vertices, reference pixels.

    Returns (inside, coverage): the robust mean squared distance of the vertices to the mask
    (body outside the person), and of the mask samples to their nearest projected vertex
    (person the body does not reach). Both scalars.
    """
    height, width = target.outside.shape[-2:]
    size = torch.tensor([width - 1, height - 1], dtype=pixels.dtype, device=pixels.device)
    size = size * target.scale
    grid = (2 * pixels / size - 1)[None, None]
    inside = F.grid_sample(target.outside, grid, align_corners=True, padding_mode="border")
    # Beyond the border the distance keeps growing, so vertices off the image come back.
    beyond = (torch.relu(-pixels) + torch.relu(pixels - size)).sum(-1)
    inside_cost = geman_mcclure((inside[0, 0, 0] + beyond) ** 2, sigma).mean()
    nearest = nearest_points(target.samples, pixels.detach())
    gap = torch.relu((target.samples - pixels[nearest]).norm(dim=-1) - COVERAGE_SLACK)
    return inside_cost, geman_mcclure(gap**2, sigma).mean()


def nearest_points(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(M,) index of each query's nearest point, (M, D) and (N, D): a k-d tree on the CPU;
    on a GPU, brute-force distances in chunks, which it runs faster than a copy to the CPU."""
    if points.device.type == "cpu":
        _, nearest = cKDTree(points.numpy()).query(queries.numpy())
        return torch.as_tensor(nearest)
    return nearest_by_distance(queries, points)


def nearest_by_distance(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """`nearest_points` by brute force, NEAREST_CHUNK queries at a time (bounded memory)."""
    exact = "donot_use_mm_for_euclid_dist"  # the matrix-product shortcut loses the near ties
    chunks = [torch.cdist(chunk, points, compute_mode=exact).argmin(1)
              for chunk in queries.split(NEAREST_CHUNK)]  # fmt: skip
    return torch.cat(chunks)


@dataclass(frozen=True)
class BodyProxies:
    """Simple solids that stand in for the body against interpenetration.

    torso: ellipse half-width and half-depth (metres) of the trunk around the hip-shoulder
    line and its forward offset; arm and leg: radii (metres) of the limb capsules.
    """

    half_width: float
    half_depth: float
    forward_offset: float
    arm: float
    leg: float


def body_proxies(body: BodyModel, rest: Rest, torso_bones: list[int]) -> BodyProxies:
    """Measure the proxies on a rest body (batch 1, Z up, facing -Y, no gradient)."""
    vertices = rest.vertices[0].detach().numpy()
    dominant = body.skin_weights.argmax(1).numpy()
    joints = {k: rest.heads[0, j].detach().numpy() for k, j in body.joint_bones.items()}
    trunk = vertices[np.isin(dominant, torso_bones)]
    centre = 0.5 * (joints["left_hip"] + joints["right_hip"])
    half_width = np.percentile(np.abs(trunk[:, 0] - centre[0]), 90)
    front, back = np.percentile(trunk[:, 1], [5, 95])

    def radius(start: str, end: str) -> float:
        bone = body.joint_bones[start]
        a, b = joints[start], joints[end]
        points = vertices[dominant == bone] - a
        axis = (b - a) / np.linalg.norm(b - a)
        return float(np.median(np.linalg.norm(points - np.outer(points @ axis, axis), axis=1)))

    return BodyProxies(
        half_width=float(half_width),
        half_depth=float(0.5 * (back - front)),
        forward_offset=float(centre[1] - 0.5 * (front + back)),
        arm=radius("left_elbow", "left_wrist"),
        leg=radius("left_knee", "left_ankle"),
    )


def _limb_samples(start: float) -> torch.Tensor:
    """(10, 3) weights that mix a limb's three joints (root, middle, end) into five points
    from fraction `start` of the upper segment to the middle joint, then five down the lower
    segment to the end."""
    t = torch.linspace(0.0, 1.0, 5)
    upper = start + (1 - start) * t
    zero = torch.zeros(5)
    return torch.cat([torch.stack([1 - upper, upper, zero], 1), torch.stack([zero, 1 - t, t], 1)])


_ARM_SAMPLES = _limb_samples(0.5)
_LEG_SAMPLES = _limb_samples(0.5)
_ARM = ("shoulder", "elbow", "wrist")
_LEG = ("hip", "knee", "ankle")


def penetration_loss(
    landmarks: torch.Tensor, names: list[str], proxies: BodyProxies
) -> torch.Tensor:
    """(B,) squared depth (metres²) of forearms and lower upper arms inside the trunk, and of
    one leg inside the other. landmarks: (B, L, 3) world positions named by `names`."""

    def limbs(joints: tuple[str, ...]) -> torch.Tensor:
        index = [[names.index(f"{side}_{j}") for j in joints] for side in ("left", "right")]
        return landmarks[:, torch.tensor(index)]  # (B, 2 sides, 3 joints, 3)

    arms, legs = limbs(_ARM), limbs(_LEG)
    hip = legs[:, :, 0].mean(1)
    up = arms[:, :, 0].mean(1) - hip
    length = up.norm(dim=-1, keepdim=True)
    up = up / length
    side = legs[:, 0, 0] - legs[:, 1, 0]
    side = F.normalize(side - (side * up).sum(-1, keepdim=True) * up, dim=-1)
    # The person's front is -Y at rest with left = +X and up = +Z: forward = left × up.
    forward = torch.linalg.cross(side, up)
    rel = torch.einsum("sk,bikc->bisc", _ARM_SAMPLES, arms) - hip[:, None, None]
    axes = torch.stack([up / length, side, forward], 1)  # (B, 3, 3)
    height, x, y = torch.einsum("bisc,bac->abis", rel, axes)
    x = x / (proxies.half_width + proxies.arm)
    y = (y - proxies.forward_offset) / (proxies.half_depth + proxies.arm)
    depth = torch.relu(1 - torch.sqrt(x**2 + y**2 + 1e-8))
    within = ((height > 0.0) & (height < 1.0)).float()
    scale = min(proxies.half_width, proxies.half_depth)
    cost = (within * (depth * scale) ** 2).sum((1, 2))
    leg = torch.einsum("sk,bikc->bisc", _LEG_SAMPLES, legs)
    apart = torch.cdist(leg[:, 0], leg[:, 1])
    return cost + (torch.relu(2 * proxies.leg - apart) ** 2).sum((1, 2))
