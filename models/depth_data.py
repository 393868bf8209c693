"""Training pairs for network 1, made by the synthetic person maker.

One sample is what the pipeline's depth stage sees, at the network's resolution: the
person-centred working crop (RGB), an imperfect person mask, and the body prior (front and
back depth of a fitted body grown to that mask) — with the ground truth the network learns:
the clothed person's front and back depth and its skinning as LBS latents. The fitted body
is deliberately wrong (phenotype and pose noise) because a real fit is, and the mask is
eroded, dilated and ragged because a detector's is.

Run `python -m photo_avatar.models.depth_data --first-seed 10000 --people 400 --out DIR`;
every person gives `--views` samples from cameras spread around it. Seeds 10000-89999 are
for training, 90000 and up are held out (`HELD_OUT_SEED`).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, replace
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import ndimage

from ..core import synthetic
from ..core.avatar import BodyFit, Perception, Photo
from ..core.body_model import load_body_model
from ..core.body_prior import body_prior_depth
from ..core.camera import Camera
from ..core.crop import MARGIN
from ..core.raster import render_depth
from ..core.skinning import axis_angle_to_matrix
from .runtime import LbsCodec

log = logging.getLogger(__name__)

SIDE = 128
"""Network input side in pixels (the working crop is resized to this)."""
SUPERSAMPLE = 2
"""Photos are rendered this many times larger and area-downsampled, as the pipeline's crop is."""
HELD_OUT_SEED = 90_000
"""People with seeds from here on are never trained on."""
POSE_NOISE_DEGREES = 4.0
"""Std of the random rotation added to every joint of the fitted body."""
PITCH_DEGREES = (-10.0, 20.0)
"""Range of the cameras' downward tilt: real photos are mostly taken from above the person's
middle (a standing photographer), some from below. With level cameras only, network 1
learned that bodies stand square to the image and flattened the depth slope of legs seen
from above (DEPTH_NET.md)."""
PHENOTYPE_NOISE = 0.07
"""Std of the noise added to each phenotype parameter (in [0, 1]) of the fitted body."""


@dataclass
class DepthSample:
    """One training pair at `SIDE` pixels, in the crop camera `camera`.

    image (S, S, 3) uint8; mask (S, S) float32 the imperfect person probability the network
    and the prior see; true_mask (S, S) bool; prior_front/back and front/back (S, S) float32
    camera z in metres, inf outside their mask (the prior's is `mask > 0.5`, the truth's
    `true_mask`); latent_front/back (S, S, L) float16 the true skinning encoded by the LBS
    autoencoder (0 outside `true_mask`); garment: the synthetic garment name.
    """

    image: np.ndarray
    mask: np.ndarray
    true_mask: np.ndarray
    prior_front: np.ndarray
    prior_back: np.ndarray
    front: np.ndarray
    back: np.ndarray
    latent_front: np.ndarray
    latent_back: np.ndarray
    garment: str
    camera: Camera
    weights_front: np.ndarray | None = None
    weights_back: np.ndarray | None = None
    prior_weights_front: np.ndarray | None = None
    prior_weights_back: np.ndarray | None = None
    """(S, S, J) float16 true and body-prior skinning weights, kept only for evaluation."""


def crop_camera(
    camera: Camera, vertices: np.ndarray, side: int, rng: np.random.Generator
) -> Camera:
    """The camera of a `side`-pixel square crop around the projected `vertices` (N, 3), with
    the pipeline's margin (`crop.MARGIN`) and a little jitter of size and centre, as a
    detector's mask box would give."""
    uv = camera.project(torch.as_tensor(vertices)).numpy()[:, :2]
    low, high = uv.min(0), uv.max(0)
    size = (high - low).max() * (1 + 2 * MARGIN) * rng.uniform(0.97, 1.04)
    centre = 0.5 * (low + high) + rng.uniform(-0.015, 0.015, 2) * size
    x0, y0 = centre - size / 2
    scale = side / size
    return replace(
        camera,
        fx=camera.fx * scale,
        fy=camera.fy * scale,
        cx=(camera.cx - x0) * scale,
        cy=(camera.cy - y0) * scale,
        width=side,
        height=side,
    )


