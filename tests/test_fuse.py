"""Fusion of canonical surfaces: watertight, on budget, skinned, and better with more views."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
import trimesh

from photo_avatar.core import fuse as fuse_module
from photo_avatar.core.avatar import BodyFit, DepthMaps, Perception, Photo, Settings
from photo_avatar.core.body_prior import body_prior_depth
from photo_avatar.core.camera import Camera
from photo_avatar.core.canonicalise import (
    CanonicalSurface,
    _compact,
    canonical_surface,
    posed_surface,
)
from photo_avatar.core.carve import PhotoView
from photo_avatar.core.fuse import FusedMesh, coarser, fuse, surface_from_volume
from photo_avatar.core.metrics import surface_scores
from photo_avatar.core.progress import Progress
from photo_avatar.core.raster import render_depth

SIDE = 256
SETTINGS = Settings(voxel_size=0.02, triangles=5000)
TRUE_PHENOTYPE = [[0.5, 0.5, 1.0, 1.0, 0.5, 0.5]]
FIT_PHENOTYPE = [[0.5, 0.5, 0.0, 0.0, 0.5, 0.5]]
"""The photographed person is muscular and heavy, the fitted body slight."""
BACK_ERROR = 0.015
"""Metres: about the mean error of network 1's back, as of its front, on the fusion
benchmark's people."""


@dataclass(frozen=True)
class Views:
    """Four photos (yaw 0/90/180/270) unposed with a fit of the wrong shape. Each photo's
    depth is what a good depth network gives: the seen front right, the guessed back
    `BACK_ERROR` too deep."""

    surfaces: list[CanonicalSurface]
    fitted_canonical: np.ndarray
    true_canonical: np.ndarray


@pytest.fixture(scope="module")
def views(body, bent_pose) -> Views:
    poses = bent_pose
    true_rest = body.rest(torch.tensor(TRUE_PHENOTYPE))
    fit_rest = body.rest(torch.tensor(FIT_PHENOTYPE))
    canonical_rotations = body.rest_pose_rotations(fit_rest, "a")
    surfaces = []
    for yaw in (0.0, 90.0, 180.0, 270.0):
        camera = Camera.looking_at_person(SIDE, SIDE, yaw_degrees=yaw, distance=3.0)
        render = render_depth(camera, body.pose(true_rest, poses).vertices[0], body.faces)
        fit = BodyFit("mixamo", np.array(FIT_PHENOTYPE, np.float32), poses.numpy(), [camera])
        perception = Perception(render.mask.astype(np.float32), np.zeros((33, 3), np.float32))
        photo = Photo(f"yaw {yaw}", np.zeros((SIDE, SIDE, 3), np.uint8))
        prior = body_prior_depth(photo, perception, fit, 0, body)
        front = np.where(prior.mask, render.front.depth.numpy(), np.inf).astype(np.float32)
        back = np.where(prior.mask, np.maximum(render.back.depth.numpy() + BACK_ERROR,
                                               front + 0.002), np.inf)  # fmt: skip
        depth = replace(prior, front=front, back=back.astype(np.float32))
        surfaces.append(canonical_surface(depth, fit, 0, body, canonical_rotations))
    true_rotations = body.rest_pose_rotations(true_rest, "a")
    return Views(
        surfaces,
        body.pose(fit_rest, canonical_rotations).vertices[0].numpy(),
        body.pose(true_rest, true_rotations).vertices[0].numpy(),
    )


@pytest.fixture(scope="module")
def fused(views, body) -> dict[int, FusedMesh]:
    return {
        n: fuse(views.surfaces[:n], body, views.fitted_canonical, SETTINGS, Progress())
        for n in (1, 4)
    }


@pytest.mark.parametrize("count", [1, 4])
def test_fused_mesh_is_one_watertight_piece_on_the_triangle_budget(fused, count):
    mesh = trimesh.Trimesh(fused[count].vertices, fused[count].faces)
    assert mesh.is_watertight
    assert len(mesh.split(only_watertight=False)) == 1
    assert mesh.volume > 0
    assert abs(len(mesh.faces) / SETTINGS.triangles - 1) < 0.1


@pytest.mark.parametrize("count", [1, 4])
def test_weights_sum_to_one_with_at_most_four_influences(fused, count):
    weights = fused[count].weights
    assert weights.dtype == np.float32
    assert np.allclose(weights.sum(1), 1.0, atol=1e-5)
    assert (np.count_nonzero(weights, axis=1) <= SETTINGS.max_influences).all()
    assert (weights >= 0).all()


def test_more_views_lower_the_error(fused, views, body):
    def chamfer(mesh: FusedMesh) -> float:
        return surface_scores(mesh.vertices, mesh.faces, views.true_canonical, body.faces,
                              samples=5000).chamfer_cm  # fmt: skip

    one, four = chamfer(fused[1]), chamfer(fused[4])
    assert four < one
    assert one < 1.5


def test_progress_is_reported_and_cancellation_stops_fusion(views, body):
    reported: list[float] = []
    fuse(views.surfaces[:1], body, views.fitted_canonical, SETTINGS,
         Progress(lambda stage, f: reported.append(f)))  # fmt: skip
    assert len(reported) >= 4
    assert reported == sorted(reported)
    progress = Progress()
    progress.cancel()
    with pytest.raises(Exception, match="cancelled"):
        fuse(views.surfaces[:1], body, views.fitted_canonical, SETTINGS, progress)


@dataclass(frozen=True)
class Ball:
    """A stand-in body: a sphere with two bones split at its equator."""

    faces: np.ndarray
    skin_weights: torch.Tensor


