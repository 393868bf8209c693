"""Projection-based silhouette terms against a soft rasteriser, in the refinement.

The refinement (`core/refine.py`) compares each photo's mask with the projected vertices
alone by default: vertices outside the mask, and mask pixels no vertex comes near. The other
way, as SoftRas does, is to draw a soft silhouette of the triangles (`core/soft_raster.py`)
and compare it with the mask pixel by pixel: exact coverage, but a drawing per photo per
step, and no pull from afar. `Settings.soft_silhouette` adds it to the projected terms (by
default from three photos on, always at the high preset); this script measures the
refinement with and without it at the same preset, depth term, regularisers and steps:
seconds spent refining, Chamfer and silhouette IoU, medians over synthetic people
(perception from the ground truth, as in `benchmarks/fusion.py`).

    python benchmarks/soft_raster.py                        # 3 people, 1 and 4 photos
    python benchmarks/soft_raster.py --people 1 --views 4 --weights 1e3 1e4

Last line: `soft_raster: seconds_ratio=… chamfer_projected=… chamfer_soft=… iou_projected=…
iou_soft=…` (most photos; seconds_ratio: refinement seconds soft over projected).
"""

from __future__ import annotations

import argparse
import logging
import statistics
from collections import defaultdict

import spine
from fusion import TruthDetector, photographed

from photo_avatar.core import refine
from photo_avatar.core.avatar import Settings
from photo_avatar.core.pipeline import generate


def run_one(seed: int, views: int, settings: Settings) -> dict[str, float]:
    person, shots, photos = photographed(seed, views)
    run = generate(photos, settings, detector=TruthDetector(person, shots))
    scores = spine.evaluate(person, shots, run)
    return {"seconds": run.seconds["refine"], "chamfer": scores["chamfer_cm"],
            "iou": scores["iou"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--views", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--weights", type=float, nargs="+",
                        default=[refine.WEIGHTS["soft_silhouette"]],
                        help="soft silhouette loss weights to try")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    projected = Settings.from_preset(args.preset, soft_silhouette=False)
    soft = Settings.from_preset(args.preset, soft_silhouette=True)
    table: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for views in args.views:
        for seed in range(args.people):
            for key, value in run_one(seed, views, projected).items():
                table[("projected", views)][key].append(value)
            for weight in args.weights:
                refine.WEIGHTS["soft_silhouette"] = weight
                for key, value in run_one(seed, views, soft).items():
                    table[(f"soft {weight:g}", views)][key].append(value)
            print(f"person {seed}, {views} photos: " + ", ".join(
                f"{name} {figures['chamfer'][-1]:.3f} cm" for (name, n), figures in table.items()
                if n == views), flush=True)  # fmt: skip
    print(f"{'silhouette':>12} {'photos':>6} {'refine s':>9} {'chamfer cm':>11} {'IoU':>6}")
    medians = {}
    for (name, views), figures in table.items():
        medians[(name, views)] = row = {k: statistics.median(v) for k, v in figures.items()}
        print(f"{name:>12} {views:>6} {row['seconds']:>9.2f} {row['chamfer']:>11.3f} "
              f"{row['iou']:>6.3f}")  # fmt: skip
    views = max(args.views)
    base = medians[("projected", views)]
    best = medians[(f"soft {args.weights[0]:g}", views)]
    print(f"soft_raster: seconds_ratio={best['seconds'] / base['seconds']:.2f} "
          f"chamfer_projected={base['chamfer']:.3f} chamfer_soft={best['chamfer']:.3f} "
          f"iou_projected={base['iou']:.3f} iou_soft={best['iou']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