def imperfect_fit(
    person: synthetic.SyntheticPerson, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A fitted body that is a little wrong: (1, P) phenotype and (1, J, 3, 3) pose, the true
    ones with Gaussian noise (`PHENOTYPE_NOISE`, `POSE_NOISE_DEGREES` about a random axis per
    joint, applied in the joint's local frame)."""
    phenotype = np.clip(
        person.phenotype + rng.normal(0, PHENOTYPE_NOISE, person.phenotype.shape), 0, 1
    )
    joints = person.pose.shape[0]
    axis_angle = rng.normal(0, math.radians(POSE_NOISE_DEGREES), (joints, 3))
    noise = axis_angle_to_matrix(torch.as_tensor(axis_angle, dtype=torch.float32))
    pose = torch.as_tensor(person.pose) @ noise
    return phenotype.astype(np.float32), pose[None].numpy()


def ragged_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 in [0, 1]: a detector-like version of the bool `mask`: grown or
    shrunk by up to two pixels, with a wavy boundary, softened."""
    distance = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    h, w = mask.shape
    coarse = rng.normal(0, 1, (h // 16 + 2, w // 16 + 2))
    wave = ndimage.zoom(coarse, 16, order=3)[:h, :w] * rng.uniform(0.3, 1.2)
    shift = rng.uniform(-2.0, 2.0)
    soft = 1 / (1 + np.exp(-(distance + shift + wave) / rng.uniform(0.3, 0.8)))
    return soft.astype(np.float32)


def make_sample(
    person: synthetic.SyntheticPerson,
    camera: Camera,
    seed: int,
    codec: LbsCodec,
    side: int = SIDE,
    keep_weights: bool = False,
) -> DepthSample:
    """One training pair of `person` seen by the whole-photo `camera`; `seed` drives the crop
    jitter, the lighting and background, the mask noise and the fit noise."""
    rng = np.random.default_rng([seed, 7])
    body = load_body_model(person.rig)
    fine = crop_camera(camera, person.vertices, side * SUPERSAMPLE, rng)
    coarse = fine.scaled(1 / SUPERSAMPLE)
    photo = synthetic.render_photo(person, fine, seed=seed)
    image = photo.image.astype(np.float32)
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(ragged_mask(photo.mask, rng), (side, side), interpolation=cv2.INTER_AREA)

    truth = render_depth(coarse, torch.as_tensor(person.vertices), person.faces)
    faces = torch.as_tensor(person.faces.astype(np.int64))
    weights = torch.as_tensor(person.weights)
    true_mask = truth.mask
    latents, skins = [], []
    for fragments in (truth.front, truth.back):
        skin = fragments.interpolate(weights, faces).numpy()
        skins.append(skin.astype(np.float16))
        latent = np.zeros((side, side, codec.latent_size), np.float16)
        latent[true_mask] = codec.encode(skin[true_mask])
        latents.append(latent)

    phenotype, pose = imperfect_fit(person, rng)
    fit = BodyFit(person.rig, phenotype, pose, [coarse])
    small = Photo("synthetic", np.clip(image, 0, 255).astype(np.uint8))
    perception = Perception(mask, np.zeros((33, 3), np.float32))
    with torch.no_grad():
        prior = body_prior_depth(small, perception, fit, 0, body)
    return DepthSample(
        image=small.image,
        mask=mask,
        true_mask=true_mask,
        prior_front=prior.front,
        prior_back=prior.back,
        front=truth.front.depth.numpy(),
        back=truth.back.depth.numpy(),
        latent_front=latents[0],
        latent_back=latents[1],
        garment=person.garment,
        camera=coarse,
        **(
            dict(
                weights_front=skins[0],
                weights_back=skins[1],
                prior_weights_front=prior.weights_front.astype(np.float16),
                prior_weights_back=prior.weights_back.astype(np.float16),
            )
            if keep_weights
            else {}
        ),
    )


def person_samples(
    seed: int, views: int, side: int = SIDE, keep_weights: bool = False, balanced: bool = False
) -> list[DepthSample]:
    """`views` samples of the synthetic person `seed`, from cameras spread around it and
    tilted within `PITCH_DEGREES`; the garment is drawn from the seed, or with `balanced`
    cycles through `synthetic.GARMENTS`."""
    garment = synthetic.GARMENTS[seed % len(synthetic.GARMENTS)] if balanced else None
    person = synthetic.make_person(seed, garment=garment)
    cameras = synthetic.sample_cameras(views, seed=seed, person=person, pitch=PITCH_DEGREES)
    codec = LbsCodec(person.rig, device="cpu", threads=1)
    return [
        make_sample(person, camera, seed * 16 + k, codec, side, keep_weights)
        for k, camera in enumerate(cameras)
    ]


FIELDS = (
    "image", "mask", "true_mask", "prior_front", "prior_back", "front", "back",
    "latent_front", "latent_back",
)  # fmt: skip
WEIGHT_FIELDS = ("weights_front", "weights_back", "prior_weights_front", "prior_weights_back")


def save_shard(samples: list[DepthSample], path: Path) -> None:
    """Stack samples into one compressed .npz (garments as a string array)."""
    names = FIELDS + (WEIGHT_FIELDS if samples[0].weights_front is not None else ())
    arrays = {name: np.stack([getattr(s, name) for s in samples]) for name in names}
    arrays["garment"] = np.array([s.garment for s in samples])
    np.savez_compressed(path, **arrays)


def load_shards(folder: Path, names: tuple[str, ...] = FIELDS) -> dict[str, np.ndarray]:
    """The fields `names` of all shards of a folder, concatenated, with each sample's
    garment and person seed."""
    paths = sorted(Path(folder).glob("shard_*[0-9].npz"))
    if not paths:
        raise FileNotFoundError(f"no shard_*.npz in {folder}")
    names = (*names, "garment")
    shards = [{k: z[k] for k in names} for z in map(np.load, paths)]
    for shard, path in zip(shards, paths, strict=True):
        shard["seed"] = np.full(len(shard["garment"]), int(path.stem.split("_")[1]))
    return {k: np.concatenate([s[k] for s in shards]) for k in (*names, "seed")}


def _write_person(args: tuple[int, int, int, Path, bool, bool]) -> str:
    seed, views, side, out, keep_weights, balanced = args
    path = out / f"shard_{seed:06d}.npz"
    if path.exists():
        return f"{seed} kept"
    torch.set_num_threads(1)
    start = time.perf_counter()
    samples = person_samples(seed, views, side, keep_weights, balanced)
    partial = path.with_suffix(".tmp.npz")
    save_shard(samples, partial)
    partial.rename(path)
    return f"{seed} {samples[0].garment} {time.perf_counter() - start:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first-seed", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=400)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--side", type=int, default=SIDE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--weights", action="store_true", help="also keep full skinning weights (evaluation)"
    )
    parser.add_argument("--balanced", action="store_true", help="cycle through the garments")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (seed, args.views, args.side, args.out, args.weights, args.balanced)
        for seed in range(args.first_seed, args.first_seed + args.people)
    ]
    # Resumable: finished people have their shard; a killed run just starts again.
    with Pool(args.workers) as pool:
        for message in pool.imap_unordered(_write_person, jobs):
            log.info(message)


if __name__ == "__main__":
    main()
