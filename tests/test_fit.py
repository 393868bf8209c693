"""Body fitting on synthetic photos of the body model itself, with known shape, pose and camera."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from photo_avatar.core.avatar import KEYPOINT_NAMES, BodyFit, Perception, Photo, Settings
from photo_avatar.core.body_model import BodyModel, Rest
from photo_avatar.core.camera import Camera
from photo_avatar.core.fit import fit_body
from photo_avatar.core.metrics import mask_iou
from photo_avatar.core.raster import render_depth
from photo_avatar.core.skinning import axis_angle_to_matrix
from photo_avatar.core.synthetic import make_person, sample_cameras, true_keypoints

SIDE = 512
PIXEL_NOISE = 2.5
"""Per-axis pixel noise of the synthetic keypoints (about 3 px radial)."""
_HAND_BONES = {"pinky": "HandPinky1", "index": "HandIndex1", "thumb": "HandThumb2"}


@dataclass
class Truth:
    """A synthetic person: shape (1, P), pose (1, J, 3, 3), posed vertices (V, 3) and
    landmarks (L, 3) in world space; the 33 keypoints in world space (33, 3)."""

    phenotype: torch.Tensor
    pose: torch.Tensor
    vertices: torch.Tensor
    landmarks: torch.Tensor
    keypoints: np.ndarray


def natural_pose(body: BodyModel, rest: Rest, rng: np.random.Generator) -> torch.Tensor:
    """(1, J, 3, 3) a plausible standing pose: arms between down and raised, elbows and
    knees bent forward/backward, small spine and head turns. Rotations are given about
    world axes and moved into each bone's rest frame."""
    rotations = body.identity_pose(1)
    frames = rest.bone_matrices[0, :, :3, :3]

    def turn(bone: int, axis: tuple[float, float, float], degrees: float) -> None:
        world = axis_angle_to_matrix(torch.tensor(axis) * math.radians(degrees))
        rotations[0, bone] = frames[bone].T @ world @ frames[bone] @ rotations[0, bone]

    joint = body.joint_bones
    for side, sign in (("left", 1.0), ("right", -1.0)):
        turn(joint[f"{side}_shoulder"], (0.0, -sign, 0.0), rng.uniform(-35, 70))
        turn(joint[f"{side}_shoulder"], (1.0, 0.0, 0.0), -rng.uniform(-15, 40))
        elbow_axis = torch.linalg.cross(
            rest.heads[0, joint[f"{side}_elbow"]] - rest.heads[0, joint[f"{side}_shoulder"]],
            torch.tensor([0.0, -1.0, 0.0]),
        )
        turn(
            joint[f"{side}_elbow"],
            tuple((elbow_axis / elbow_axis.norm()).tolist()),
            rng.uniform(0, 60),
        )
        turn(joint[f"{side}_hip"], (1.0, 0.0, 0.0), -rng.uniform(-10, 25))
        turn(joint[f"{side}_hip"], (0.0, sign, 0.0), rng.uniform(-3, 8))
        turn(joint[f"{side}_knee"], (1.0, 0.0, 0.0), rng.uniform(0, 35))
    spine = body.bone_names.index("mixamorig:Spine1")
    turn(spine, (1.0, 0.0, 0.0), rng.uniform(-8, 8))
    turn(spine, (0.0, 0.0, 1.0), rng.uniform(-10, 10))
    head = body.bone_names.index("mixamorig:Head")
    turn(head, (0.0, 0.0, 1.0), rng.uniform(-15, 15))
    turn(head, (1.0, 0.0, 0.0), rng.uniform(-10, 10))
    return rotations


def make_truth(body: BodyModel, seed: int) -> Truth:
    """A random shape in a natural pose, with all 33 keypoints placed on the body."""
    rng = np.random.default_rng(seed)
    phenotype = torch.tensor(
        rng.uniform(0.2, 0.8, (1, len(body.phenotype_names))), dtype=torch.float32
    )
    with torch.no_grad():
        pose = natural_pose(body, body.rest(phenotype), rng)
    return posed_truth(body, phenotype, pose)


def posed_truth(body: BodyModel, phenotype: torch.Tensor, pose: torch.Tensor) -> Truth:
    """The person of `phenotype` (1, P) in `pose` (1, J, 3, 3), keypoints placed on the body."""
    with torch.no_grad():
        rest = body.rest(phenotype)
        posed = body.pose(rest, pose)
    names = body.landmark_names
    at = {n: posed.landmarks[0, i].numpy() for i, n in enumerate(names)}
    head = posed.bone_matrices[0, body.bone_names.index("mixamorig:Head")].numpy()
    up = head[:3, 1]
    for side in ("left", "right"):
        towards = at[f"{side}_ear"] - at["nose"]
        for name, share in (("eye_inner", 0.15), ("eye", 0.25), ("eye_outer", 0.35)):
            at[f"{side}_{name}"] = at["nose"] + share * towards + 0.035 * up
        at[f"mouth_{side}"] = at["nose"] + 0.2 * towards - 0.04 * up
        hand = side.capitalize()
        for name, bone in _HAND_BONES.items():
            index = body.bone_names.index(f"mixamorig:{hand}{bone}")
            at[f"{side}_{name}"] = posed.bone_matrices[0, index, :3, 3].numpy()
    keypoints = np.stack([at[n] for n in KEYPOINT_NAMES]).astype(np.float32)
    return Truth(phenotype, pose, posed.vertices[0], posed.landmarks[0], keypoints)


