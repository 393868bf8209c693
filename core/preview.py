"""Shaded previews of meshes for reports and benchmarks (not for the avatar itself)."""

from __future__ import annotations

import numpy as np
import torch

from .camera import Camera
from .raster import rasterize


def shade(
    camera: Camera,
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray | None = None,
    uv: np.ndarray | None = None,
    texture: np.ndarray | None = None,
    background: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a mesh with a headlight and Lambert shading.

    vertices (V, 3) world metres; faces (F, 3); colour from `texture` (T, T, 3) uint8 at
    `uv` (V, 2), else per-vertex `colors` (V, 3) uint8, else light grey. `background`
    (H, W, 3) uint8 shows where the mesh does not. Returns the (H, W, 3) uint8 image and
    the (H, W) bool mask.
    """
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(np.asarray(faces), dtype=torch.long)
    frags = rasterize(camera.project(v), f, camera.height, camera.width)
    mask = frags.mask.numpy()
    out = (
        background.astype(np.float32).copy()
        if background is not None
        else np.full((camera.height, camera.width, 3), 40.0, np.float32)
    )
    if not mask.any():
        return out.astype(np.uint8), mask
    cam_v = camera.to_camera(v)
    tri = cam_v[f]
    normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-12)
    covered = frags.face[frags.mask]
    light = normals[covered][:, 2].abs().numpy()
    if texture is not None and uv is not None:
        st = frags.interpolate(torch.as_tensor(uv, dtype=torch.float32), f)[frags.mask].numpy()
        size = texture.shape[0]
        # Texel (i, j) covers uv [j / T, (j + 1) / T), as the baker has it.
        col = np.clip(np.floor(st[:, 0] * size).astype(int), 0, size - 1)
        row = np.clip(np.floor(st[:, 1] * size).astype(int), 0, size - 1)
        albedo = texture[row, col].astype(np.float32)
    elif colors is not None:
        albedo = frags.interpolate(torch.as_tensor(colors, dtype=torch.float32), f)[frags.mask]
        albedo = albedo.numpy()
    else:
        albedo = np.full((len(covered), 3), 200.0, np.float32)
    out[mask] = albedo * (0.35 + 0.65 * light[:, None])
    return np.clip(out, 0, 255).astype(np.uint8), mask
