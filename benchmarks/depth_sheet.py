"""Contact sheet of network 1 on real photos: what it does to the body prior's depth and
skinning maps, and to the canonical shape built from them.

    python benchmarks/depth_sheet.py PHOTO [PHOTO ...] -o sheet.png

One row per photo: the working crop; the prior's and the network's front depth (one colour
scale per row, near = bright); the network's back depth; the network minus the prior on the
front (red: moved away from the camera, blue: towards it, ±10 cm at full colour); the
prior's and the network's decoded skinning (each bone a colour, blended by weight); and the
canonical shape of a whole run without and with the shipped network (refinement on). The
maps use `--weights` (default: the shipped network), to compare a candidate with it.
For eyeballing on photos the networks never saw; never used by the tests.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from photo_avatar.core.avatar import DepthMaps, Settings
from photo_avatar.core.camera import Camera
from photo_avatar.core.pipeline import generate
from photo_avatar.core.preview import shade
from photo_avatar.models.depth_runtime import ONNX_PATH, refine_depth

TILE = 200
DIFFERENCE_SCALE = 0.10
"""Metres of network-minus-prior change shown at full colour."""


def _label(image: np.ndarray, text: str) -> np.ndarray:
    tile = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
    cv2.putText(tile, text, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return tile


def _depth_image(depth: np.ndarray, low: float, high: float) -> np.ndarray:
    """Near bright, far dark, outside black."""
    seen = np.isfinite(depth)
    level = np.zeros(depth.shape, np.float32)
    level[seen] = 1 - np.clip((depth[seen] - low) / max(high - low, 1e-3), 0, 1)
    image = cv2.applyColorMap((255 * level).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    return np.where(seen[..., None], image, 0).astype(np.uint8)


def _difference_image(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    seen = np.isfinite(after) & np.isfinite(before)
    change = np.zeros(after.shape, np.float32)
    change[seen] = np.clip((after[seen] - before[seen]) / DIFFERENCE_SCALE, -1, 1)
    image = np.full((*after.shape, 3), 255.0, np.float32)
    image[..., 1] *= 1 - np.abs(change)
    image[..., 0] *= 1 - np.clip(-change, 0, 1)
    image[..., 2] *= 1 - np.clip(change, 0, 1)
    return np.where(seen[..., None], image, 0).astype(np.uint8)


def _skin_image(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    palette = np.random.default_rng(3).uniform(40, 255, (weights.shape[-1], 3))
    return np.where(mask[..., None], weights @ palette, 0).clip(0, 255).astype(np.uint8)


def _shape(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    centre = tuple(float(c) for c in 0.5 * (vertices.min(0) + vertices.max(0)))
    camera = Camera.looking_at_person(2 * TILE, 2 * TILE, 0, distance=3.0, centre=centre)
    return shade(camera, vertices, faces)[0]


def photo_row(path: Path, weights: Path) -> np.ndarray:
    plain = generate([path], Settings(use_network=False))
    with_net = generate([path], Settings(use_network=True))
    photo, perception, prior = plain.photos[0], plain.perceptions[0], plain.depths[0]
    net: DepthMaps = refine_depth(photo, perception, prior, "cpu", weights, skinning=True)
    inside = prior.front[prior.mask]
    low, high = float(np.percentile(inside, 1)), float(np.percentile(inside, 99)) + 0.25
    tiles = [
        _label(photo.image, path.stem[:24]),
        _label(_depth_image(np.where(prior.mask, prior.front, np.inf), low, high), "prior front"),
        _label(_depth_image(np.where(net.mask, net.front, np.inf), low, high), "net front"),
        _label(_depth_image(np.where(net.mask, net.back, np.inf), low, high), "net back"),
        _label(_difference_image(np.where(net.mask, net.front, np.inf), prior.front), "net-prior"),
        _label(_skin_image(prior.weights_front, prior.mask), "prior skinning"),
        _label(_skin_image(net.weights_front, net.mask), "net skinning"),
        _label(_shape(plain.avatar.vertices, plain.avatar.faces), "shape, no network"),
        _label(_shape(with_net.avatar.vertices, with_net.avatar.faces), "shape, network"),
    ]
    return np.concatenate(tiles, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("depth_sheet.png"))
    parser.add_argument("--weights", type=Path, default=ONNX_PATH, help="network 1 (ONNX)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [photo_row(path, args.weights) for path in args.photos]
    sheet = np.concatenate(rows, axis=0)
    cv2.imwrite(str(args.output), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
