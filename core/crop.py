"""A square, person-centred crop of each photo: the working image of the later stages."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .avatar import Perception, Photo
from .camera import DEFAULT_FOV_DEGREES, Camera

MARGIN = 0.12
"""Fraction of the person's height kept free around the person on each side."""


@dataclass(frozen=True)
class Crop:
    """Where a working crop came from: crop pixel = (photo pixel - (x0, y0)) * scale."""

    x0: float
    y0: float
    scale: float
    width: int
    height: int
    """Size of the photo the crop was taken from."""

    def uncrop_camera(self, camera: Camera) -> Camera:
        """The camera of the whole photo, given the camera fitted on the crop."""
        return replace(
            camera,
            fx=camera.fx / self.scale,
            fy=camera.fy / self.scale,
            cx=camera.cx / self.scale + self.x0,
            cy=camera.cy / self.scale + self.y0,
            width=self.width,
            height=self.height,
        )


def crop_to_person(
    photo: Photo, perception: Perception, side: int
) -> tuple[Photo, Perception, Crop]:
    """Crop a square around the person's mask with a margin and resize it to `side` pixels.

    Keypoints, mask and the focal length follow the crop, so a camera fitted on the crop is
    the photo's camera with shifted principal point and scaled focal length. Areas outside
    the original photo are filled with the border colour (mask 0).
    """
    mask = perception.mask > 0.5
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        rows, cols = np.array([0, photo.height - 1]), np.array([0, photo.width - 1])
    height = rows[-1] - rows[0] + 1
    width = cols[-1] - cols[0] + 1
    size = max(height, width) * (1 + 2 * MARGIN)
    cy = 0.5 * (rows[0] + rows[-1])
    cx = 0.5 * (cols[0] + cols[-1])
    x0, y0 = cx - size / 2, cy - size / 2
    scale = side / size
    affine = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float64)
    image = cv2.warpAffine(
        photo.image,
        affine,
        (side, side),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    prob = cv2.warpAffine(
        perception.mask.astype(np.float32),
        affine,
        (side, side),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    keypoints = perception.keypoints.copy()
    keypoints[:, 0] = (keypoints[:, 0] - x0) * scale
    keypoints[:, 1] = (keypoints[:, 1] - y0) * scale
    focal = photo.focal_px
    if focal is None:
        focal = default_focal_px(photo)
    cropped = replace(photo, image=image, focal_px=focal * scale)
    crop = Crop(float(x0), float(y0), float(scale), photo.width, photo.height)
    return cropped, replace(perception, mask=prob, keypoints=keypoints), crop


def default_focal_px(photo: Photo) -> float:
    """Focal length in pixels assumed for a photo without EXIF: the default field of view
    over the photo's longer side (the usual framing of a standing person)."""
    return 0.5 * max(photo.height, photo.width) / np.tan(np.radians(DEFAULT_FOV_DEGREES) / 2)
