"""The body prior depth and canonicalisation on bodies with known answers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from photo_avatar.core.avatar import BodyFit, DepthMaps, Perception, Photo
from photo_avatar.core.body_prior import body_prior_depth
from photo_avatar.core.camera import Camera
from photo_avatar.core.canonicalise import (
    SPREAD_REFERENCE,
    canonical_surface,
    posed_surface,
)
from photo_avatar.core.metrics import surface_scores
from photo_avatar.core.raster import render_depth

SIDE = 256


@dataclass(frozen=True)
class Scene:
    """The fitted body photographed once: its fit, its silhouette and its render."""

    fit: BodyFit
    photo: Photo
    silhouette: np.ndarray
    front: np.ndarray
    back: np.ndarray


@pytest.fixture(scope="module")
def scene(body, bent_pose) -> Scene:
    camera = Camera.looking_at_person(SIDE, SIDE, yaw_degrees=20.0, distance=3.0)
    poses = bent_pose
    rest = body.rest(body.default_phenotype)
    render = render_depth(camera, body.pose(rest, poses).vertices[0], body.faces)
    fit = BodyFit("mixamo", body.default_phenotype.numpy(), poses.numpy(), [camera])
    photo = Photo("synthetic", np.zeros((SIDE, SIDE, 3), np.uint8))
    return Scene(fit, photo, render.mask, render.front.depth.numpy(), render.back.depth.numpy())


def _prior(scene: Scene, body, mask: np.ndarray) -> DepthMaps:
    perception = Perception(mask.astype(np.float32), np.zeros((33, 3), np.float32))
    return body_prior_depth(scene.photo, perception, scene.fit, 0, body)


def test_body_prior_of_a_tight_body_matches_its_rendered_depth(scene, body):
    depth = _prior(scene, body, scene.silhouette)
    assert (depth.mask == scene.silhouette).all()
    m = scene.silhouette
    assert np.abs(depth.front[m] - scene.front[m]).max() < 1e-4
    assert np.abs(depth.back[m] - scene.back[m]).max() < 1e-4
    assert np.isinf(depth.front[~scene.silhouette]).all()
    sums = depth.weights_front[depth.mask].sum(-1)
    assert np.allclose(sums, 1.0, atol=1e-4)


def test_body_prior_grows_to_loose_clothes_with_a_tapering_thickness(scene, body):
    loose = ndimage.binary_dilation(scene.silhouette, iterations=6)
    depth = _prior(scene, body, loose)
    grown = loose & ~scene.silhouette
    assert np.isfinite(depth.front[loose]).all()
    assert (depth.front[loose] < depth.back[loose]).all()
    thickness = np.zeros(loose.shape)
    thickness[loose] = depth.back[loose] - depth.front[loose]
    outline = grown & ~ndimage.binary_erosion(loose)
    next_to_body = grown & ndimage.binary_dilation(scene.silhouette)
    assert np.median(thickness[outline]) < 0.5 * np.median(thickness[next_to_body])
    # The depth is continuous where the grown region meets the body.
    rows, cols = np.nonzero(grown[:, 1:] & scene.silhouette[:, :-1])
    steps = np.abs(depth.front[rows, cols + 1] - depth.front[rows, cols])
    assert np.median(steps) < 0.01
    sums = depth.weights_back[loose].sum(-1)
    assert np.allclose(sums, 1.0, atol=1e-4)


def test_body_pixels_outside_the_silhouette_are_dropped(scene, body):
    tight = ndimage.binary_erosion(scene.silhouette, iterations=3)
    depth = _prior(scene, body, tight)
    assert (depth.mask == tight).all()
    assert np.isinf(depth.back[scene.silhouette & ~tight]).all()
    assert np.abs(depth.front[tight] - scene.front[tight]).max() < 1e-4


def test_unposing_a_posed_body_gives_the_canonical_body_back(scene, body):
    depth = _prior(scene, body, scene.silhouette)
    rest = body.rest(body.default_phenotype)
    canonical_rotations = body.rest_pose_rotations(rest, "a")
    surface = canonical_surface(depth, scene.fit, 0, body, canonical_rotations)
    truth = body.pose(rest, canonical_rotations).vertices[0].numpy()
    scores = surface_scores(surface.vertices, surface.faces, truth, body.faces, samples=5000)
    assert scores.chamfer_cm < 0.5
    assert np.allclose(surface.weights.sum(1), 1.0, atol=1e-4)
    assert ((surface.confidence >= 0) & (surface.confidence <= 1)).all()


def _sphere_depth(offset: float = 0.0) -> DepthMaps:
    """A 0.4 m sphere 3 m away (shifted `offset` m towards the camera on the right half)."""
    camera = Camera.looking_at_person(128, 128, distance=3.0)
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.4)
    render = render_depth(camera, torch.as_tensor(sphere.vertices, dtype=torch.float32),
                          sphere.faces)  # fmt: skip
    front = render.front.depth.numpy().copy()
    back = render.back.depth.numpy().copy()
    front[:, 64:] -= offset
    back[:, 64:] -= offset
    weights = render.mask[..., None].astype(np.float32)
    return DepthMaps(camera, front, back, render.mask, weights, weights)


def test_continuous_depth_meshes_into_a_closed_outward_surface():
    vertices, faces, _, confidence = posed_surface(_sphere_depth())
    mesh = trimesh.Trimesh(vertices, faces)
    assert mesh.is_watertight
    assert mesh.volume > 0  # outward winding
    assert abs(mesh.volume / (4 / 3 * np.pi * 0.4**3) - 1) < 0.05
    # Seen squarely at the centre of the front and of the back (the predicted back counts
    # as much), at a grazing angle at the outline.
    for side in (-1, 1):
        centre = np.argmin(np.linalg.norm(vertices[:, [0, 2]], axis=1) - side * vertices[:, 1])
        assert confidence[centre] > 0.95
    outline = np.abs(vertices[:, 1]) < 0.02
    assert confidence[outline].max() < 0.3


def test_depth_the_network_doubts_weighs_less():
    """Where the depth network expects its depth to be 4 cm off, the points keep a quarter
    of the confidence (a sixteenth of the fusion weight); where it expects no more than the
    reference, all of it."""
    sure = _sphere_depth()
    spread = np.full(sure.mask.shape, SPREAD_REFERENCE / 2, np.float32)
    spread[:, 64:] = 4 * SPREAD_REFERENCE
    doubted = replace(sure, spread_front=spread, spread_back=spread)
    vertices, _, _, plain = posed_surface(sure)
    _, _, _, confidence = posed_surface(doubted)
    right = sure.camera.project(torch.as_tensor(vertices))[:, 0].numpy() > 63.5
    np.testing.assert_allclose(confidence[~right], plain[~right])
    np.testing.assert_allclose(confidence[right], plain[right] / 4, rtol=1e-5)


def test_depth_discontinuities_are_not_bridged():
    def spanning(offset: float) -> int:
        """Triangles that join the left and right halves of the sphere."""
        depth = _sphere_depth(offset)
        vertices, faces, _, _ = posed_surface(depth)
        u = depth.camera.project(torch.as_tensor(vertices))[:, 0].numpy()
        right = u > 63.5
        return int((right[faces].any(1) & ~right[faces].all(1)).sum())

    # With the halves 0.3 m apart in depth, only the few triangles that touch the outline
    # where the seam meets it still join them.
    assert spanning(0.3) < 0.1 * spanning(0.0)
