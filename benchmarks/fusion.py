"""The fusion benchmark: synthetic clothed people photographed from 1, 2, 4 and 8 sides,
reconstructed with the forward-skinning refinement on and off in the same run.

The first photo is within 20° of frontal and the others evenly spaced from it, so each set
holds the smaller ones (2 photos: front and back; 4: and both sides), as someone adding
photos would take them.

    python benchmarks/fusion.py            # 10 people, 1/2/4/8 photos, default preset
    python benchmarks/fusion.py --quick    # 3 people, 2 and 4 photos, fast preset
    python benchmarks/fusion.py --pose hanging --views 1   # arms against the body

Perception is the ground truth by default (the render's mask and the body's projected
landmarks) so that the figures measure fusion and refinement, not the detector, which does
not find synthetic people seen from behind; `--detector` uses MediaPipe instead, and people
it rejects are counted as failed. Scores as in `benchmarks/spine.py` (photo 1's camera
frame, translation + scale aligned), plus colour PSNR on a view no photo gave (the avatar
and the truth shaded alike, inside both silhouettes) and the texture's seam contrast
(`metrics.seam_jumps`); and how many of the steps from one photo count to the next lowered
each person's Chamfer (refinement on).
Last line: `fusion: chamfer_cm_1=… chamfer_cm_4=… nc_4=… iou_4=… refine_gain=… seconds_1=…
seconds_4=…` (refine_gain: Chamfer without refinement over Chamfer with it, 4 photos).
"""

from __future__ import annotations

import argparse
import logging
import math
import resource
import statistics
import time
from collections import defaultdict
from dataclasses import replace
from itertools import pairwise

import numpy as np
import spine
import torch

from photo_avatar.core.avatar import Perception, Photo, Settings
from photo_avatar.core.body_model import load_body_model
from photo_avatar.core.camera import Camera
from photo_avatar.core.cli import add_network_option
from photo_avatar.core.metrics import align_similarity, seam_jumps
from photo_avatar.core.pipeline import generate
from photo_avatar.core.preview import shade
from photo_avatar.core.progress import PhotoError
from photo_avatar.core.report import posed_vertices
from photo_avatar.core.synthetic import (
    POSES,
    SyntheticPerson,
    SyntheticPhoto,
    make_person,
    render_photo,
    sample_cameras,
    true_keypoints,
)


class TruthDetector:
    """Perception from the synthetic ground truth: the render's mask and the body's
    landmarks projected into the photo, one image at a time, in `detect`'s call order."""

    def __init__(self, person: SyntheticPerson, shots: list[SyntheticPhoto]) -> None:
        body = load_body_model(person.rig)
        keypoints = true_keypoints(body, person, [s.camera for s in shots])
        self.seen = [
            Perception(s.mask.astype(np.float32), k) for s, k in zip(shots, keypoints, strict=True)
        ]

    def detect(self, image: np.ndarray) -> list[Perception]:
        return [self.seen.pop(0)]


def photographed(
    seed: int, views: int, pose: str = "random"
) -> tuple[SyntheticPerson, list[SyntheticPhoto], list[Photo]]:
    """Synthetic person `seed` photographed from `views` sides, the first near frontal."""
    person = make_person(seed=1000 + seed, pose=pose)
    cameras = sample_cameras(views, seed=seed, person=person, frontal=True)
    shots = [render_photo(person, c, seed=seed * 10 + k) for k, c in enumerate(cameras)]
    photos = [Photo(f"synthetic_{seed}_{k}.png", s.image) for k, s in enumerate(shots)]
    return person, shots, photos


def held_out_camera(cameras: list[Camera]) -> Camera:
    """A camera half-way between two given ones in yaw (or behind a single one)."""
    first = cameras[0]
    yaws = sorted(_yaw(c) for c in cameras)
    gaps = [(b - a) % 360 for a, b in zip(yaws, yaws[1:] + yaws[:1], strict=True)]
    k = int(np.argmax(gaps)) if len(cameras) > 1 else 0
    yaw = yaws[k] + (gaps[k] if len(cameras) > 1 else 360) / 2
    distance = float(np.linalg.norm(first.position[:2]))
    centre = (0.0, 0.0, float(first.position[2]))
    fov = math.degrees(2 * math.atan(first.height / 2 / first.fy))
    return Camera.looking_at_person(first.width, first.height, yaw, distance, fov, centre)


def _yaw(camera: Camera) -> float:
    x, y = camera.position[:2]
    return math.degrees(math.atan2(x, -y))


