"""End to end: a synthetic photo through the whole pipeline to a rigged, textured avatar."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from photo_avatar.core.avatar import Photo, Settings
from photo_avatar.core.metrics import mask_iou, seam_jumps
from photo_avatar.core.pipeline import Reconstruction, generate
from photo_avatar.core.progress import Cancelled, Progress
from photo_avatar.core.raster import render_depth
from photo_avatar.core.report import contact_sheet, posed_vertices
from photo_avatar.core.synthetic import make_person, render_photo, sample_cameras

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shot():
    person = make_person(seed=3, garment="loose_top")
    return render_photo(person, sample_cameras(1, seed=3)[0], seed=3)


@pytest.fixture(scope="module")
def run(shot) -> Reconstruction:
    return generate([Photo("synthetic.png", shot.image)], Settings.from_preset("fast"))


def test_weights_sum_to_one_with_at_most_four_bones(run):
    weights = run.avatar.weights
    assert np.allclose(weights.sum(1), 1.0, atol=1e-4)
    assert (weights >= 0).all()
    assert ((weights > 0).sum(1) <= 4).all()


def test_avatar_is_complete(run):
    avatar = run.avatar
    assert len(avatar.bone_names) == 52 and len(avatar.parents) == 52
    assert avatar.weights.shape == (len(avatar.vertices), 52)
    assert avatar.uv.shape == (len(avatar.vertices), 2)
    assert avatar.uv.min() >= 0 and avatar.uv.max() <= 1
    assert avatar.faces.max() < len(avatar.vertices)
    assert avatar.photo_poses.shape == (1, 52, 3, 3)
    assert 4_000 <= len(avatar.faces) <= 12_000  # the fast preset's budget is 10k
    assert avatar.texture.std() > 5  # a real texture, not one flat colour


def test_texture_seams_jump_no_more_than_its_other_edges(run):
    avatar = run.avatar
    seams, edges = seam_jumps(avatar.vertices, avatar.faces, avatar.uv, avatar.texture)
    assert len(seams) > 100 and len(edges) > 3 * len(seams)
    # Bilinear samples half a texel inside the charts: an unfilled gutter or a chart
    # coloured apart from its neighbours shows here (a black gutter makes the 90th 5
    # times the other edges'). Seams run along the body's sides, where the seen front meets
    # the guessed back, so they jump a little more anyway (1.0-1.2 measured).
    for q in (90, 99):
        assert np.percentile(seams, q) <= 1.5 * np.percentile(edges, q) + 1.0, q


def test_posed_avatar_lands_on_its_silhouette(run, shot):
    verts = posed_vertices(run.avatar, 0)
    mask = render_depth(run.avatar.cameras[0], verts, run.avatar.faces).mask
    assert mask_iou(mask, shot.mask) > 0.85


def test_rest_pose_stands_upright_with_arms_away(run):
    verts = run.avatar.vertices
    height = verts[:, 2].max() - verts[:, 2].min()
    width = verts[:, 0].max() - verts[:, 0].min()
    assert 1.4 < height < 2.1
    assert width > 0.6 * height * 0.5  # A-pose: hands well away from the hips


def test_contact_sheet_draws_every_stage(run):
    sheet = contact_sheet(run)
    assert sheet.ndim == 3 and sheet.shape[2] == 3 and sheet.std() > 10


def test_cancel_stops_the_run(shot):
    cancel = threading.Event()
    seen: list[str] = []

    def on_step(stage: str, fraction: float) -> None:
        seen.append(stage)
        if fraction > 0.2:
            cancel.set()

    with pytest.raises(Cancelled):
        generate(
            [Photo("synthetic.png", shot.image)],
            Settings.from_preset("fast"),
            Progress(on_step, cancel),
        )
    assert seen and seen[-1] != "done"


def test_network_is_on_by_default_and_the_prior_alone_still_lands(run, shot):
    assert Settings.from_preset("fast").use_network
    plain = generate(
        [Photo("synthetic.png", shot.image)], Settings.from_preset("fast", use_network=False)
    )
    inside = plain.depths[0].mask & run.depths[0].mask  # both in the working crop
    change = np.abs(plain.depths[0].front[inside] - run.depths[0].front[inside])
    assert np.median(change) > 1e-3  # network 1 really ran in `run` and moved the surface
    verts = posed_vertices(plain.avatar, 0)
    mask = render_depth(plain.avatar.cameras[0], verts, plain.avatar.faces).mask
    assert mask_iou(mask, shot.mask) > 0.85
    assert np.allclose(plain.avatar.weights.sum(1), 1.0, atol=1e-4)


def test_two_photos_are_refined_and_land_on_both_silhouettes():
    person = make_person(seed=3, garment="loose_top")
    front = sample_cameras(1, seed=3)[0]
    shots = [
        render_photo(person, replace(front, rotation=front.rotation @ _yaw(deg)), seed=k)
        for k, deg in enumerate((-25.0, 25.0))
    ]
    photos = [Photo(f"synthetic_{k}.png", s.image) for k, s in enumerate(shots)]
    run = generate(photos, Settings.from_preset("fast"))
    assert run.seconds["refine"] > 0.1  # it ran
    for k, shot in enumerate(shots):
        verts = posed_vertices(run.avatar, k)
        mask = render_depth(run.avatar.cameras[k], verts, run.avatar.faces).mask
        assert mask_iou(mask, shot.mask) > 0.88


def _yaw(degrees: float) -> np.ndarray:
    """(3, 3) a turn of the world about Z (the person turning in place)."""
    a = np.radians(degrees)
    return np.array(
        [[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]], np.float32
    )
