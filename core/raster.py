"""A CPU triangle rasteriser in torch, shared by the pipeline, the synthetic data and the
benchmarks.

It keeps, per pixel, the nearest or the farthest triangle (front and back depth), with
perspective-correct barycentrics to interpolate any per-vertex attribute (colour, normals,
skinning weights). Pixel (row i, column j) has its centre at u = j, v = i, the convention of
`camera.project`. Not differentiable: losses that need gradients project points instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .camera import Camera

_DEPTH_SCALE = 1e5
"""Depth is quantised to 10 µm to pack it with the triangle index into one int64 key."""
_PIXELS_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class Fragments:
    """What one rasterisation pass saw.

    face: (H, W) int64 triangle index, -1 where empty; bary: (H, W, 3) float32
    perspective-correct barycentrics; depth: (H, W) float32 camera z in metres, inf where
    empty.
    """

    face: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(H, W) bool: pixels covered by a triangle."""
        return self.face >= 0

    def interpolate(self, attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(N, C) per-vertex attributes -> (H, W, C), zero where empty."""
        faces = torch.as_tensor(faces, dtype=torch.long)
        covered = self.mask
        out = torch.zeros(*self.face.shape, attributes.shape[1], dtype=attributes.dtype)
        tri = faces[self.face[covered]]
        b = self.bary[covered].to(attributes.dtype)
        out[covered] = (attributes[tri] * b[..., None]).sum(1)
        return out


def rasterize(
    screen: torch.Tensor, faces: torch.Tensor, height: int, width: int, farthest: bool = False
) -> Fragments:
    """Rasterise triangles given in screen space.

    screen: (N, 3) float per vertex: pixel u, pixel v, camera depth z (metres, > 0).
    faces: (F, 3) int vertex indices. Both windings are drawn (no culling).
    farthest: keep the farthest surface instead of the nearest (the back depth).
    """
    screen = screen.detach().to(torch.float64)
    faces = torch.as_tensor(faces, dtype=torch.long)
    tri = screen[faces]  # (F, 3, 3)
    keep = (tri[..., 2] > 1e-3).all(1)
    x0 = tri[..., 0].amin(1).ceil().clamp(0, width - 1)
    x1 = tri[..., 0].amax(1).floor().clamp(0, width - 1)
    y0 = tri[..., 1].amin(1).ceil().clamp(0, height - 1)
    y1 = tri[..., 1].amax(1).floor().clamp(0, height - 1)
    keep &= (tri[..., 0].amax(1) >= 0) & (tri[..., 0].amin(1) <= width - 1)
    keep &= (tri[..., 1].amax(1) >= 0) & (tri[..., 1].amin(1) <= height - 1)
    keep &= (x1 >= x0) & (y1 >= y0)
    ids = torch.nonzero(keep)[:, 0]
    bw = (x1 - x0 + 1)[ids].long()
    bh = (y1 - y0 + 1)[ids].long()
    order = torch.argsort(bw * bh)
    ids, bw, bh = ids[order], bw[order], bh[order]

    empty = torch.iinfo(torch.int64).min if farthest else torch.iinfo(torch.int64).max
    best = torch.full((height * width,), empty, dtype=torch.int64)
    start = 0
    while start < len(ids):
        # Grow the chunk while the padded pixel count stays bounded (faces sorted by size).
        end = start + 1
        step = 1024
        while end < len(ids):
            nxt = min(end + step, len(ids))
            area = (nxt - start) * int(bw[nxt - 1]) * int(bh[nxt - 1])
            if area > _PIXELS_PER_CHUNK:
                break
            end = nxt
        chunk = ids[start:end]
        w = int(bw[start:end].max())
        h = int(bh[start:end].max())
        dy, dx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        px = x0[chunk, None, None] + dx
        py = y0[chunk, None, None] + dy
        inside = (px <= x1[chunk, None, None]) & (py <= y1[chunk, None, None])
        b, z = _barycentric(tri[chunk], px, py)
        inside &= (b >= -1e-9).all(-1) & torch.isfinite(z) & (z > 1e-3)
        f = chunk[:, None, None].expand_as(px)[inside]
        pix = (py[inside] * width + px[inside]).long()
        key = (z[inside] * _DEPTH_SCALE).long() * (1 << 32) + f
        best.scatter_reduce_(0, pix, key, "amax" if farthest else "amin")
        start = end

    covered = best != empty
    face = torch.full((height * width,), -1, dtype=torch.int64)
    face[covered] = best[covered] & 0xFFFFFFFF
    pix = torch.nonzero(covered)[:, 0]
    bary = torch.zeros(height * width, 3, dtype=torch.float32)
    depth = torch.full((height * width,), float("inf"), dtype=torch.float32)
    if len(pix):
        b, z = _barycentric(
            tri[face[pix]], (pix % width).to(torch.float64), (pix // width).to(torch.float64)
        )
        zi = tri[face[pix]][..., 2]
        persp = b / zi
        bary[pix] = (persp / persp.sum(-1, keepdim=True)).float()
        depth[pix] = z.float()
    return Fragments(
        face.view(height, width), bary.view(height, width, 3), depth.view(height, width)
    )


def _barycentric(
    tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen-space barycentrics (..., 3) and perspective-correct depth (...) of pixels.

    tri: (T, 3, 3) screen-space triangles; px, py: (T, ...) pixel coordinates.
    """
    shape = (tri.shape[0],) + (1,) * (px.dim() - 1)
    ax, ay, az = (tri[:, 0, k].view(shape) for k in range(3))
    bx, by, bz = (tri[:, 1, k].view(shape) for k in range(3))
    cx, cy, cz = (tri[:, 2, k].view(shape) for k in range(3))
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    safe = torch.where(area.abs() < 1e-12, torch.full_like(area, float("nan")), area)
    w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / safe
    w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / safe
    w2 = 1 - w0 - w1
    b = torch.stack([w0, w1, w2], dim=-1)
    z = 1.0 / (w0 / az + w1 / bz + w2 / cz)
    return torch.nan_to_num(b, nan=-1.0), z


@dataclass(frozen=True)
class DepthRender:
    """Front and back rasterisation of one mesh seen by one camera."""

    front: Fragments
    back: Fragments

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool silhouette."""
        return self.front.mask.numpy()


def render_depth(
    camera: Camera, vertices: torch.Tensor, faces: np.ndarray | torch.Tensor
) -> DepthRender:
    """Front (nearest) and back (farthest) fragments of a mesh.

    vertices: (N, 3) world points, metres; faces: (F, 3) int.
    """
    screen = camera.project(torch.as_tensor(vertices, dtype=torch.float32))
    faces_t = torch.as_tensor(np.asarray(faces), dtype=torch.long)
    return DepthRender(
        rasterize(screen, faces_t, camera.height, camera.width),
        rasterize(screen, faces_t, camera.height, camera.width, farthest=True),
    )
