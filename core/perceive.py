"""Find the one person in each photo: 2D keypoints, 3D keypoints and a soft silhouette.

The default detector is MediaPipe's BlazePose (the full landmark model and the person
detector both ship inside the mediapipe wheel; nothing is downloaded). The landmarker
follows only the most prominent person, so the person detector also runs on its own to
count people; every extra detection must be confirmed by the landmarker on a crop around
it before it counts, which keeps a single person from being counted twice.
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

_PERSON_DETECTOR_GRAPH = """
input_stream: "image"
output_stream: "detections"
node {
  calculator: "PoseDetectionCpu"
  input_stream: "IMAGE:image"
  output_stream: "DETECTIONS:detections"
}
"""
"""BlazePose's person detector alone: the subgraph the landmarker runs first, which keeps
every person instead of only the first."""
_ROI_SCALE = 1.25
"""Crop half-side over the detector's body radius, as BlazePose's own region of interest."""
_MIN_STRIP = 0.2
"""Narrowest strip beside the person worth searching, as a share of the photo's height
(a person seen from the side is about this wide)."""
_PAD = 0.25
"""Margin of the second try, as a share of the photo's height (twice that of its width at
each side)."""
_SAME_PERSON_OVERLAP = 0.5
"""Masks sharing more than this part of the smaller one are the same person."""


class Detector(Protocol):
    """Anything that finds people in an image (tests use fakes)."""

    def detect(self, image: np.ndarray) -> list[Perception]:
        """Every person in `image` ((H, W, 3) uint8 RGB), most prominent first, each in
        pixels of `image`."""
        ...


class MediaPipeDetector:
    """BlazePose (model complexity 1: the heavy model is not in the wheel) with its
    segmentation mask. The models are built on the first `detect` and reused; one lock
    serialises calls, so a background thread may share the detector."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        self._landmarker: Any = None
        self._person_detector: Any = None

    def detect(self, image: np.ndarray) -> list[Perception]:
        image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        with self._lock:
            if self._landmarker is None:
                self._build()
            main = self._landmarks(image, 0, 0, image.shape[:2])
            if main is None:
                main = self._landmarks_padded(image)
            if main is None:
                return []
            people = [main]
            for u, v, radius in self._candidates(image, main.mask):
                if any(_mask_at(p.mask, u, v) for p in people):
                    continue  # the detector's hip centre lies on someone already found
                other = self._landmarks_around(image, u, v, radius)
                if other is not None and all(
                    _overlap(other.mask, p.mask) < _SAME_PERSON_OVERLAP for p in people
                ):
                    people.append(other)
            if len(people) > 1:
                log.info("%d people found", len(people))
            return people

    def _build(self) -> None:
        """Load both graphs (under a second); mediapipe is imported only here."""
        from google.protobuf import text_format
        from mediapipe.framework import calculator_pb2
        from mediapipe.python.solution_base import SolutionBase
        from mediapipe.python.solutions.pose import Pose

        self._landmarker = Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=True,
            min_detection_confidence=self.min_confidence,
        )
        graph = text_format.Parse(_PERSON_DETECTOR_GRAPH, calculator_pb2.CalculatorGraphConfig())
        self._person_detector = SolutionBase(
            graph_config=graph,
            calculator_params={
                "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": (
                    self.min_confidence
                )
            },
            outputs=["detections"],
        )

    def _candidates(self, image: np.ndarray, mask: np.ndarray) -> list[tuple[float, float, float]]:
        """Possible people as hip centre (u, v) and body radius, pixels. The detector sees
        the photo shrunk to 224 px, where a second person beside the first often scores
        too low, so the strips left and right of the person found are searched again at
        their own scale."""
        height, width = image.shape[:2]
        columns = np.flatnonzero((mask > 0.5).any(axis=0))
        windows = [(0, width)]
        if len(columns):
            windows += [(0, int(columns[0])), (int(columns[-1]) + 1, width)]
        candidates = []
        for x0, x1 in windows:
            if x1 - x0 < _MIN_STRIP * height:
                continue
            strip = np.ascontiguousarray(image[:, x0:x1])
            for detection in self._person_detector.process({"image": strip}).detections or []:
                hip, top = detection.location_data.relative_keypoints[:2]  # hip centre, head-top
                radius = np.hypot((top.x - hip.x) * (x1 - x0), (top.y - hip.y) * height)
                candidates.append((x0 + hip.x * (x1 - x0), hip.y * height, float(radius)))
        return candidates

    def _landmarks_padded(self, image: np.ndarray) -> Perception | None:
        """Second try with a grey margin around the photo: the detector sees the photo
        shrunk to 224 px and misses some people seen from the side or back when they fill
        the frame; with more context it finds them (measured on synthetic side views)."""
        height, width = image.shape[:2]
        top, side = int(height * _PAD), int(width * 2 * _PAD)
        padded = cv2.copyMakeBorder(
            image, top, top, side, side, cv2.BORDER_CONSTANT, value=(128, 128, 128)
        )
        return self._landmarks(padded, -side, -top, (height, width))

    def _landmarks_around(
        self, image: np.ndarray, u: float, v: float, radius: float
    ) -> Perception | None:
        """The landmarker on a square crop around one detection (clipped to the image)."""
        half = _ROI_SCALE * radius
        height, width = image.shape[:2]
        x0, x1 = max(0, int(u - half)), min(width, int(u + half))
        y0, y1 = max(0, int(v - half)), min(height, int(v + half))
        if min(x1 - x0, y1 - y0) < 32:
            return None
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        return self._landmarks(crop, x0, y0, (height, width))

    def _landmarks(
        self, image: np.ndarray, x0: int, y0: int, full: tuple[int, int]
    ) -> Perception | None:
        """Landmarker output on `image`, a window at (x0, y0) of a photo of size `full`
        (H, W), as a Perception in the photo's pixels; None when nobody is there. The window
        may be larger than the photo (negative x0, y0)."""
        result = self._landmarker.process(image)
        if result.pose_landmarks is None:
            return None
        height, width = image.shape[:2]
        # Landmarks are normalised so 0 and 1 are the image edges; pixel centres sit at
        # integers here (`camera.project`), hence the half-pixel shift.
        keypoints = np.array(
            [
                (p.x * width - 0.5 + x0, p.y * height - 0.5 + y0, p.visibility)
                for p in result.pose_landmarks.landmark
            ],
            dtype=np.float32,
        )
        keypoints[:, 2] = np.clip(keypoints[:, 2], 0.0, 1.0)
        world = None
        if result.pose_world_landmarks is not None:
            # Already hip-centred metres in the camera's axes: x right, y down, z away.
            world = np.array(
                [(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark], np.float32
            )
        mask = np.zeros(full, np.float32)
        if result.segmentation_mask is not None:
            # The window may reach past the photo (the padded second try): keep the overlap.
            top, left = max(y0, 0), max(x0, 0)
            bottom, right = min(y0 + height, full[0]), min(x0 + width, full[1])
            window = np.clip(result.segmentation_mask, 0, 1)
            mask[top:bottom, left:right] = window[top - y0 : bottom - y0, left - x0 : right - x0]
        return Perception(mask=mask, keypoints=keypoints, world_keypoints=world)


@functools.cache
def default_detector() -> MediaPipeDetector:
    """The detector shared by every run of the process (its models load once)."""
    return MediaPipeDetector()


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
    confident = person.keypoints[person.keypoints[:, 2] > 0.5, 1]
    from_keypoints = float(confident.max() - confident.min()) if len(confident) > 1 else 0.0
    return max(from_mask, from_keypoints)


def _mask_at(mask: np.ndarray, u: float, v: float) -> bool:
    """Whether pixel (u, v) lies inside the mask."""
    row, col = round(float(v)), round(float(u))
    inside = 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]
    return inside and bool(mask[row, col] > 0.5)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Shared area of two masks over the smaller one's area (1 when one holds the other)."""
    a, b = a > 0.5, b > 0.5
    smaller = min(int(a.sum()), int(b.sum()))
    return float((a & b).sum()) / smaller if smaller else 0.0
