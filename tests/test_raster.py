"""The rasteriser: depth, coverage and interpolation on shapes with known answers."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from photo_avatar.core.camera import Camera, unproject
from photo_avatar.core.raster import rasterize, render_depth


def _camera() -> Camera:
    return Camera.looking_at_person(128, 128, yaw_degrees=0.0, distance=3.0)


def test_sphere_front_and_back_depth_match_the_analytic_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    cam = _camera()
    result = render_depth(cam, torch.as_tensor(sphere.vertices, dtype=torch.float32), sphere.faces)
    mask = result.mask
    # Every covered pixel's unprojected front point lies on the sphere.
    v, u = np.nonzero(mask)
    front = result.front.depth.numpy()[mask]
    back = result.back.depth.numpy()[mask]
    points = unproject(u.astype(np.float32), v.astype(np.float32), front, cam)
    radius = np.linalg.norm(points, axis=1)
    assert np.abs(radius - 0.5).max() < 0.01
    assert (back > front).all()
    centre = mask.shape[0] // 2
    assert abs(result.front.depth[centre, centre] - 2.5) < 0.01
    assert abs(result.back.depth[centre, centre] - 3.5) < 0.01


def test_silhouette_area_matches_the_projected_disc():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    cam = _camera()
    mask = render_depth(
        cam, torch.as_tensor(sphere.vertices, dtype=torch.float32), sphere.faces
    ).mask
    # The silhouette of a sphere of radius r at distance d is a disc of angular radius asin(r/d).
    radius_px = cam.fx * np.tan(np.arcsin(0.5 / 3.0))
    assert abs(mask.sum() / (np.pi * radius_px**2) - 1.0) < 0.03


def test_interpolation_reproduces_a_linear_attribute():
    plane = trimesh.creation.box(extents=(1.0, 0.01, 1.0))
    cam = _camera()
    verts = torch.as_tensor(plane.vertices, dtype=torch.float32)
    result = render_depth(cam, verts, plane.faces)
    # x as an attribute: interpolated values equal the x of the unprojected point.
    values = result.front.interpolate(verts[:, :1], torch.as_tensor(plane.faces))[..., 0]
    v, u = np.nonzero(result.mask)
    points = unproject(u.astype(np.float32), v.astype(np.float32),
                       result.front.depth.numpy()[result.mask], cam)  # fmt: skip
    assert np.abs(values.numpy()[result.mask] - points[:, 0]).max() < 2e-3


def test_empty_scene_and_triangles_behind_the_camera_draw_nothing():
    screen = torch.tensor([[10.0, 10.0, -1.0], [50.0, 10.0, -1.0], [10.0, 50.0, -1.0]])
    frags = rasterize(screen, torch.tensor([[0, 1, 2]]), 64, 64)
    assert not frags.mask.any()
    assert torch.isinf(frags.depth).all()
