"""Texture baking: unwrap, projection of the photos, visibility and filling."""

from __future__ import annotations

import fast_simplification
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from photo_avatar.core import skinning
from photo_avatar.core.avatar import Photo
from photo_avatar.core.camera import Camera
from photo_avatar.core.raster import rasterize
from photo_avatar.core.texture import VISIBILITY_TOLERANCE, Texture, _depth_buffer, bake_texture

RED = (220, 30, 30)
BLUE = (30, 30, 220)


@pytest.fixture(scope="module")
def small_body(body):
    """A decimated rest body (about 4k triangles) with the body model's weights."""
    rest = body.rest(body.default_phenotype)
    dense = rest.vertices[0].numpy()
    vertices, faces = fast_simplification.simplify(
        dense, body.faces.astype(np.int32), target_count=4000
    )
    weights = body.skin_weights.numpy()[cKDTree(dense).query(vertices)[1]]
    return rest, vertices.astype(np.float32), faces.astype(np.int64), weights


def _identity(bones: int) -> np.ndarray:
    return np.tile(np.eye(4, dtype=np.float32), (bones, 1, 1))


def _plain(name: str, colour: tuple[int, int, int], side: int) -> Photo:
    """A (side, side) photo of one colour."""
    return Photo(name, np.full((side, side, 3), colour, np.uint8))


def _texel_colours(texture: Texture, points_uv: np.ndarray) -> np.ndarray:
    """(N, 3) colours of the texels under uv points (N, 2)."""
    size = texture.image.shape[0]
    col = np.clip((points_uv[:, 0] * size).astype(int), 0, size - 1)
    row = np.clip((points_uv[:, 1] * size).astype(int), 0, size - 1)
    return texture.image[row, col].astype(int)


