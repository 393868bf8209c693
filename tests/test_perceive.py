"""Finding the one person in each photo: errors that name the photo, and the real detector
on synthetic people."""

from __future__ import annotations

import sys
import zipfile

import numpy as np
import pytest
import torch

from photo_avatar.core.avatar import KEYPOINT_NAMES, Perception, Photo
from photo_avatar.core.body_model import BodyModel
from photo_avatar.core.perceive import (
    Detector,
    MediaPipeDetector,
    _keypoints_on_mask,
    _mask_fits_keypoints,
    perceive,
    person_height,
)
from photo_avatar.core.progress import PhotoError, Progress
from photo_avatar.core.synthetic import SyntheticPhoto, make_person, render_photo, sample_cameras
from photo_avatar.models import pose_bundle

WIDTH, HEIGHT = 512, 640
JOINTS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee")


class FakeDetector:
    """Answers each `detect` call with the next list of people it was given."""

    def __init__(self, *answers: list[Perception]) -> None:
        self.answers = list(answers)

    def detect(self, image: np.ndarray) -> list[Perception]:
        return self.answers.pop(0)


def _photo(name: str = "photo.png") -> Photo:
    return Photo(name, np.zeros((HEIGHT, WIDTH, 3), np.uint8))


def _person(top: int, bottom: int) -> Perception:
    """A standing figure whose mask spans rows top..bottom, keypoints inside it."""
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    mask[top : bottom + 1, 200:300] = 1.0
    v = np.linspace(top + 0.1 * (bottom - top), bottom, len(KEYPOINT_NAMES))
    keypoints = np.stack([np.full_like(v, 250.0), v, np.ones_like(v)], 1).astype(np.float32)
    return Perception(mask=mask, keypoints=keypoints)


def test_one_person_per_photo_is_returned_in_order() -> None:
    first, second = _person(50, 600), _person(100, 500)
    seen: list[float] = []
    found = perceive(
        [_photo("a.png"), _photo("b.png")],
        FakeDetector([first], [second]),
        Progress(lambda _, f: seen.append(f)),
    )
    assert found == [first, second]
    assert seen[-1] == 1.0


def test_photo_without_person_is_named() -> None:
    with pytest.raises(PhotoError, match=r"^empty\.png: no person found$"):
        perceive([_photo(), _photo("empty.png")], FakeDetector([_person(50, 600)], []))


def test_photo_with_two_people_is_named() -> None:
    two = [_person(50, 600), _person(60, 590)]
    with pytest.raises(PhotoError, match=r"^group\.png: more than one person \(2 found\)"):
        perceive([_photo("group.png")], FakeDetector(two))


def test_small_person_is_refused_with_the_share_of_the_height() -> None:
    with pytest.raises(PhotoError) as raised:
        perceive([_photo("far.png")], FakeDetector([_person(300, 363)]))
    assert str(raised.value) == (
        "far.png: person too small (10 % of the image height; needs at least 15 %)"
    )
    assert perceive([_photo()], FakeDetector([_person(300, 415)]))  # 18 % is enough


def test_person_height_falls_back_on_keypoints_without_mask() -> None:
    person = _person(100, 500)
    assert person_height(person) == 401
    blank = Perception(mask=np.zeros_like(person.mask), keypoints=person.keypoints)
    assert person_height(blank) == pytest.approx(0.9 * 400, abs=1)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return MediaPipeDetector()


@pytest.fixture(scope="module")
def rendered(body: BodyModel) -> list[tuple[SyntheticPhoto, dict[str, np.ndarray]]]:
    """Two synthetic people photographed near frontally, each with its projected joints
    (keypoint name -> (2,) pixels)."""
    shots = []
    for seed in (0, 1):
        person = make_person(seed)
        camera = sample_cameras(1, WIDTH, HEIGHT, seed=seed, person=person)[0]
        with torch.no_grad():
            rest = body.rest(torch.as_tensor(person.phenotype))
            landmarks = body.pose(rest, torch.as_tensor(person.pose)[None]).landmarks[0]
        joints = camera.project(landmarks).numpy()[:, :2]
        photo = render_photo(person, camera, seed=seed)
        shots.append((photo, dict(zip(body.landmark_names, joints, strict=True))))
    return shots


