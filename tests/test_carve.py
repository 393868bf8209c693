"""Forward votes: what one photo says about canonical points posed into it."""

from __future__ import annotations

import numpy as np
import pytest

from photo_avatar.core import carve
from photo_avatar.core.avatar import DepthMaps
from photo_avatar.core.camera import Camera

SIDE = 200
TRUNCATION = 0.05


@pytest.fixture(scope="module")
def view() -> carve.PhotoView:
    """A photo of a box: the mask is the middle of the image, its front at 2.9 m and its
    back at 3.1 m from the camera; one bone that does not move."""
    camera = Camera.looking_at_person(SIDE, SIDE, yaw_degrees=0.0, distance=3.0)
    mask = np.zeros((SIDE, SIDE), bool)
    mask[50:150, 50:150] = True
    front = np.where(mask, 2.9, np.inf).astype(np.float32)
    back = np.where(mask, 3.1, np.inf).astype(np.float32)
    weights = np.ones((SIDE, SIDE, 1), np.float32)
    depth = DepthMaps(camera, front, back, mask, weights, weights)
    return carve.PhotoView(depth, np.eye(4, dtype=np.float32)[None])


def _votes(view: carve.PhotoView, points, body_distance=None, posed_body=None):
    points = np.asarray(points, np.float32)
    count = len(points)
    distance = np.full(count, -1.0) if body_distance is None else np.asarray(body_distance)
    body = np.zeros((1, 3), np.float32) if posed_body is None else posed_body
    index = np.zeros((count, 1), np.int64)
    share = np.ones((count, 1), np.float32)
    return carve.photo_votes(points, index, share, view, TRUNCATION, distance, body)


def test_outside_the_silhouette_is_empty_and_far_outside_overrules(view):
    camera = view.depth.camera
    # 4 cm (3.7 pixels) beyond the box's outline, 3 m away: just past the mask's slack;
    # then 20 cm beyond it.
    edge = (150 - camera.cx) / camera.fx * 3.0
    points = [[edge + 0.04, 0.0, 0.0], [edge + 0.2, 0.0, 0.0]]
    signed, weight = _votes(view, points)
    assert signed == pytest.approx([TRUNCATION, TRUNCATION])
    assert carve.SILHOUETTE_WEIGHT <= weight[0] < 0.5 * carve.SILHOUETTE_FAR_WEIGHT
    assert weight[1] == pytest.approx(carve.SILHOUETTE_FAR_WEIGHT)
    assert carve.SILHOUETTE_FAR_WEIGHT > 1.0 + carve.INSIDE_WEIGHT  # beats a photo's surface


def test_between_front_and_back_is_inside(view):
    # The camera looks along +Y from y = -3: world y = 0 is 3 m away.
    signed, weight = _votes(view, [[0.0, 0.0, 0.0]])
    assert signed[0] < 0
    assert weight[0] == pytest.approx(carve.INSIDE_WEIGHT)


def test_in_front_of_the_seen_surface_is_empty_and_behind_the_back_is_a_guess(view):
    signed, weight = _votes(view, [[0.0, -0.5, 0.0], [0.0, 0.5, 0.0]])
    assert (signed > 0).all()
    assert weight[0] == pytest.approx(carve.FREE_WEIGHT)
    assert weight[1] == pytest.approx(carve.BEHIND_WEIGHT)


def test_space_squeezed_by_posing_gets_no_inside_vote(view):
    # 10 cm off the body in the canonical pose, but posing laid the body right on it.
    posed_body = np.array([[0.0, 0.0, 0.005]], np.float32)
    _, weight = _votes(view, [[0.0, 0.0, 0.0]], [0.1], posed_body)
    assert weight[0] == 0.0
    far_body = np.array([[0.0, 0.0, 0.205]], np.float32)
    _, weight = _votes(view, [[0.0, 0.0, 0.0]], [0.1], far_body)
    assert weight[0] == pytest.approx(carve.INSIDE_WEIGHT)  # the body kept its distance


def test_voxel_weights_follow_the_nearest_body_and_sum_to_one():
    body = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    weights = np.eye(4, dtype=np.float32)
    index, share = carve.voxel_weights(np.array([[0.05, 0.0, 0.0]]), body, weights, 2)
    assert index[0, 0] == 0
    assert share.sum() == pytest.approx(1.0)
    assert share[0, 0] > 0.9