def evaluate(person: SyntheticPerson, shots, run, held_out: Camera) -> dict[str, float]:
    """The spine's scores; colour PSNR in a view no photo gave (the avatar, aligned as the
    spine aligns it, back in the truth's world and shaded like the truth); and how much
    more colour jumps across the texture's seams than across its other edges (90th and
    99th percentiles, as ratios: at 1 the seams vary no more than the texture does elsewhere)."""
    avatar = run.avatar
    truth_cam = shots[0].camera
    truth = truth_cam.to_camera(torch.as_tensor(person.posed_vertices())).numpy()
    pred = avatar.cameras[0].to_camera(torch.as_tensor(posed_vertices(avatar, 0))).numpy()
    pred_world = (align_similarity(pred, truth) - truth_cam.translation) @ truth_cam.rotation
    seen, seen_mask = shade(held_out, pred_world, avatar.faces, uv=avatar.uv,
                            texture=avatar.texture)  # fmt: skip
    true, true_mask = shade(held_out, person.vertices, person.faces, colors=person.colors)
    both = seen_mask & true_mask
    error = np.mean((seen[both].astype(np.float32) - true[both].astype(np.float32)) ** 2)
    psnr = float(10 * np.log10(255.0**2 / max(error, 1e-6)))
    seams, edges = seam_jumps(avatar.vertices, avatar.faces, avatar.uv, avatar.texture)
    return {
        **spine.evaluate(person, shots, run),
        "psnr": psnr,
        "seam_p90": _seam_ratio(seams, edges, 90),
        "seam_p99": _seam_ratio(seams, edges, 99),
    }


def _seam_ratio(seams: np.ndarray, edges: np.ndarray, q: float) -> float:
    """Percentile q of the seams' colour jumps over the other edges'; 0 with no seam."""
    if len(seams) == 0 or len(edges) == 0:
        return 0.0
    return float(np.percentile(seams, q) / max(np.percentile(edges, q), 1e-6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 people, 2 and 4 photos, fast")
    parser.add_argument("--people", type=int, help="number of synthetic people")
    parser.add_argument("--preset", help="pipeline preset (default: default, quick: fast)")
    parser.add_argument("--views", type=int, nargs="+", help="photos per run")
    parser.add_argument("--detector", action="store_true", help="MediaPipe, not the truth")
    parser.add_argument("--pose", choices=POSES, default="random",
                        help="the people's pose ('hanging': arms against the body)")  # fmt: skip
    add_network_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    people = args.people or (3 if args.quick else 10)
    views_list = args.views or ([2, 4] if args.quick else [1, 2, 4, 8])
    settings = Settings.from_preset(
        args.preset or ("fast" if args.quick else "default"), use_network=args.network
    )
    variants = {"on": settings, "off": replace(settings, refine_iterations=0)}
    medians: dict[tuple[int, str], dict[str, float]] = {}
    failures: dict[int, int] = defaultdict(int)
    chamfers: dict[int, dict[int, float]] = defaultdict(dict)
    for views in views_list:
        results: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in variants}
        for seed in range(people):
            person, shots, photos = photographed(seed, views, args.pose)
            held_out = held_out_camera([s.camera for s in shots])
            for name, variant in variants.items():
                detector = None if args.detector else TruthDetector(person, shots)
                start = time.perf_counter()
                try:
                    run = generate(photos, variant, detector=detector)
                except PhotoError as error:
                    failures[views] += name == "on"
                    print(f"photos={views} person={seed} refine={name} failed: {error}")
                    continue
                row = results[name]
                row["seconds"].append(time.perf_counter() - start)
                for key, value in evaluate(person, shots, run, held_out).items():
                    row[key].append(value)
                if name == "on":
                    chamfers[seed][views] = row["chamfer_cm"][-1]
                scores = " ".join(f"{k}={v[-1]:.3f}" for k, v in row.items())
                print(f"photos={views} person={seed} garment={person.garment} refine={name} "
                      f"{scores}", flush=True)  # fmt: skip
        for name, row in results.items():
            if row:
                medians[views, name] = {k: statistics.median(v) for k, v in row.items()}
                scores = " ".join(f"{k}={v:.3f}" for k, v in medians[views, name].items())
                print(f"photos={views} refine={name} medians: {scores}")
    lowered = [
        c[b] < c[a] for c in chamfers.values() for a, b in pairwise(views_list) if a in c and b in c
    ]
    print(f"added photos lowered Chamfer in {sum(lowered)} of {len(lowered)} steps")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak memory (max RSS of this process): {peak_gb:.2f} GB; failed: {dict(failures)}")
    most = 4 if 4 in views_list else views_list[-1]
    on, off = medians.get((most, "on"), {}), medians.get((most, "off"), {})
    first = medians.get((1, "on"), {})

    def figure(table: dict[str, float], key: str) -> str:
        return f"{table[key]:.3f}" if key in table else "nan"

    gain = f"{off['chamfer_cm'] / on['chamfer_cm']:.3f}" if on and off else "nan"
    print(
        f"fusion: chamfer_cm_1={figure(first, 'chamfer_cm')}"
        f" chamfer_cm_4={figure(on, 'chamfer_cm')}"
        f" nc_4={figure(on, 'nc')} iou_4={figure(on, 'iou')} refine_gain={gain}"
        f" seconds_1={figure(first, 'seconds')} seconds_4={figure(on, 'seconds')}"
    )


if __name__ == "__main__":
    main()