@pytest.mark.slow  # rendering the two synthetic people takes ~20 s
def test_mediapipe_finds_the_synthetic_person(rendered, detector: Detector) -> None:
    photo, joints = rendered[0]
    (person,) = perceive([Photo("front.png", photo.image)], detector)
    for name in JOINTS:
        found = person.keypoints[KEYPOINT_NAMES.index(name)]
        assert np.linalg.norm(found[:2] - joints[name]) < 25, name
        assert found[2] > 0.5, name
    found_mask = person.mask > 0.5
    assert (found_mask & photo.mask).sum() / (found_mask | photo.mask).sum() >= 0.8
    # World keypoints in the camera's axes: the person's left is on the image's right
    # (x right), shoulders above the hips (y down).
    world = person.world_keypoints
    assert world is not None
    left, right = KEYPOINT_NAMES.index("left_shoulder"), KEYPOINT_NAMES.index("right_shoulder")
    assert world[left, 0] > world[right, 0]
    assert world[left, 1] < world[KEYPOINT_NAMES.index("left_hip"), 1]


@pytest.mark.slow
def test_two_synthetic_people_side_by_side_are_refused(rendered, detector: Detector) -> None:
    (one, _), (other, _) = rendered
    assert len(detector.detect(one.image)) == 1
    assert len(detector.detect(other.image)) == 1
    group = np.concatenate([one.image, other.image], axis=1)
    with pytest.raises(PhotoError, match=r"^pair\.png: more than one person \(2 found\)"):
        perceive([Photo("pair.png", group)], detector)