def _sphere(radius: float, confidence: float, centre=(0.0, 0.0, 0.0)) -> CanonicalSurface:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    vertices = (mesh.vertices + np.asarray(centre)).astype(np.float32)
    weights = np.zeros((len(vertices), 2), np.float32)
    weights[:, 0] = 1.0
    return CanonicalSurface(vertices, mesh.faces, weights,
                            np.full(len(vertices), confidence, np.float32))  # fmt: skip


def _ball_body() -> tuple[Ball, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.25)
    upper = (mesh.vertices[:, 2] > 0).astype(np.float32)
    weights = torch.as_tensor(np.stack([upper, 1 - upper], axis=1))
    return Ball(mesh.faces, weights), mesh.vertices.astype(np.float32)


def test_a_squarely_seen_surface_beats_another_photos_guess():
    ball, ball_vertices = _ball_body()
    seen = _sphere(0.30, confidence=1.0)
    guessed = _sphere(0.35, confidence=0.2)
    result = fuse([seen, guessed], ball, ball_vertices, SETTINGS, Progress())
    radius = np.linalg.norm(result.vertices, axis=1)
    assert abs(np.median(radius) - 0.30) < 0.01


def _photo_of_ball(yaw: float, pushed_in: float = 0.0) -> tuple[CanonicalSurface, PhotoView]:
    """A photo of a 0.3 m ball at rest (two bones, neither moved) and its surface; the seen
    front and the guessed back pushed `pushed_in` metres into the ball, as a depth network
    that mistakes a skirt's sides for the legs inside it does."""
    ball = trimesh.creation.icosphere(subdivisions=4, radius=0.30)
    camera = Camera.looking_at_person(SIDE, SIDE, yaw_degrees=yaw, distance=3.0)
    render = render_depth(camera, torch.as_tensor(ball.vertices, dtype=torch.float32), ball.faces)
    mask = render.front.face.numpy() >= 0
    front = np.where(mask, render.front.depth.numpy() + pushed_in, np.inf).astype(np.float32)
    back = np.where(mask, np.maximum(render.back.depth.numpy() - pushed_in, front + 0.002),
                    np.inf)  # fmt: skip
    weights = np.zeros((SIDE, SIDE, 2), np.float32)
    weights[..., 0] = 1.0
    depth = DepthMaps(camera, front, back.astype(np.float32), mask, weights, weights)
    surface = _compact(*posed_surface(depth))  # at rest: the posed surface is canonical
    return surface, PhotoView(depth, np.repeat(np.eye(4, dtype=np.float32)[None], 2, 0))


def test_a_side_photos_surface_that_the_front_photo_shows_as_solid_is_not_believed(monkeypatch):
    """Front and back photos see the ball right; both side photos put its sides 8 cm in.
    The front photo shows solid ball out to its outline there, so the side photos'
    surface (seen squarely by them, so weighty) must not dent the fused ball."""
    ball, ball_vertices = _ball_body()
    photos = [_photo_of_ball(0.0), _photo_of_ball(90.0, 0.08),
              _photo_of_ball(180.0), _photo_of_ball(270.0, 0.08)]  # fmt: skip
    surfaces, views = [p[0] for p in photos], [p[1] for p in photos]

    def least_radius() -> float:
        settings = replace(SETTINGS, max_influences=2)  # the ball has two bones
        result = fuse(surfaces, ball, ball_vertices, settings, Progress(), views)
        equator = np.abs(result.vertices[:, 2]) < 0.05
        return float(np.percentile(np.linalg.norm(result.vertices[equator], axis=1), 2))

    cross_checked = least_radius()
    monkeypatch.setattr(fuse_module, "_trust", lambda s, *_: np.ones(len(s.vertices)))
    believed = least_radius()
    assert cross_checked > 0.265, (cross_checked, believed)  # 0.268
    assert believed < 0.24, believed  # 0.228: the case is one that needs the cross-check


def test_floaters_far_from_the_body_are_dropped():
    ball, ball_vertices = _ball_body()
    person = _sphere(0.30, confidence=1.0)
    floater = _sphere(0.08, confidence=0.5, centre=(0.8, 0.0, 0.0))
    result = fuse([person, floater], ball, ball_vertices, SETTINGS, Progress())
    assert np.linalg.norm(result.vertices, axis=1).max() < 0.35
    # Weights follow the stand-in body: upper half to bone 0, lower half to bone 1.
    top = result.vertices[:, 2] > 0.2
    bottom = result.vertices[:, 2] < -0.2
    assert (result.weights[top, 0] > 0.9).all()
    assert (result.weights[bottom, 1] > 0.9).all()


def test_a_coarser_volume_keeps_its_outside_border():
    """The fallback when decimation tears: resampling once filled the border with zeros,
    and marching cubes made a sheet there that outgrew the person (a 1-photo avatar came
    out as a flat plane)."""
    shape = np.array((143, 56, 188))
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1)
    distance = 0.01 * np.linalg.norm(grid - shape / 2, axis=-1) - 0.2
    values = np.clip(distance, -0.03, 0.03).astype(np.float32)
    values[[0, -1]] = values[:, [0, -1]] = values[:, :, [0, -1]] = 0.03
    for factor in (0.5, 0.6, 0.7127):  # 0.5 and 0.7127 zeroed the border, 0.6 did not
        coarse, steps = coarser(values, 0.01, factor)
        assert (coarse[[0, -1]] > 0).all() and (coarse[:, [0, -1]] > 0).all()
        assert (coarse[:, :, [0, -1]] > 0).all()
        vertices, _ = surface_from_volume(coarse, np.zeros(3), steps)
        radius = np.linalg.norm(vertices - 0.01 * (shape - 1) / 2, axis=1)
        assert np.abs(radius - 0.2).max() < 0.02, factor
