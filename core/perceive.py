"""Find the one person in each photo: 2D keypoints, 3D keypoints and a soft silhouette.

The default detector is MediaPipe's BlazePose: the person detector and the full landmark
model, both from inside the mediapipe 0.10.21 wheel (nothing is downloaded), run through
mediapipe's Tasks API so the same code serves Python 3.11 and 3.13. People beside the most
prominent one are looked for again at their own scale, so a photo of two is refused.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from .avatar import Perception, Photo
from .progress import PhotoError, Progress

log = logging.getLogger(__name__)

MIN_HEIGHT_FRACTION = 0.15
"""Smallest person, as a share of the photo's height, that still gives usable detail."""

_MAX_PEOPLE = 2
"""People the landmarker looks for at once: two tell one person from several."""
_MIN_STRIP = 0.2
"""Narrowest strip beside the person worth searching, as a share of the photo's height
(a person seen from the side is about this wide)."""
_PADS = (0.1, 0.25)
"""Margins of the padded tries, as a share of the photo's height (twice that of its width at
each side)."""
_LENIENT = 0.6
"""Share of the confidence thresholds the second landmarker asks when the first finds nobody:
BlazePose scores some plainly visible people (synthetic ones in dresses) just under 0.5."""
_BOX_MARGIN = np.array([0.15, 0.1])
"""Growth of the keypoints' box, as a share of its width and height, to hold the person's
mask (hair, hands and feet reach past the keypoints)."""
_MASK_IN_BOX = 0.9
"""Share of a lenient find's mask that must lie in that box."""
_KEYPOINTS_ON_MASK = 0.5
"""Share of a find's confident keypoints that must lie on its own mask (measured on synthetic
and real photos: at least 0.85 for a person, 0.15 for a find whose keypoints and mask took
different things for the person)."""
_SAME_PERSON_OVERLAP = 0.5
"""Masks sharing more than this part of the smaller one are the same person."""


class Detector(Protocol):
    """Anything that finds people in an image (tests use fakes)."""

    def detect(self, image: np.ndarray) -> list[Perception]:
        """Every person in `image` ((H, W, 3) uint8 RGB), most prominent first, each in
        pixels of `image`."""
        ...


