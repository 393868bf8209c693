"""Where the fused avatar misses each photo's outline: one synthetic person from several
sides, the avatar posed back into every photo, and per photo the silhouette IoU, precision
(avatar pixels inside the person) and recall (person pixels the avatar covers).

    python benchmarks/outlines.py 5 --views 2 4          # person 5, front+back, then 4 sides
    python benchmarks/outlines.py 5 --no-refine -o out/  # refinement off; overlays in out/

Writes, per run, a PNG strip of the photos darkened, red where the person is not covered and
blue where the avatar lies outside the person: what README's Benchmarks section says of the
outlines (bands along them, a skirt's lumps seen from the side) was read from these.
Last line: `outlines: views=… iou=… precision=… recall=…` for the last run (means over photos).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from fusion import TruthDetector, photographed
from spine import surface_error

from photo_avatar.core.avatar import Settings
from photo_avatar.core.cli import add_network_option
from photo_avatar.core.pipeline import generate
from photo_avatar.core.raster import render_depth
from photo_avatar.core.report import posed_vertices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("person", type=int, help="synthetic person (as in benchmarks/fusion.py)")
    parser.add_argument("--views", type=int, nargs="+", default=[2, 4], help="photos per run")
    parser.add_argument("--no-refine", action="store_true", help="refinement off")
    parser.add_argument("-o", "--out", type=Path, default=Path("outlines"), help="PNG folder")
    add_network_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings.from_preset("default", use_network=args.network)
    if args.no_refine:
        settings = replace(settings, refine_iterations=0)
    args.out.mkdir(parents=True, exist_ok=True)
    for views in args.views:
        person, shots, photos = photographed(args.person, views)
        run = generate(photos, settings, detector=TruthDetector(person, shots))
        avatar = run.avatar
        scores, strip = [], []
        for i, shot in enumerate(shots):
            drawn = render_depth(avatar.cameras[i], posed_vertices(avatar, i), avatar.faces).mask
            both = (drawn & shot.mask).sum()
            scores.append((both / (drawn | shot.mask).sum(), both / drawn.sum(),
                           both / shot.mask.sum()))  # fmt: skip
            image = (shot.image // 2).copy()
            image[shot.mask & ~drawn] = (255, 0, 0)
            image[drawn & ~shot.mask] = (0, 0, 255)
            strip.append(image)
            print(f"photos={views} photo={i} iou={scores[-1][0]:.3f} "
                  f"precision={scores[-1][1]:.3f} recall={scores[-1][2]:.3f}")  # fmt: skip
        path = args.out / f"person{args.person}_{views}.png"
        cv2.imwrite(str(path), np.concatenate(strip, axis=1)[..., ::-1])
        chamfer = surface_error(person, shots, run).chamfer_cm
        print(f"photos={views} chamfer_cm={chamfer:.3f} overlay: {path}", flush=True)
    iou, precision, recall = np.mean(scores, axis=0)
    print(f"outlines: views={views} iou={iou:.3f} precision={precision:.3f} recall={recall:.3f}")


if __name__ == "__main__":
    main()
