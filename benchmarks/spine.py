"""The spine benchmark: synthetic people with ground truth through the whole pipeline.

    python benchmarks/spine.py            # 10 people, 1 and 4 photos, default preset
    python benchmarks/spine.py --quick    # 3 people, fast preset: a few minutes

Quality is measured in the first photo's camera frame: the avatar posed as in photo 1 against
the ground-truth clothed person, after a translation + uniform-scale alignment (one photo
leaves absolute size and distance ambiguous; rotation is not aligned, so pose and facing
errors count). IoU: the re-posed avatar's silhouette against the true mask in every photo.
Last line: `spine: photos=1 chamfer_cm=… p2s_cm=… nc=… iou=… seconds=… | photos=4 …`;
people whose photos the detector rejects are counted as `failed`, not scored.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
from collections import defaultdict

import numpy as np
import torch

from photo_avatar.core.avatar import Photo, Settings
from photo_avatar.core.cli import add_network_option
from photo_avatar.core.metrics import SurfaceScores, align_similarity, mask_iou, surface_scores
from photo_avatar.core.pipeline import generate
from photo_avatar.core.progress import PhotoError
from photo_avatar.core.raster import render_depth
from photo_avatar.core.report import posed_vertices
from photo_avatar.core.synthetic import make_person, render_photo, sample_cameras


def surface_error(person, shots, run) -> SurfaceScores:
    """The avatar posed as in photo 1 against the true clothed person, in photo 1's camera
    frame, after a translation + scale alignment."""
    avatar = run.avatar
    truth_world = person.posed_vertices()
    truth = shots[0].camera.to_camera(torch.as_tensor(truth_world)).numpy()
    pred_world = posed_vertices(avatar, 0)
    pred = avatar.cameras[0].to_camera(torch.as_tensor(pred_world)).numpy()
    pred = align_similarity(pred, truth)
    return surface_scores(pred, avatar.faces, truth, person.faces)


def evaluate(person, shots, run) -> dict[str, float]:
    """Scores of one run against the synthetic ground truth."""
    avatar = run.avatar
    scores = surface_error(person, shots, run)
    ious = []
    for i, shot in enumerate(shots):
        verts = posed_vertices(avatar, i)
        ious.append(mask_iou(render_depth(avatar.cameras[i], verts, avatar.faces).mask, shot.mask))
    return {
        "chamfer_cm": scores.chamfer_cm,
        "p2s_cm": scores.p2s_cm,
        "nc": scores.normal_consistency,
        "fscore": scores.fscore_1cm,
        "iou": float(np.mean(ious)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 people at the fast preset")
    parser.add_argument("--people", type=int, help="number of synthetic people")
    parser.add_argument("--preset", help="pipeline preset (default: default, quick: fast)")
    parser.add_argument("--views", type=int, nargs="+", default=[1, 4], help="photos per run")
    add_network_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    people = args.people or (3 if args.quick else 10)
    settings = Settings.from_preset(
        args.preset or ("fast" if args.quick else "default"), use_network=args.network
    )
    summary = {}
    failures: dict[int, int] = defaultdict(int)
    for views in args.views:
        results: dict[str, list[float]] = defaultdict(list)
        stages: dict[str, list[float]] = defaultdict(list)
        for seed in range(people):
            person = make_person(seed=1000 + seed)
            cameras = sample_cameras(views, seed=seed)
            shots = [render_photo(person, cam, seed=seed * 10 + k) for k, cam in enumerate(cameras)]
            photos = [Photo(f"synthetic_{seed}_{k}.png", s.image) for k, s in enumerate(shots)]
            start = time.perf_counter()
            try:
                run = generate(photos, settings)
            except PhotoError as error:  # counted, not hidden: the person was not found
                failures[views] += 1
                print(f"photos={views} person={seed} garment={person.garment} failed: {error}")
                continue
            results["seconds"].append(time.perf_counter() - start)
            for stage, sec in run.seconds.items():
                stages[stage].append(sec)
            for key, value in evaluate(person, shots, run).items():
                results[key].append(value)
            print(
                f"photos={views} person={seed} garment={person.garment} "
                + " ".join(f"{k}={v[-1]:.3f}" for k, v in results.items()),
                flush=True,
            )
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"photos={views} median seconds per stage: "
              + " ".join(f"{k}={statistics.median(v):.2f}" for k, v in stages.items()))  # fmt: skip
        print(f"photos={views} medians: " + " ".join(f"{k}={v:.3f}" for k, v in med.items()))
        summary[views] = med
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak memory (max RSS of this process): {peak_gb:.2f} GB")
    parts = []
    for views, med in summary.items():
        keys = ("chamfer_cm", "p2s_cm", "nc", "iou", "seconds") if views == 1 else (
            "chamfer_cm", "iou", "seconds")  # fmt: skip
        parts.append(
            f"photos={views} "
            + " ".join(f"{k}={med[k]:.3f}" for k in keys)
            + f" failed={failures[views]}/{people}"
        )
    print("spine: " + " | ".join(parts))


if __name__ == "__main__":
    main()