class MediaPipeDetector:
    """BlazePose (the full landmark model with its segmentation mask) through mediapipe's
    Tasks API, which every mediapipe release since 0.10 has, including those for Python 3.13
    (Blender 5.1+) that no longer ship the models. The models come as a bundle made from the
    0.10.21 wheel (`models/pose_bundle.py`): shipped beside the package, or made in memory
    when 0.10.21 is installed. The landmarker is built on the first `detect` and reused; one
    lock serialises calls, so a background thread may share the detector."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        self._landmarkers: list[Any] = []

    def detect(self, image: np.ndarray) -> list[Perception]:
        image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        height, width = image.shape[:2]
        # The detector sees the photo shrunk to 224 px and, when the person fills the frame
        # (a side view), misses them or locks on a part; with a grey margin it finds the
        # whole person, at one margin or another. Every try runs and the one with the most
        # confidently seen person wins (a part, or a shape in the background, has low
        # keypoint visibility). A find whose keypoints are not on its own mask is no person
        # (the landmarker may take the skirt for one while the keypoints follow the body).
        # When no try finds anyone, the lenient landmarker tries again, for one person only,
        # whose mask must lie around its keypoints (at that threshold it also finds blobs in
        # the background).
        windows = [(image, 0, 0)]
        for pad in _PADS:
            top, side = int(height * pad), int(width * 2 * pad)
            padded = cv2.copyMakeBorder(
                image, top, top, side, side, cv2.BORDER_CONSTANT, value=(128, 128, 128)
            )
            windows.append((padded, -side, -top))
        with self._lock:
            if not self._landmarkers:
                self._build()
            for landmarker in self._landmarkers:
                lenient = landmarker is not self._landmarkers[0]
                tries = [
                    [
                        p
                        for p in self._people(landmarker, window, x0, y0, (height, width))
                        if _keypoints_on_mask(p) and (not lenient or _mask_fits_keypoints(p))
                    ]
                    for window, x0, y0 in windows
                ]
                found = max(tries, key=lambda people: max(map(_seen, people), default=-1.0))
                if found:
                    break
            else:
                return []
            found.sort(key=_seen, reverse=True)
            people = found[:1]
            others = [] if lenient else found[1:] + self._beside(image, people[0].mask)
            for person in others:
                # A shape in the background may pass the detector but is barely seen.
                if _seen(person) >= self.min_confidence and all(
                    _overlap(person.mask, p.mask) < _SAME_PERSON_OVERLAP for p in people
                ):
                    people.append(person)
        if len(people) > 1:
            log.info("%d people found", len(people))
        return people

    def _build(self) -> None:
        """Load the strict and the lenient landmarker (under a second each); mediapipe is
        imported only here."""
        from mediapipe.tasks.python import BaseOptions, vision

        from ..models import pose_bundle

        try:
            bundle = pose_bundle.load()
        except ImportError as error:
            raise RuntimeError(
                f"the pose models are missing: no {pose_bundle.BUNDLE.name} beside the package "
                f"and no mediapipe 0.10.21 to make it from ({error})"
            ) from error
        for confidence in (self.min_confidence, _LENIENT * self.min_confidence):
            options = vision.PoseLandmarkerOptions(
                base_options=BaseOptions(model_asset_buffer=bundle),
                running_mode=vision.RunningMode.IMAGE,
                num_poses=_MAX_PEOPLE,
                min_pose_detection_confidence=confidence,
                min_pose_presence_confidence=confidence,
                output_segmentation_masks=True,
            )
            self._landmarkers.append(vision.PoseLandmarker.create_from_options(options))

    def _beside(self, image: np.ndarray, mask: np.ndarray) -> list[Perception]:
        """People in the strips left and right of the person found. A bystander beside a
        larger person often scores too low in the whole photo; on a strip of its own, at
        its own scale, the detector finds them."""
        height, width = image.shape[:2]
        columns = np.flatnonzero((mask > 0.5).any(axis=0))
        if not len(columns):
            return []
        people = []
        for x0, x1 in ((0, int(columns[0])), (int(columns[-1]) + 1, width)):
            if x1 - x0 >= _MIN_STRIP * height:
                strip = np.ascontiguousarray(image[:, x0:x1])
                people += self._people(self._landmarkers[0], strip, x0, 0, (height, width))
        return people

    @staticmethod
    def _people(
        landmarker: Any, image: np.ndarray, x0: int, y0: int, full: tuple[int, int]
    ) -> list[Perception]:
        """Everyone `landmarker` finds in `image`, a window at (x0, y0) of a photo of size
        `full`, in the photo's pixels."""
        import mediapipe

        frame = mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB, data=image)
        result = landmarker.detect(frame)
        masks = result.segmentation_masks or [None] * len(result.pose_landmarks)
        people = []
        for i, landmarks in enumerate(result.pose_landmarks):
            points = [(p.x, p.y, p.visibility) for p in landmarks]
            world = None
            if i < len(result.pose_world_landmarks):
                world = [(p.x, p.y, p.z) for p in result.pose_world_landmarks[i]]
            mask = None if masks[i] is None else masks[i].numpy_view().reshape(image.shape[:2])
            people.append(_perception(points, world, mask, image.shape[:2], x0, y0, full))
        return people


@functools.cache
def default_detector() -> MediaPipeDetector:
    """The detector shared by every run of the process (its models load once)."""
    return MediaPipeDetector()


def _perception(
    points: Sequence[tuple[float, float, float]],
    world: Sequence[tuple[float, float, float]] | None,
    mask: np.ndarray | None,
    size: tuple[int, int],
    x0: int,
    y0: int,
    full: tuple[int, int],
) -> Perception:
    """BlazePose's output on a window of `size` (H, W) at (x0, y0) of a photo of size `full`
    as a Perception in the photo's pixels. The window may be larger than the photo (negative
    x0, y0: the padded second try)."""
    height, width = size
    # Landmarks are normalised so 0 and 1 are the window's edges; pixel centres sit at
    # integers here (`camera.project`), hence the half-pixel shift.
    keypoints = np.array(
        [(x * width - 0.5 + x0, y * height - 0.5 + y0, seen) for x, y, seen in points],
        dtype=np.float32,
    )
    keypoints[:, 2] = np.clip(keypoints[:, 2], 0.0, 1.0)
    # Already hip-centred metres in the camera's axes: x right, y down, z away.
    world_keypoints = None if world is None else np.array(world, np.float32)
    photo_mask = np.zeros(full, np.float32)
    if mask is not None:
        top, left = max(y0, 0), max(x0, 0)
        bottom, right = min(y0 + height, full[0]), min(x0 + width, full[1])
        window = np.clip(mask, 0, 1)
        photo_mask[top:bottom, left:right] = window[top - y0 : bottom - y0, left - x0 : right - x0]
    return Perception(mask=photo_mask, keypoints=keypoints, world_keypoints=world_keypoints)


