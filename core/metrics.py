"""Quality against ground truth: surface distances, normal consistency, F-score, IoU.

Distances go from samples of one surface to a ten times denser sampling of the other (a
KD-tree), which approximates point-to-surface distance to about a millimetre at the default
count for human-sized meshes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree


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
