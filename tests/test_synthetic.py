"""The synthetic person maker: deterministic, closed clothed surfaces that contain the body,
sound skinning, photos whose mask and depth agree, cameras that frame the person."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from photo_avatar.core.body_model import BodyModel
from photo_avatar.core.camera import Camera
from photo_avatar.core.garments import head_bone, subtree
from photo_avatar.core.raster import render_depth
from photo_avatar.core.synthetic import (
    GARMENTS,
    SyntheticPerson,
    arm_clearance,
    make_person,
    render_photo,
    sample_cameras,
)

WIDTH, HEIGHT = 256, 320


@pytest.fixture(scope="module")
def skirted(body: BodyModel) -> SyntheticPerson:
    return make_person(seed=1, garment="skirt")


@pytest.fixture(scope="module")
def loose(body: BodyModel) -> SyntheticPerson:
    return make_person(seed=5, garment="loose_top")


def _frontal(person: SyntheticPerson, width: int = WIDTH, height: int = HEIGHT) -> Camera:
    mid = 0.5 * (person.vertices[:, 2].min() + person.vertices[:, 2].max())
    return Camera.looking_at_person(width, height, 0.0, 3.2, 40.0, (0.0, 0.0, float(mid)))


def test_same_seed_gives_identical_person_and_photo(loose):
    again = make_person(seed=5, garment="loose_top")
    assert np.array_equal(again.vertices, loose.vertices)
    assert np.array_equal(again.colors, loose.colors)
    camera = sample_cameras(1, WIDTH, HEIGHT, seed=3)[0]
    first = render_photo(loose, camera, seed=7)
    second = render_photo(again, camera, seed=7)
    assert np.array_equal(first.image, second.image)
    assert not np.array_equal(first.image, render_photo(loose, camera, seed=8).image)


def test_same_seed_keeps_the_body_whatever_the_garment(skirted):
    trousered = make_person(seed=1, garment="trousers")
    assert np.array_equal(trousered.body_vertices, skirted.body_vertices)
    assert len(trousered.vertices) != len(skirted.vertices)


def test_body_vertices_are_the_body_model_posed(body, skirted):
    with torch.no_grad():
        rest = body.rest(torch.as_tensor(skirted.phenotype))
        posed = body.pose(rest, torch.as_tensor(skirted.pose)[None]).vertices[0].numpy()
    assert skirted.phenotype.shape == (1, len(body.phenotype_names))
    assert ((skirted.phenotype >= 0) & (skirted.phenotype <= 1)).all()
    assert np.abs(posed - skirted.body_vertices).max() < 1e-5
    assert np.array_equal(skirted.body_faces, body.faces)


def test_weights_sum_to_one(body, skirted, loose):
    for person in (skirted, loose):
        assert person.weights.shape == (len(person.vertices), len(body.bone_names))
        assert (person.weights >= 0).all()
        assert np.abs(person.weights.sum(1) - 1).max() < 1e-5


def test_skirt_weights_follow_the_legs_and_blend_between_them(body, skirted):
    # Clothed vertices near the left knee are skinned mostly to the left leg's bones.
    left_knee = body.joint_bones["left_knee"]
    left_hip = body.joint_bones["left_hip"]
    knee = skirted.body_vertices[body.skin_weights[:, left_knee].numpy() > 0.9].mean(0)
    near = np.linalg.norm(skirted.vertices - knee, axis=1) < 0.08
    leg = skirted.weights[near][:, [left_hip, left_knee]].sum(1)
    assert near.sum() > 10 and leg.mean() > 0.5


def test_clothed_surface_is_closed_and_coloured(skirted, loose):
    for person in (skirted, loose):
        assert trimesh.Trimesh(person.vertices, person.faces, process=False).is_watertight
        assert 20_000 < len(person.faces) <= 70_000
        assert person.colors.shape == (len(person.vertices), 3)
        assert person.colors.dtype == np.uint8
        assert len(np.unique(person.colors // 32, axis=0)) > 5  # skin, cloth, hair, shoes


def test_people_have_adult_statures(skirted, loose):
    for person in (skirted, loose):
        stature = np.ptp(person.body_vertices[:, 2])
        assert 1.4 < stature < 2.0


def test_clothes_contain_the_body(body, skirted, loose):
    # From every side the clothed surface covers the skin and lies at or in front of it,
    # and at or behind the body's back (2 mm of meshing tolerance). Hands and head are
    # left out: fingers merge into mittens and the face is remeshed at the voxel size.
    weights = body.skin_weights.numpy()
    ends = [body.joint_bones["left_wrist"], body.joint_bones["right_wrist"], head_bone(body)]
    extremity = sum(weights[:, subtree(body, bone)].sum(1) for bone in ends)
    extremity = torch.as_tensor(extremity[:, None], dtype=torch.float32)
    for person in (skirted, loose):
        for yaw in (0.0, 90.0, 200.0):
            cam = Camera.looking_at_person(160, 200, yaw, 3.2, 40.0, (0.0, 0.0, 0.0))
            bare = render_depth(cam, person.body_vertices, person.body_faces)
            dressed = render_depth(cam, person.vertices, person.faces)
            assert (bare.mask & ~dressed.mask).sum() < 0.02 * bare.mask.sum()
            limbs = bare.front.interpolate(extremity, torch.as_tensor(body.faces))[..., 0]
            inside = bare.mask & (limbs.numpy() < 0.1)
            assert (inside & ~dressed.mask).sum() < 0.005 * inside.sum()
            both = inside & dressed.mask
            front = dressed.front.depth.numpy()[both] <= bare.front.depth.numpy()[both] + 0.002
            back = dressed.back.depth.numpy()[both] >= bare.back.depth.numpy()[both] - 0.002
            assert front.mean() > 0.99 and back.mean() > 0.99


def test_loose_top_stands_off_the_chest(body, loose):
    cam = _frontal(loose)
    bare = render_depth(cam, loose.body_vertices, loose.body_faces).front.depth.numpy()
    dressed = render_depth(cam, loose.vertices, loose.faces).front.depth.numpy()
    with torch.no_grad():
        rest = body.rest(torch.as_tensor(loose.phenotype))
        marks = body.pose(rest, torch.as_tensor(loose.pose)[None]).landmarks[0]
    names = body.landmark_names
    shoulders = marks[[names.index("left_shoulder"), names.index("right_shoulder")]].mean(0)
    hips = marks[[names.index("left_hip"), names.index("right_hip")]].mean(0)
    chest = 0.6 * shoulders + 0.4 * hips
    u, v, _ = cam.project(chest[None])[0].round().long().tolist()
    gap = bare[v - 2 : v + 3, u - 2 : u + 3] - dressed[v - 2 : v + 3, u - 2 : u + 3]
    assert 0.01 < np.median(gap) < 0.04


def test_skirt_spans_between_the_knees(body, skirted):
    cam = _frontal(skirted)
    with torch.no_grad():
        rest = body.rest(torch.as_tensor(skirted.phenotype))
        marks = body.pose(rest, torch.as_tensor(skirted.pose)[None]).landmarks[0]
    names = body.landmark_names
    knees = marks[[names.index("left_knee"), names.index("right_knee")]]
    above = knees + torch.tensor([0.0, 0.0, 0.04])
    (ul, v, _), (ur, _, _) = cam.project(above).round().long().tolist()
    bare = render_depth(cam, skirted.body_vertices, skirted.body_faces).mask[v, ur : ul + 1]
    dressed = render_depth(cam, skirted.vertices, skirted.faces).mask[v, ur : ul + 1]
    assert not bare.all()  # the legs leave a gap ...
    assert dressed.all()  # ... that the skirt closes


def test_photo_mask_is_where_front_depth_is_finite(skirted):
    photo = render_photo(skirted, _frontal(skirted), seed=2)
    assert photo.image.shape == (HEIGHT, WIDTH, 3) and photo.image.dtype == np.uint8
    assert np.array_equal(photo.mask, np.isfinite(photo.front))
    assert np.array_equal(photo.mask, np.isfinite(photo.back))
    assert (photo.front[photo.mask] <= photo.back[photo.mask]).all()
    assert (photo.back[photo.mask] - photo.front[photo.mask]).max() > 0.15  # a body's depth
    assert 0.08 < photo.mask.mean() < 0.5


def test_backgrounds(skirted):
    cam = _frontal(skirted, 96, 120)
    none = render_photo(skirted, cam, background="none")
    plain = render_photo(skirted, cam, background="plain")
    assert none.image[~none.mask].mean() < 3
    assert abs(plain.image[~plain.mask].mean() - 128) < 3
    with pytest.raises(ValueError):
        render_photo(skirted, cam, background="beach")


def test_cameras_surround_the_person_and_frame_it(skirted):
    cameras = sample_cameras(4, WIDTH, HEIGHT, seed=4)
    yaws = sorted(math.degrees(math.atan2(c.position[0], -c.position[1])) % 360 for c in cameras)
    steps = np.diff([*yaws, yaws[0] + 360])
    assert np.allclose(steps, 90, atol=1e-3)
    for cam in cameras:
        uvz = cam.project(torch.as_tensor(skirted.vertices)).numpy()
        assert (uvz[:, 0] > 0).all() and (uvz[:, 0] < WIDTH - 1).all()
        assert (uvz[:, 1] > 0).all() and (uvz[:, 1] < HEIGHT - 1).all()
        share = np.ptp(uvz[:, 1]) / HEIGHT
        assert 0.65 < share < 0.9


def test_single_camera_is_roughly_frontal():
    for seed in range(5):
        (cam,) = sample_cameras(1, seed=seed)
        yaw = math.degrees(math.atan2(cam.position[0], -cam.position[1]))
        assert abs(yaw) <= 20.0


def test_frontal_sets_of_views_hold_the_smaller_sets():
    def yaws(n: int) -> list[float]:
        return [
            round(math.degrees(math.atan2(c.position[0], -c.position[1])), 3)
            for c in sample_cameras(n, seed=2, frontal=True)
        ]

    assert abs(yaws(1)[0]) <= 20.0
    assert yaws(1) == yaws(2)[:1] and yaws(2) == yaws(4)[::2] and yaws(4) == yaws(8)[::2]


def test_pitched_cameras_look_down_from_above_and_keep_the_level_yaws(skirted):
    level = sample_cameras(4, WIDTH, HEIGHT, seed=6, person=skirted)
    pitched = sample_cameras(4, WIDTH, HEIGHT, seed=6, person=skirted, pitch=(10.0, 20.0))
    for flat, tilted in zip(level, pitched, strict=True):
        assert np.allclose(
            flat.position[:2] / np.linalg.norm(flat.position[:2]),
            tilted.position[:2] / np.linalg.norm(tilted.position[:2]),
            atol=1e-5,
        )
        axis = tilted.rotation[2]  # the optical axis in world coordinates
        down = math.degrees(math.asin(-axis[2]))
        assert 10.0 <= down <= 20.0
        assert tilted.position[2] > flat.position[2] + 0.4
        uvz = tilted.project(torch.as_tensor(skirted.vertices)).numpy()
        assert (uvz[:, 1] > 0).all() and (uvz[:, 1] < HEIGHT - 1).all()


def test_unknown_garment_or_pose_is_refused():
    assert len(GARMENTS) == 5
    with pytest.raises(ValueError):
        make_person(0, garment="kilt")
    with pytest.raises(ValueError):
        make_person(0, pose="handstand")


def test_hanging_arms_rest_against_the_body_where_random_ones_clear_it(body):
    hanging = make_person(seed=2, garment="tight", pose="hanging")
    random = make_person(seed=2, garment="tight")
    assert arm_clearance(body, random.body_vertices).min() >= 0.06
    assert arm_clearance(body, hanging.body_vertices).min() < 0.04
    assert np.allclose(hanging.phenotype, random.phenotype)