def photograph(
    body: BodyModel, truth: Truth, camera: Camera, seed: int, world: bool = True
) -> tuple[Photo, Perception]:
    """A photo of the truth: silhouette mask, noisy keypoints (face points hidden behind the
    head get a low confidence), and hip-centred 3D keypoints in camera axes."""
    rng = np.random.default_rng(seed)
    render = render_depth(camera, truth.vertices, body.faces)
    screen = camera.project(torch.as_tensor(truth.keypoints)).numpy()
    pixels = screen[:, :2] + rng.normal(0, PIXEL_NOISE, (33, 2))
    confidence = np.full(33, 0.95, np.float32)
    front = render.front.depth.numpy()
    for i, name in enumerate(KEYPOINT_NAMES[:11]):
        u, v = np.clip(np.round(screen[i, :2]).astype(int), 0, SIDE - 1)
        if screen[i, 2] > front[v, u] + 0.03:
            confidence[i] = 0.2 if name != "nose" else 0.3
    keypoints = np.concatenate([pixels, confidence[:, None]], 1).astype(np.float32)
    cam = camera.to_camera(torch.as_tensor(truth.keypoints)).numpy()
    hips = 0.5 * (cam[KEYPOINT_NAMES.index("left_hip")] + cam[KEYPOINT_NAMES.index("right_hip")])
    world_keypoints = (
        (cam - hips + rng.normal(0, 0.02, (33, 3))).astype(np.float32) if world else None
    )
    image = np.where(render.mask[..., None], 180, 40).astype(np.uint8).repeat(3, axis=2)
    photo = Photo(f"synthetic_{seed}.png", image, focal_px=float(camera.fx))
    return photo, Perception(render.mask.astype(np.float32), keypoints, world_keypoints)


def camera_yaw(camera: Camera) -> float:
    """Degrees: the yaw of `Camera.looking_at_person` that has this camera's rotation."""
    return math.degrees(math.atan2(-camera.rotation[2, 0], camera.rotation[0, 0]))


