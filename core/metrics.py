"""Quality against ground truth: surface distances, normal consistency, F-score, IoU; and of a
texture by itself: how much colour jumps across its seams.

Distances go from samples of one surface to a ten times denser sampling of the other (a
KD-tree), which approximates point-to-surface distance to about a millimetre at the default
count for human-sized meshes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from .texture import bilinear

SEAM_SAMPLE_TEXELS = 0.5
"""How far into a face a seam is sampled: half a texel, where bilinear filtering still
reaches across the chart's border."""


@dataclass(frozen=True)
class SurfaceScores:
    """chamfer_cm: mean of both directions' mean distances; p2s_cm: reconstruction to
    ground truth; normal_consistency: mean |cos| between matched normals (1 = perfect);
    fscore_1cm: harmonic mean of precision and recall at 1 cm."""

    chamfer_cm: float
    p2s_cm: float
    normal_consistency: float
    fscore_1cm: float


def _samples(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int):
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    points, face_index = trimesh.sample.sample_surface_even(mesh, count, seed=seed)
    if len(points) < count // 2:  # very uneven meshes: fall back to area-weighted sampling
        points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return points, mesh.face_normals[face_index]


def surface_scores(
    pred_vertices: np.ndarray,
    pred_faces: np.ndarray,
    true_vertices: np.ndarray,
    true_faces: np.ndarray,
    samples: int = 30_000,
    seed: int = 0,
) -> SurfaceScores:
    """Compare two meshes (metres, same frame). Returns distances in centimetres."""
    p_pts, p_nrm = _samples(pred_vertices, pred_faces, samples, seed)
    t_pts, t_nrm = _samples(true_vertices, true_faces, samples, seed + 1)
    p_ref, p_ref_nrm = _samples(pred_vertices, pred_faces, 10 * samples, seed + 2)
    t_ref, t_ref_nrm = _samples(true_vertices, true_faces, 10 * samples, seed + 3)
    d_pt, i_pt = cKDTree(t_ref).query(p_pts)
    d_tp, i_tp = cKDTree(p_ref).query(t_pts)
    nc = 0.5 * (
        np.abs((p_nrm * t_ref_nrm[i_pt]).sum(1)).mean()
        + np.abs((t_nrm * p_ref_nrm[i_tp]).sum(1)).mean()
    )
    precision = (d_pt < 0.01).mean()
    recall = (d_tp < 0.01).mean()
    fscore = 2 * precision * recall / max(precision + recall, 1e-9)
    return SurfaceScores(
        chamfer_cm=float(50.0 * (d_pt.mean() + d_tp.mean())),
        p2s_cm=float(100.0 * d_pt.mean()),
        normal_consistency=float(nc),
        fscore_1cm=float(fscore),
    )


def align_similarity(
    moving: np.ndarray, target: np.ndarray, iterations: int = 20, with_scale: bool = True
) -> np.ndarray:
    """Align point set `moving` (N, 3) to `target` (M, 3) with a translation and, optionally,
    a uniform scale (no rotation) by iterated closest points; returns the moved points.

    Used by benchmarks because one photo leaves the person's absolute size and distance
    ambiguous; rotation is not aligned so pose and facing errors still count.
    """
    tree = cKDTree(target)
    moved = moving.copy()
    scale_total = 1.0
    for _ in range(iterations):
        _, idx = tree.query(moved)
        matched = target[idx]
        mc, tc = moved.mean(0), matched.mean(0)
        scale = 1.0
        if with_scale:
            scale = float(
                np.sqrt(((matched - tc) ** 2).sum() / max(((moved - mc) ** 2).sum(), 1e-12))
            )
            scale = float(np.clip(scale, 0.8 / scale_total, 1.25 / scale_total))
            scale_total *= scale
        moved = (moved - mc) * scale + tc
    return moved


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) boolean masks."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def seam_jumps(
    vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Colour differences (RGB distance, 0-441) across the texture's seams and across its
    ordinary edges, sampled alike and as a renderer samples (bilinear): at each edge's
    midpoint, `SEAM_SAMPLE_TEXELS` into each of its two faces. A visible seam jumps more
    than the texture varies elsewhere; a chart whose gutter is not filled bleeds into it.

    vertices (V, 3) with the seam copies of an unwrap (same position, other uv); faces
    (F, 3); uv (V, 2), v = 0 on the image's top row; image (T, T, 3). Returns (seam jumps,
    ordinary jumps), one per edge shared by two faces.
    """
    size = image.shape[0]
    _, welded = np.unique(vertices, axis=0, return_inverse=True)
    welded = welded.reshape(-1)
    ends = np.stack([faces, np.roll(faces, -1, axis=1)], axis=2).reshape(-1, 2)
    key = np.sort(welded[ends], axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, ends, face = key[order], ends[order], order // 3
    pair = np.flatnonzero((key[1:] == key[:-1]).all(1))  # an edge's two sides, in a row
    middle = uv[ends].mean(1)
    inward = uv[faces[face]].mean(1) - middle
    reach = np.linalg.norm(inward, axis=1, keepdims=True)
    step = np.minimum(reach, SEAM_SAMPLE_TEXELS / size)
    sample = (middle + inward / np.maximum(reach, 1e-12) * step) * size - 0.5
    colour = bilinear(image, sample[:, 0], sample[:, 1])
    jump = np.linalg.norm(colour[pair] - colour[pair + 1], axis=1)
    same_uv = (np.sort(ends[pair], axis=1) == np.sort(ends[pair + 1], axis=1)).all(1)
    return jump[~same_uv], jump[same_uv]
