"""A PNG contact sheet of one run: what each stage made of each photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from . import skinning
from .avatar import Avatar
from .camera import Camera
from .pipeline import Reconstruction
from .preview import shade

TILE = 256


def posed_vertices(avatar: Avatar, index: int) -> np.ndarray:
    """(V, 3) the avatar's vertices in the pose of photo `index` (world, metres)."""
    bind = torch.as_tensor(avatar.bone_matrices)[None]
    rotations = torch.as_tensor(avatar.photo_poses[index : index + 1])
    posed = skinning.forward_kinematics(bind, avatar.parents, rotations)
    transforms = skinning.skinning_transforms(posed, bind)
    verts = torch.as_tensor(avatar.vertices)
    weights = torch.as_tensor(avatar.weights)
    return skinning.forward_skin(verts, weights, transforms)[0].numpy()


def _tile(image: np.ndarray, label: str) -> np.ndarray:
    """The image fitted into a TILE × TILE square (aspect kept, dark bars), labelled."""
    height, width = image.shape[:2]
    scale = TILE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    tile = np.full((TILE, TILE, 3), 24, np.uint8)
    top, left = (TILE - size[1]) // 2, (TILE - size[0]) // 2
    tile[top : top + size[1], left : left + size[0]] = small
    cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return tile


def _overlay(photo: np.ndarray, render: np.ndarray, mask: np.ndarray, alpha: float = 0.6):
    out = photo.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * render[mask]
    return out.astype(np.uint8)


def contact_sheet(run: Reconstruction) -> np.ndarray:
    """(H, W, 3) uint8: one row per photo — input, mask, fitted body, the avatar re-posed
    over the photo — and a last row with the canonical avatar from the front and back."""
    body = run.body
    rest = body.rest(torch.as_tensor(run.fit.phenotype, dtype=torch.float32))
    rows = []
    for i, (photo, perception) in enumerate(zip(run.photos, run.perceptions, strict=True)):
        camera = run.fit.cameras[i]
        mask = perception.mask > 0.5
        masked = photo.image.copy()
        masked[~mask] = (masked[~mask] * 0.25).astype(np.uint8)
        for u, v, c in perception.keypoints:
            if c > 0.5:
                cv2.circle(masked, (int(u), int(v)), 3, (255, 64, 64), -1)
        fitted = body.pose(rest, torch.as_tensor(run.fit.poses[i : i + 1])).vertices[0]
        body_img, body_mask = shade(camera, fitted.detach().numpy(), body.faces)
        posed = posed_vertices(run.avatar, i)
        avatar_img, avatar_mask = shade(
            camera, posed, run.avatar.faces, uv=run.avatar.uv, texture=run.avatar.texture
        )
        rows.append(
            np.concatenate(
                [
                    _tile(photo.image, f"photo {i + 1}"),
                    _tile(masked, "mask + keypoints"),
                    _tile(_overlay(photo.image, body_img, body_mask), "fitted body"),
                    _tile(_overlay(photo.image, avatar_img, avatar_mask, 0.8), "avatar re-posed"),
                ],
                axis=1,
            )
        )
    rows.append(np.concatenate(_canonical_views(run.avatar), axis=1))
    return np.concatenate(rows, axis=0)


def _canonical_views(avatar: Avatar) -> list[np.ndarray]:
    centre = tuple(float(c) for c in 0.5 * (avatar.vertices.min(0) + avatar.vertices.max(0)))
    tiles = []
    for yaw, label in ((0, "canonical front"), (180, "canonical back"), (90, "left side")):
        cam = Camera.looking_at_person(TILE * 2, TILE * 2, yaw, distance=3.0, centre=centre)
        img, _ = shade(cam, avatar.vertices, avatar.faces, uv=avatar.uv, texture=avatar.texture)
        tiles.append(_tile(img, label))
    grey = Camera.looking_at_person(TILE * 2, TILE * 2, 0, distance=3.0, centre=centre)
    tiles.append(_tile(shade(grey, avatar.vertices, avatar.faces)[0], "canonical shape"))
    return tiles


def write_report(run: Reconstruction, folder: Path) -> Path:
    """Write `contact_sheet.png` into `folder` (created if needed); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(run), cv2.COLOR_RGB2BGR))
    return path
