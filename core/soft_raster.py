"""A soft silhouette rasteriser in torch: the coverage of every pixel by a triangle mesh,
differentiable in the projected vertices, so that the refinement can compare the posed
avatar's outline with a photo's mask pixel by pixel (`refine`, `benchmarks/soft_raster.py`).

Each triangle f covers pixel p with D = sigmoid(±d(p, f)² / sigma) (+ inside, - outside, d
the distance to its nearest edge) and the pixel's coverage is 1 - Π_f (1 - D), as in SoftRas
(Liu et al. 2019). Only pixel-triangle pairs within a triangle's bounding box grown by the
distance where D falls below 1e-4 are visited, so the cost follows the mesh's area in pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SIGMA = 0.02
"""Pixels² of the sigmoid's width. Wider blurs a dense mesh's outline outwards (many small
triangles each add a little near the edge), and the refinement then shrinks the mesh to
match: with 67k triangles on a 256-pixel person, the soft silhouette's IoU with the hard one
is 0.98 at 0.02, 0.95 at 0.1 and 0.89 at 0.5 (SoftRas's 1e-4 in NDC is about 1.6 here); in
the refinement (3 people, 4 photos) 0.1 gave silhouette IoU 0.954 and 0.02 gave 0.976."""


def soft_silhouette(
    pixels: torch.Tensor, faces: torch.Tensor, height: int, width: int, sigma: float = SIGMA
) -> torch.Tensor:
    """(H, W) coverage in [0, 1] of the triangles `faces` (F, 3) over vertices at `pixels`
    (V, 2) u, v with pixel centres at integers; differentiable in `pixels`."""
    device = pixels.device
    margin = math.sqrt(sigma * math.log(1e4))
    tri = pixels[faces]  # (F, 3, 2)
    with torch.no_grad():
        low = (tri.min(1).values - margin).ceil().clamp(min=0)
        corner = torch.tensor([width - 1.0, height - 1.0], device=device)
        high = torch.minimum((tri.max(1).values + margin).floor(), corner)
        extent = (high - low + 1).clamp(min=0).long()
        count = extent[:, 0] * extent[:, 1]
        face = torch.repeat_interleave(torch.arange(len(faces), device=device), count)
        start = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        local = torch.arange(len(face), device=device) - start
        u = low[face, 0].long() + local % extent[face, 0]
        v = low[face, 1].long() + local // extent[face, 0]
    point = torch.stack([u, v], 1).to(pixels.dtype)
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    distance = torch.stack([_to_segment(point, a, b), _to_segment(point, b, c),
                            _to_segment(point, c, a)]).min(0).values  # fmt: skip
    sides = torch.stack([_cross(b - a, point - a), _cross(c - b, point - b),
                         _cross(a - c, point - c)])  # fmt: skip
    inside = (sides >= 0).all(0) | (sides <= 0).all(0)
    signed = torch.where(inside, distance**2, -(distance**2)) / sigma
    # log(1 - sigmoid(x)) = -softplus(x): the product of the misses as a sum, stably.
    missed = torch.zeros(height * width, dtype=pixels.dtype, device=device)
    missed = missed.index_add(0, v * width + u, -F.softplus(signed))
    return 1 - torch.exp(missed).view(height, width)


def _cross(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]


def _to_segment(point: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from each point to the segment a-b."""
    edge = b - a
    t = ((point - a) * edge).sum(1) / (edge * edge).sum(1).clamp(min=1e-12)
    return (point - (a + t.clamp(0, 1)[:, None] * edge)).norm(dim=1)