def yaw_error(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def fitted_iou(body: BodyModel, fit: BodyFit, index: int, mask: np.ndarray) -> float:
    with torch.no_grad():
        rest = body.rest(torch.as_tensor(fit.phenotype))
        posed = body.pose(rest, torch.as_tensor(fit.poses[index : index + 1]))
    render = render_depth(fit.cameras[index], posed.vertices[0], body.faces)
    return mask_iou(render.mask, mask > 0.5)


def fitted_landmarks(body: BodyModel, fit: BodyFit, index: int) -> torch.Tensor:
    """(L, 3) world landmarks of the fitted body in photo `index`'s pose."""
    with torch.no_grad():
        rest = body.rest(torch.as_tensor(fit.phenotype))
        return body.pose(rest, torch.as_tensor(fit.poses[index : index + 1])).landmarks[0]


def joint_error_mm(
    body: BodyModel, fit: BodyFit, truth: Truth, camera: Camera, index: int = 0
) -> float:
    """Mean joint error (mm) of photo `index`'s pose in its camera frame after matching the
    centroid and scale (one photo leaves size and distance ambiguous; rotation errors count)."""
    joints = len(body.joint_bones)
    pred = fit.cameras[index].to_camera(fitted_landmarks(body, fit, index)[:joints]).numpy()
    true = camera.to_camera(truth.landmarks[:joints]).numpy()
    pred, true = pred - pred.mean(0), true - true.mean(0)
    pred *= np.sqrt((true**2).sum() / (pred**2).sum())
    return float(1000 * np.linalg.norm(pred - true, axis=1).mean())


def pose_spread_mm(body: BodyModel, fit: BodyFit) -> float:
    """Mean distance (mm) of each photo's posed landmarks from their mean over the photos,
    in the body's own frame (cameras left out): how far the photos disagree on the pose."""
    landmarks = torch.stack([fitted_landmarks(body, fit, k) for k in range(len(fit.poses))])
    return float(1000 * (landmarks - landmarks.mean(0)).norm(dim=-1).mean())


def test_one_photo_fit_lands_on_its_silhouette_facing_the_right_way(body: BodyModel) -> None:
    truth = make_truth(body, seed=3)
    camera = Camera.looking_at_person(SIDE, SIDE, 30.0, 3.0, 45.0)
    photo, seen = photograph(body, truth, camera, seed=3)
    fit = fit_body([photo], [seen], body, Settings.from_preset("fast"))
    assert yaw_error(camera_yaw(fit.cameras[0]), camera_yaw(camera)) < 15.0
    assert fitted_iou(body, fit, 0, seen.mask) > 0.8
    assert joint_error_mm(body, fit, truth, camera) < 40.0
    assert fit.keypoint_error_px[0] < 6.0


def test_photos_from_several_sides_agree_on_one_pose(body: BodyModel) -> None:
    """Without 3D keypoints each photo leaves its limbs loose along its own view ray; a
    person standing still for photos from three sides gets one pose from all of them."""
    truth = make_truth(body, seed=2)
    cameras = [Camera.looking_at_person(SIDE, SIDE, y, 3.0, 45.0) for y in (10.0, 100.0, 190.0)]
    shots = [photograph(body, truth, c, seed=20 + k, world=False) for k, c in enumerate(cameras)]
    fit = fit_body([p for p, _ in shots], [s for _, s in shots], body, Settings.from_preset("fast"))
    assert pose_spread_mm(body, fit) < 12.0
    for k, camera in enumerate(cameras):
        assert joint_error_mm(body, fit, truth, camera, k) < 35.0


def test_a_limb_that_moved_between_photos_keeps_its_own_pose(body: BodyModel) -> None:
    """Agreement pulls small differences together, not real movement: the arm raised in
    the second photo stays raised there."""
    truth = make_truth(body, seed=4)
    bone = body.joint_bones["left_shoulder"]
    frame = body.rest(truth.phenotype).bone_matrices[0, bone, :3, :3].detach()
    lift = axis_angle_to_matrix(torch.tensor([0.0, -1.0, 0.0]) * math.radians(70.0))
    pose = truth.pose.clone()
    pose[0, bone] = frame.T @ lift @ frame @ pose[0, bone]
    raised = posed_truth(body, truth.phenotype, pose)
    cameras = [Camera.looking_at_person(SIDE, SIDE, y, 3.0, 45.0) for y in (0.0, 40.0)]
    shots = [
        photograph(body, person, camera, seed=40 + k)
        for k, (person, camera) in enumerate(zip((truth, raised), cameras, strict=True))
    ]
    fit = fit_body([p for p, _ in shots], [s for _, s in shots], body, Settings.from_preset("fast"))
    names = body.landmark_names
    shoulder, elbow = names.index("left_shoulder"), names.index("left_elbow")
    for k, camera in enumerate(cameras):
        fitted = fit.cameras[k].to_camera(fitted_landmarks(body, fit, k)).numpy()
        arm = fitted[elbow] - fitted[shoulder]
        angles = []
        for person in (truth, raised):
            true = camera.to_camera(person.landmarks).numpy()
            true_arm = true[elbow] - true[shoulder]
            cos = arm @ true_arm / np.linalg.norm(arm) / np.linalg.norm(true_arm)
            angles.append(math.degrees(math.acos(min(cos, 1.0))))
        own, other = angles[k], angles[1 - k]
        assert own < 35.0 and own < other - 15.0
    assert max(fit.keypoint_error_px) < 6.0


def chest_depth_cm(body: BodyModel, phenotype: np.ndarray) -> float:
    """Front-to-back depth (cm) of the rest body at the chest (72 % of its height, within
    8 cm of the middle)."""
    with torch.no_grad():
        vertices = body.rest(torch.as_tensor(phenotype)).vertices[0].numpy()
    low, top = vertices[:, 2].min(), vertices[:, 2].max()
    band = np.abs(vertices[:, 2] - (low + 0.72 * (top - low))) < 0.02
    chest = vertices[band & (np.abs(vertices[:, 0]) < 0.08), 1]
    return float(100 * (chest.max() - chest.min()))


def clothed_shots(
    body: BodyModel, person, cameras: list[Camera]
) -> tuple[list[Photo], list[Perception]]:
    """Masks of the clothed person and the body's true landmarks, one photo per camera."""
    photos, seen = [], []
    keypoints = true_keypoints(body, person, cameras)
    for k, camera in enumerate(cameras):
        mask = render_depth(camera, torch.as_tensor(person.vertices), person.faces).mask
        image = np.where(mask[..., None], 180, 40).astype(np.uint8).repeat(3, axis=2)
        photos.append(Photo(f"clothed_{k}.png", image, focal_px=float(camera.fx)))
        seen.append(Perception(mask.astype(np.float32), keypoints[k]))
    return photos, seen


def test_more_photos_of_clothes_do_not_fatten_the_body(body: BodyModel) -> None:
    """Every photo's silhouette shows the same clothes around the body; photos from four
    sides must not outvote the shape prior and fit a body thicker than one photo does."""
    person = make_person(seed=1005)
    cameras = sample_cameras(4, seed=5, person=person, frontal=True)
    settings = Settings.from_preset("fast")
    depths = []
    for views in (cameras[:1], cameras):
        photos, seen = clothed_shots(body, person, views)
        depths.append(chest_depth_cm(body, fit_body(photos, seen, body, settings).phenotype))
    truth = chest_depth_cm(body, person.phenotype)
    assert abs(depths[1] - depths[0]) < 1.0
    assert depths[1] - truth < 2.0
