"""Benchmark metrics give zero for identical surfaces and grow with error."""

from __future__ import annotations

import numpy as np
import trimesh

from photo_avatar.core.metrics import align_similarity, mask_iou, surface_scores


def test_identical_meshes_score_perfectly():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    s = surface_scores(sphere.vertices, sphere.faces, sphere.vertices, sphere.faces, samples=5000)
    assert s.chamfer_cm < 0.3
    assert s.normal_consistency > 0.99
    assert s.fscore_1cm > 0.99


def test_a_shifted_mesh_scores_its_shift():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    moved = sphere.vertices + np.array([0.02, 0.0, 0.0])
    s = surface_scores(moved, sphere.faces, sphere.vertices, sphere.faces, samples=5000)
    assert 0.6 < s.chamfer_cm < 2.0


def test_similarity_alignment_removes_scale_and_translation():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(2000, 3))
    moving = target * 1.1 + np.array([0.3, -0.2, 0.1])
    aligned = align_similarity(moving, target, iterations=30)
    assert np.abs(aligned - target).mean() < 0.02


def test_mask_iou():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True
    b[:, :] = True
    assert mask_iou(a, b) == 0.5
    assert mask_iou(a, a) == 1.0
