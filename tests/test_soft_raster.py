"""The soft silhouette rasteriser: it draws what the hard rasteriser draws, and its
gradients move a mesh onto a mask."""

from __future__ import annotations

import numpy as np
import torch

from photo_avatar.core.camera import Camera, project_camera_points
from photo_avatar.core.raster import rasterize
from photo_avatar.core.soft_raster import soft_silhouette
from photo_avatar.core.synthetic import make_person


def test_soft_silhouette_draws_the_hard_silhouette():
    person = make_person(seed=3)
    camera = Camera.looking_at_person(192, 192, 30.0, 3.0)
    cam = camera.to_camera(torch.as_tensor(person.posed_vertices()))
    screen = project_camera_points(cam, camera)
    faces = torch.as_tensor(person.faces, dtype=torch.long)
    hard = rasterize(screen, faces, 192, 192).mask
    soft = soft_silhouette(screen[:, :2], faces, 192, 192)
    drawn = soft > 0.5
    one_pixel = torch.nn.functional.max_pool2d(hard[None, None].float(), 3, 1, 1)[0, 0] > 0
    assert (drawn & hard).sum() / hard.sum() > 0.98  # covers what the hard one draws
    assert (drawn & one_pixel).sum() / drawn.sum() > 0.98  # and at most a pixel more
    assert float(soft.min()) >= 0.0 and float(soft.max()) <= 1.0
    grown = torch.nn.functional.max_pool2d(hard[None, None].float(), 7, 1, 3)[0, 0] > 0
    assert float(soft[~grown].max()) < 1e-3  # nothing drawn a few pixels off the mesh


def test_soft_silhouette_gradients_move_a_square_onto_its_mask():
    corners = torch.tensor([[20.0, 20.0], [40.0, 20.0], [40.0, 40.0], [20.0, 40.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    target = torch.zeros(64, 64)
    target[23:44, 24:45] = 1.0  # the square moved by (4, 3) pixels
    shift = torch.zeros(2, requires_grad=True)
    optimiser = torch.optim.Adam([shift], lr=0.3)
    for _ in range(150):
        optimiser.zero_grad()
        drawn = soft_silhouette(corners + shift, faces, 64, 64, sigma=1.0)
        ((drawn - target) ** 2).sum().backward()
        optimiser.step()
    np.testing.assert_allclose(shift.detach().numpy(), [4.0, 3.0], atol=0.3)
    assert float(((drawn > 0.5) == (target > 0.5)).float().mean()) > 0.99  # filled inside
