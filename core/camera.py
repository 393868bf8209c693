"""Pinhole cameras, OpenCV convention: x right, y down, z forward (into the scene).

The world is the body model's: metres, right-handed, Z up, the person facing -Y. A camera
holds the whole rigid placement of the person in one photo (rotation and translation); the
body's own root bone stays unrotated, so one photo = one camera + one pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

# Body world (Z up, facing -Y) -> camera looking at the person's front: (x, y, z) -> (x, -z, y).
FRONT_VIEW = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=np.float32)

DEFAULT_FOV_DEGREES = 40.0
"""Vertical field of view assumed when a photo carries no focal length (a 50 mm-ish lens)."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    `rotation` (3, 3) and `translation` (3,) map world points to camera space:
    x_cam = rotation @ x_world + translation, in metres; `fx, fy, cx, cy` in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    rotation: np.ndarray
    translation: np.ndarray

    @staticmethod
    def looking_at_person(
        width: int,
        height: int,
        yaw_degrees: float = 0.0,
        distance: float = 3.0,
        fov_degrees: float = DEFAULT_FOV_DEGREES,
        centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
        pitch_degrees: float = 0.0,
    ) -> Camera:
        """A camera at `distance` metres from `centre` (world), rotated `yaw_degrees` about
        the world Z axis (0 = sees the front, 180 = the back, 90 = the person's left) and
        tilted `pitch_degrees` down (negative: up) about its own x axis, so it stands higher
        than `centre` and looks down at it, as a photographer standing over a person does."""
        f = 0.5 * height / math.tan(math.radians(fov_degrees) / 2)
        a = math.radians(yaw_degrees)
        yaw = np.array(
            [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
            dtype=np.float32,
        )
        b = math.radians(pitch_degrees)
        pitch = np.array(
            [[1.0, 0.0, 0.0], [0.0, math.cos(b), -math.sin(b)], [0.0, math.sin(b), math.cos(b)]],
            dtype=np.float32,
        )
        rotation = pitch @ FRONT_VIEW @ yaw.T
        translation = np.array([0.0, 0.0, distance], np.float32) - rotation @ np.asarray(
            centre, np.float32
        )
        return Camera(f, f, width / 2, height / 2, width, height, rotation, translation)

    def scaled(self, factor: float) -> Camera:
        """The same camera for an image resized by `factor`."""
        return replace(
            self,
            fx=self.fx * factor,
            fy=self.fy * factor,
            cx=self.cx * factor,
            cy=self.cy * factor,
            width=round(self.width * factor),
            height=round(self.height * factor),
        )

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) float32 K matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float32)

    @property
    def position(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, metres."""
        return -self.rotation.T @ self.translation

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (..., 3) camera-space points (metres)."""
        r = torch.as_tensor(self.rotation, dtype=points.dtype, device=points.device)
        t = torch.as_tensor(self.translation, dtype=points.dtype, device=points.device)
        return points @ r.T + t

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (..., 3): pixel u, pixel v, depth z in metres."""
        return project_camera_points(self.to_camera(points), self)


def project_camera_points(cam_points: torch.Tensor, camera: Camera) -> torch.Tensor:
    """(..., 3) camera-space points -> (..., 3) pixel u, v and depth z (metres)."""
    z = cam_points[..., 2].clamp(min=1e-4)
    u = camera.fx * cam_points[..., 0] / z + camera.cx
    v = camera.fy * cam_points[..., 1] / z + camera.cy
    return torch.stack([u, v, cam_points[..., 2]], dim=-1)


def pixels_of(cam_points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) camera-space points -> the pixel each lands in: columns and rows (N,) int64
    and whether that pixel is on the image (N,) bool."""
    z = np.maximum(cam_points[:, 2], 1e-4)
    u = np.round(camera.fx * cam_points[:, 0] / z + camera.cx).astype(np.int64)
    v = np.round(camera.fy * cam_points[:, 1] / z + camera.cy).astype(np.int64)
    return u, v, (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)


def unproject(u: np.ndarray, v: np.ndarray, depth: np.ndarray, camera: Camera) -> np.ndarray:
    """Pixels (u, v) at camera depth `depth` (metres) -> (N, 3) float32 world points."""
    x = (u - camera.cx) / camera.fx * depth
    y = (v - camera.cy) / camera.fy * depth
    cam = np.stack([x, y, depth], axis=-1).astype(np.float32)
    return (cam - camera.translation) @ camera.rotation