def perceive(
    photos: Sequence[Photo], detector: Detector | None = None, progress: Progress | None = None
) -> list[Perception]:
    """The one person in each photo; raises `PhotoError` naming the first photo with no
    person, several people, or a person too small to use."""
    detector = detector or default_detector()
    progress = progress or Progress()
    perceptions = []
    for i, photo in enumerate(photos):
        progress.step("finding the person", i / len(photos))
        perceptions.append(_the_one_person(photo, detector.detect(photo.image)))
    progress.step("finding the person", 1.0)
    return perceptions


def _the_one_person(photo: Photo, people: list[Perception]) -> Perception:
    if not people:
        raise PhotoError(f"{photo.name}: no person found")
    if len(people) > 1:
        raise PhotoError(
            f"{photo.name}: more than one person ({len(people)} found); "
            "use photos of the person alone"
        )
    person = people[0]
    share = person_height(person) / photo.height
    if share < MIN_HEIGHT_FRACTION:
        raise PhotoError(
            f"{photo.name}: person too small ({100 * share:.0f} % of the image height; "
            f"needs at least {100 * MIN_HEIGHT_FRACTION:.0f} %)"
        )
    return person


def person_height(person: Perception) -> float:
    """Height of the person in pixels: the taller of the mask's rows and the span of the
    confident keypoints (the mask alone may miss a faint limb, keypoints miss the scalp)."""
    rows = np.flatnonzero((np.asarray(person.mask) > 0.5).any(axis=1))
    from_mask = float(rows[-1] - rows[0] + 1) if len(rows) else 0.0
    confident = _confident_points(person)[:, 1]
    from_keypoints = float(confident.max() - confident.min()) if len(confident) > 1 else 0.0
    return max(from_mask, from_keypoints)


def _mask_fits_keypoints(person: Perception) -> bool:
    """Whether the mask lies within the box of the confident keypoints (grown by
    `_BOX_MARGIN`): a person's does, a blob in the background the landmarker took for one
    does not (measured on synthetic photos: at least 0.98 against at most 0.84)."""
    confident = _confident_points(person)
    rows, cols = np.nonzero(person.mask > 0.5)
    if len(confident) < 2 or not len(rows):
        return False
    low, high = confident.min(0), confident.max(0)
    grow = _BOX_MARGIN * (high - low)
    low, high = low - grow, high + grow
    inside = (cols >= low[0]) & (cols <= high[0]) & (rows >= low[1]) & (rows <= high[1])
    return float(inside.mean()) >= _MASK_IN_BOX


def _keypoints_on_mask(person: Perception) -> bool:
    """Whether most confident keypoints lie on the find's own mask (`_KEYPOINTS_ON_MASK`)."""
    confident = np.round(_confident_points(person)).astype(int)
    height, width = person.mask.shape
    inside = (
        (confident[:, 0] >= 0)
        & (confident[:, 0] < width)
        & (confident[:, 1] >= 0)
        & (confident[:, 1] < height)
    )
    if not inside.any():
        return False
    x, y = confident[inside].T
    return float((person.mask[y, x] > 0.5).sum()) >= _KEYPOINTS_ON_MASK * len(confident)


def _confident_points(person: Perception) -> np.ndarray:
    """(K, 2) pixels of the keypoints the landmarker saw more likely than not."""
    return person.keypoints[person.keypoints[:, 2] > 0.5, :2]


def _seen(person: Perception) -> float:
    """Mean keypoint visibility: how confidently the landmarker saw a whole person."""
    return float(person.keypoints[:, 2].mean())


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Shared area of two masks over the smaller one's area (1 when one holds the other)."""
    a, b = a > 0.5, b > 0.5
    smaller = min(int(a.sum()), int(b.sum()))
    return float((a & b).sum()) / smaller if smaller else 0.0