@pytest.mark.slow
def test_smaller_person_beside_the_first_is_counted(rendered, detector: Detector) -> None:
    # A bystander at half the size: too small for the detector on the whole photo, found
    # by searching the strip beside the first person.
    (one, _), (other, _) = rendered
    far = np.empty((HEIGHT, WIDTH // 2, 3), np.uint8)
    far[:] = other.image[:8].reshape(-1, 3).mean(0)
    far[HEIGHT // 2 - 20 : -20] = other.image[::2, ::2]
    people = detector.detect(np.concatenate([one.image, far], axis=1))
    assert len(people) == 2
    assert people[1].keypoints[KEYPOINT_NAMES.index("left_hip"), 0] > WIDTH


def test_empty_scene_has_no_person(detector: Detector) -> None:
    noise = np.random.default_rng(0).integers(100, 140, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    with pytest.raises(PhotoError, match=r"^wall\.png: no person found$"):
        perceive([Photo("wall.png", noise)], detector)


@pytest.mark.slow
def test_person_seen_from_the_side_filling_the_frame_is_found(detector: Detector) -> None:
    """BlazePose alone finds only part of this side view; the padded try finds all of it."""
    person = make_person(seed=1001)
    shot = render_photo(person, sample_cameras(4, seed=1)[1], seed=11)
    people = detector.detect(shot.image)
    assert len(people) == 1
    found = people[0].mask > 0.5
    iou = (found & shot.mask).sum() / (found | shot.mask).sum()
    assert iou > 0.9


def _no_mediapipe_0_10_21() -> bytes:
    raise ImportError("no mediapipe 0.10.21 here")


@pytest.mark.slow
@pytest.mark.skipif(
    not pose_bundle.in_mediapipe(),
    reason="no mediapipe 0.10.21 to make the bundle from (Python 3.13)",
)
def test_detector_runs_from_the_shipped_bundle_alone(rendered, tmp_path, monkeypatch) -> None:
    """Where mediapipe 0.10.21 cannot be installed (Python 3.13, Blender 5.1+) the bundle
    shipped beside the package is all the detector has."""
    path = tmp_path / "pose_landmarker.task"
    pose_bundle.main(["-o", str(path)])
    with zipfile.ZipFile(path) as bundle:
        members = sorted(bundle.namelist())
        assert all(b"TFLITE_METADATA" in bundle.read(name) for name in members)
    assert members == ["pose_detector.tflite", "pose_landmarks_detector.tflite"]
    monkeypatch.setattr(pose_bundle, "BUNDLE", path)
    monkeypatch.setattr(pose_bundle, "bundle_bytes", _no_mediapipe_0_10_21)
    photo, joints = rendered[0]
    (person,) = MediaPipeDetector().detect(photo.image)
    hip = person.keypoints[KEYPOINT_NAMES.index("left_hip")]
    assert np.linalg.norm(hip[:2] - joints["left_hip"]) < 25


def test_missing_pose_models_are_named(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pose_bundle, "BUNDLE", tmp_path / "absent.task")
    monkeypatch.setattr(pose_bundle, "bundle_bytes", _no_mediapipe_0_10_21)
    with pytest.raises(RuntimeError, match=r"pose models are missing: no absent\.task"):
        MediaPipeDetector().detect(np.zeros((64, 64, 3), np.uint8))


def test_pose_models_are_found_in_the_bundle_or_in_mediapipe(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(pose_bundle, "BUNDLE", tmp_path / "absent.task")
    # mediapipe 0.10.21, with the models, on 3.11; 1.2.3, without, on 3.13.
    assert pose_bundle.in_mediapipe() == (sys.version_info < (3, 13))
    assert pose_bundle.available() == pose_bundle.in_mediapipe()
    monkeypatch.setattr(pose_bundle, "_MODELS", {"x.tflite": ("absent/x.tflite", 0.0, 1.0)})
    assert not pose_bundle.available()
    (tmp_path / "absent.task").write_bytes(b"")
    assert pose_bundle.available()


@pytest.mark.slow
def test_person_scored_under_the_threshold_is_found_by_the_lenient_try(
    detector: Detector,
) -> None:
    """BlazePose scores this plainly visible woman in a dress just under 0.5."""
    person = make_person(seed=1007)
    shot = render_photo(person, sample_cameras(1, seed=7)[0], seed=70)
    strict = MediaPipeDetector()
    strict._build()
    assert not strict._people(strict._landmarkers[0], shot.image, 0, 0, shot.image.shape[:2])
    (found,) = detector.detect(shot.image)
    found_mask = found.mask > 0.5
    assert (found_mask & shot.mask).sum() / (found_mask | shot.mask).sum() > 0.9


def test_a_lenient_find_must_have_its_mask_around_its_keypoints() -> None:
    person = _person(100, 500)  # mask columns 200..300
    person.keypoints[:, 0] = np.linspace(205, 295, len(KEYPOINT_NAMES))
    assert _mask_fits_keypoints(person)
    blob = np.zeros_like(person.mask)
    blob[100:500, 350:450] = 1.0  # a shape beside the keypoints
    assert not _mask_fits_keypoints(Perception(blob, person.keypoints))


def test_a_find_must_have_its_keypoints_on_its_mask() -> None:
    person = _person(100, 500)  # mask columns 200..300, keypoints down column 250
    assert _keypoints_on_mask(person)
    skirt = np.zeros_like(person.mask)
    skirt[350:640, 0:WIDTH] = 1.0  # the landmarker's mask took the lower half of the photo
    assert not _keypoints_on_mask(Perception(skirt, person.keypoints))
    person.keypoints[:, 2] = 0.1  # no confident keypoint: nothing vouches for the mask
    assert not _keypoints_on_mask(person)


@pytest.mark.slow
def test_a_find_whose_mask_is_not_the_person_is_passed_over(detector: Detector) -> None:
    """On this woman in a dress, seen from the front, the strict landmarker's unpadded find has
    its keypoints on the body and its mask on the lower half of the photo; a padded try finds
    her."""
    person = make_person(seed=1007)
    camera = sample_cameras(4, seed=7, person=person, frontal=True)[0]
    shot = render_photo(person, camera, seed=70)
    strict = MediaPipeDetector()
    strict._build()
    (wrong, *_) = strict._people(strict._landmarkers[0], shot.image, 0, 0, shot.image.shape[:2])
    wrong_mask = wrong.mask > 0.5
    assert (wrong_mask & shot.mask).sum() / (wrong_mask | shot.mask).sum() < 0.2
    (found,) = detector.detect(shot.image)
    found_mask = found.mask > 0.5
    assert (found_mask & shot.mask).sum() / (found_mask | shot.mask).sum() > 0.9