def _face_centres(texture: Texture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid positions (F, 3), unit normals (F, 3) and centroid uv (F, 2) of the faces."""
    tri = texture.vertices[texture.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return tri.mean(1), normals, texture.uv[texture.faces].mean(1)


def test_red_person_in_a_pose_gives_a_red_texture_without_holes(body, small_body):
    rest, vertices, faces, weights = small_body
    rotations = body.identity_pose()
    arm = body.joint_bones["left_shoulder"]
    rotations[0, arm] = skinning.axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0]))
    matrices = skinning.forward_kinematics(rest.bone_matrices, body.parents, rotations)
    transforms = skinning.skinning_transforms(matrices, rest.bone_matrices)
    posed = skinning.forward_skin(torch.from_numpy(vertices), torch.from_numpy(weights), transforms)
    camera = Camera.looking_at_person(128, 128, yaw_degrees=20.0, distance=3.0)
    silhouette = rasterize(camera.project(posed[0]), torch.from_numpy(faces), 128, 128).mask
    image = np.zeros((128, 128, 3), np.uint8)
    image[silhouette.numpy()] = RED
    # The pose moved the arm out of where it is at rest: ignoring it would sample background.
    assert (posed[0] - torch.from_numpy(vertices)).norm(dim=1).max() > 0.2

    texture = bake_texture(
        vertices, faces, weights, [Photo("red", image)], [transforms[0].numpy()], [camera], 128
    )

    colours = texture.image.reshape(-1, 3).astype(int)
    red = (colours[:, 0] > 150) & (colours[:, 1] < 90) & (colours[:, 2] < 90)
    assert red.mean() > 0.99
    assert colours.sum(1).min() > 120  # no black texel anywhere, gutter included
    assert texture.image.shape == (128, 128, 3) and texture.image.dtype == np.uint8


def test_unwrap_keeps_geometry_and_carries_the_weights(small_body):
    _, vertices, faces, weights = small_body
    camera = Camera.looking_at_person(64, 64)
    photo = Photo("grey", np.full((64, 64, 3), 128, np.uint8))
    texture = bake_texture(
        vertices, faces, weights, [photo], [_identity(weights.shape[1])], [camera], 64
    )
    count = len(texture.vertices)
    assert count >= len(vertices)  # seam copies
    assert texture.uv.shape == (count, 2) and texture.weights.shape == (count, weights.shape[1])
    assert texture.uv.min() >= 0.0 and texture.uv.max() <= 1.0
    assert texture.faces.shape == faces.shape and texture.faces.max() < count
    np.testing.assert_allclose(texture.weights.sum(1), 1.0, atol=1e-5)
    distance, source = cKDTree(vertices).query(texture.vertices)
    assert distance.max() < 1e-6
    np.testing.assert_array_equal(texture.weights, weights[source])
    # The same surface: every new triangle is an old one, through the vertex mapping.
    old = {tuple(sorted(f)) for f in faces.tolist()}
    assert all(tuple(sorted(f)) in old for f in source[texture.faces].tolist())


def test_front_and_back_photos_colour_their_own_side(small_body):
    _, vertices, faces, weights = small_body
    cameras = [Camera.looking_at_person(256, 256, yaw, distance=3.0) for yaw in (0.0, 180.0)]
    photos = [_plain(name, colour, 256) for name, colour in (("f", RED), ("b", BLUE))]
    identity = _identity(weights.shape[1])
    texture = bake_texture(vertices, faces, weights, photos, [identity] * 2, cameras, 128)

    centres, normals, uv = _face_centres(texture)
    colours = _texel_colours(texture, uv)
    # The person faces -Y. Left out: the hands (each finger is a silhouette a few pixels
    # wide, too thin to trust, so it takes the fill) and the insides of the mouth and eyes
    # (facing +Y in the face, seen by neither photo); the ears are thin too, hence 90%.
    body = np.abs(centres[:, 0]) < 0.3
    front = body & (normals[:, 1] < -0.8)
    back = body & (normals[:, 1] > 0.8) & (centres[:, 1] > -0.05)
    assert front.sum() > 100 and back.sum() > 100
    assert (colours[front, 0] > colours[front, 2] + 100).mean() > 0.9
    assert (colours[back, 2] > colours[back, 0] + 100).mean() > 0.9


def test_occluded_faces_take_no_colour_from_the_photo_that_cannot_see_them():
    # Two boxes one behind the other on the camera axis: each hides from one camera a face
    # that faces that camera squarely (the far box's front, the near box's back).
    near = trimesh.creation.box(extents=(0.6, 0.2, 0.6))
    near.apply_translation((0.0, -0.3, 0.0))
    far = trimesh.creation.box(extents=(0.6, 0.2, 0.6))
    far.apply_translation((0.0, 0.3, 0.0))
    mesh = trimesh.util.concatenate([near, far]).subdivide().subdivide().subdivide()
    vertices = mesh.vertices.astype(np.float32)
    faces = mesh.faces.astype(np.int64)
    weights = np.ones((len(vertices), 1), np.float32)
    cameras = [Camera.looking_at_person(96, 96, yaw, distance=3.0) for yaw in (0.0, 180.0)]
    photos = [_plain(name, colour, 96) for name, colour in (("f", RED), ("b", BLUE))]
    texture = bake_texture(vertices, faces, weights, photos, [_identity(1)] * 2, cameras, 128)

    centres, normals, uv = _face_centres(texture)
    colours = _texel_colours(texture, uv)
    inner = (np.abs(centres[:, 0]) < 0.15) & (np.abs(centres[:, 2]) < 0.15)
    hidden = inner & (normals[:, 1] < -0.9) & (np.abs(centres[:, 1] - 0.2) < 1e-3)
    shadowed = inner & (normals[:, 1] > 0.9) & (np.abs(centres[:, 1] + 0.2) < 1e-3)
    assert hidden.sum() >= 4 and shadowed.sum() >= 4
    # Each hidden face takes its own box's colour (from the side a camera did see).
    assert (colours[hidden, 2] > colours[hidden, 0] + 100).all()
    assert (colours[shadowed, 0] > colours[shadowed, 2] + 100).all()


def test_depth_buffer_matches_the_rasterizer(small_body):
    _, vertices, faces, _ = small_body
    camera = Camera.looking_at_person(256, 256, yaw_degrees=30.0, distance=2.5)
    exact = rasterize(camera.project(torch.from_numpy(vertices)), torch.from_numpy(faces),
                      256, 256).depth.numpy()  # fmt: skip
    depth = _depth_buffer(camera, vertices, faces)
    covered = np.isfinite(exact)
    assert (np.isfinite(depth) >= covered).all()  # it covers at least what the mesh covers
    assert np.isfinite(depth).sum() < 1.1 * covered.sum()
    # Within the visibility test's tolerance (1 cm and two pixel footprints) nearly everywhere.
    tolerance = VISIBILITY_TOLERANCE + 2.0 * exact[covered] / camera.fx
    assert (np.abs(exact[covered] - depth[covered]) < tolerance).mean() > 0.99
