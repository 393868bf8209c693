"""Network 1 against the body prior alone, on held-out synthetic people.

    python benchmarks/depth_net.py            # 30 people x 3 views, about 10 minutes
    python benchmarks/depth_net.py --quick    # 10 people x 2 views
    python benchmarks/depth_net.py --cache /tmp/held_out.pkl   # keep the renders for re-runs

People with seeds from `depth_data.HELD_OUT_SEED` (never trained on), garments cycling
through `synthetic.GARMENTS`, each seen from cameras spread around them and tilted, with the
same imperfect fit and mask as in training, at the network's own side (128 px). Per sample,
inside the true silhouette where the prior has depth: mean |depth - truth| of the front and
of the back, in cm, for the prior and for `depth_runtime.refine_depth` as the pipeline calls
it ("net": the correction faded out along the outline, the person moved along the view ray
by at most `depth_runtime.SHIFT`, the surface sunk into the prior by at most
`depth_runtime.CONTAIN`) and without any of these ("raw": the network's own answer); and
the skinning error, per pixel the sum over bones of |weights - true weights| (0 exact, 2
disjoint), of the prior's weights and of the network's decoded latents (the prior's again
when the shipped model predicts none; the pipeline decodes them only when
`depth_runtime.SKINNING` is on).
With the error head (`spread`): the net's error of the pixels whose expected error is in the
lowest and in the highest fifth of the sample's, both layers ("doubt" in the log;
`spread_low_cm`, `spread_high_cm`: what fusion's weighting by the expected error rests on).
Averages over samples, split by garment (skirt and dress together). `ms_per_photo`:
refine_depth on a 512-px working crop (the default `work_side`), depth only and with decoded
skinning.
Last line: `depth_net: prior_cm=… net_cm=… depth_err_ratio=… raw_err_ratio=… lbs_prior=…
lbs_err=… ms_per_photo=…`.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import torch

from photo_avatar.core.avatar import DepthMaps, Perception, Photo
from photo_avatar.models.depth_data import HELD_OUT_SEED, DepthSample, person_samples
from photo_avatar.models.depth_net import error_by_doubt
from photo_avatar.models.depth_runtime import ONNX_PATH, refine_depth

SPLITS = {"tight": ("tight",), "loose_top": ("loose_top",), "skirt_dress": ("skirt", "dress"),
          "trousers": ("trousers",)}  # fmt: skip


def _people(args: tuple[int, int]) -> list[DepthSample]:
    torch.set_num_threads(1)
    seed, views = args
    return person_samples(seed, views, keep_weights=True, balanced=True)


def held_out(
    people: int, views: int, workers: int = 2, cache: Path | None = None
) -> list[DepthSample]:
    """Samples of `people` held-out people, `views` each; kept in the pickle `cache` (made
    when missing) so a re-run after more training skips the rendering."""
    if cache is not None and cache.exists():
        with cache.open("rb") as f:
            return pickle.load(f)
    jobs = [(HELD_OUT_SEED + i, views) for i in range(people)]
    with Pool(workers) as pool:
        samples = [s for batch in pool.map(_people, jobs) for s in batch]
    if cache is not None:
        with cache.open("wb") as f:
            pickle.dump(samples, f)
    return samples


def _as_inputs(sample: DepthSample) -> tuple[Photo, Perception, DepthMaps]:
    mask = np.isfinite(sample.prior_front)
    prior = DepthMaps(
        sample.camera,
        sample.prior_front,
        sample.prior_back,
        mask,
        sample.prior_weights_front.astype(np.float32),
        sample.prior_weights_back.astype(np.float32),
    )
    perception = Perception(sample.mask, np.zeros((33, 3), np.float32))
    return Photo("held-out", sample.image), perception, prior


def _skin_error(weights: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(weights[where] - truth[where].astype(np.float32)).sum(-1).mean())


def evaluate(
    samples: list[DepthSample], weights: Path = ONNX_PATH
) -> dict[str, list[dict[str, float]]]:
    """Per garment, one dict of errors per sample, of the network in `weights`."""
    rows: dict[str, list[dict[str, float]]] = {}
    for sample in samples:
        photo, perception, prior = _as_inputs(sample)
        refined = refine_depth(photo, perception, prior, "cpu", weights, skinning=True)
        raw = refine_depth(
            photo, perception, prior, "cpu", weights, skinning=True, rim=0.0, shift=np.inf,
            contain=None,
        )  # fmt: skip
        where = sample.true_mask & prior.mask
        row = {}
        for name, maps in (("prior", prior), ("net", refined), ("raw", raw)):
            row[f"{name}_front"] = 100 * float(
                np.abs(maps.front[where] - sample.front[where]).mean()
            )
            row[f"{name}_back"] = 100 * float(np.abs(maps.back[where] - sample.back[where]).mean())
            row[f"{name}_lbs"] = 0.5 * (
                _skin_error(maps.weights_front, sample.weights_front, where)
                + _skin_error(maps.weights_back, sample.weights_back, where)
            )
        if refined.spread_front is not None and refined.spread_back is not None:
            error = np.abs(np.concatenate([refined.front[where] - sample.front[where],
                                           refined.back[where] - sample.back[where]]))  # fmt: skip
            spread = np.concatenate([refined.spread_front[where], refined.spread_back[where]])
            least, most = error_by_doubt(error, spread)
            row["spread_low"], row["spread_high"] = 100 * least, 100 * most
        rows.setdefault(sample.garment, []).append(row)
    return rows


def ms_per_photo(sample: DepthSample, side: int = 512, repeats: int = 3) -> tuple[float, float]:
    """Milliseconds of refine_depth on a `side`-pixel crop: depth only, and with skinning."""
    photo, perception, prior = _as_inputs(sample)
    size = (side, side)

    def up(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, size, interpolation=cv2.INTER_NEAREST)

    big = DepthMaps(
        prior.camera.scaled(side / photo.width), up(prior.front), up(prior.back),
        up(prior.mask.astype(np.uint8)).astype(bool), up(prior.weights_front),
        up(prior.weights_back),
    )  # fmt: skip
    photo = Photo(photo.name, cv2.resize(photo.image, size, interpolation=cv2.INTER_LINEAR))
    perception = Perception(cv2.resize(perception.mask, size), perception.keypoints)
    times = []
    for skinning in (False, True):
        refine_depth(photo, perception, big, device="cpu", skinning=skinning)
        start = time.perf_counter()
        for _ in range(repeats):
            refine_depth(photo, perception, big, device="cpu", skinning=skinning)
        times.append(1000 * (time.perf_counter() - start) / repeats)
    return times[0], times[1]


def depth_figures(
    quick: bool = False, cache: Path | None = None, weights: Path = ONNX_PATH
) -> dict[str, float]:
    """The figures `benchmarks/networks.py` prints for network 1 (or the ONNX `weights`),
    logged per garment."""
    samples = held_out(10 if quick else 30, 2 if quick else 3, cache=cache)
    rows = evaluate(samples, weights)
    log = logging.getLogger("depth_net")
    everyone = [r for split in rows.values() for r in split]
    for split, garments in (*SPLITS.items(), ("all", tuple(rows))):
        chosen = [r for g in garments for r in rows.get(g, [])]
        if not chosen:
            continue
        mean = {k: float(np.mean([r[k] for r in chosen])) for k in chosen[0]}
        prior = mean["prior_front"] + mean["prior_back"]
        log.info(
            "%-11s n=%3d  front cm: prior %.2f net %.2f (raw %.2f) | back cm: prior %.2f net "
            "%.2f (raw %.2f) | ratio %.2f (raw %.2f) | skinning: prior %.3f net %.3f",
            split, len(chosen), mean["prior_front"], mean["net_front"], mean["raw_front"],
            mean["prior_back"], mean["net_back"], mean["raw_back"],
            (mean["net_front"] + mean["net_back"]) / prior,
            (mean["raw_front"] + mean["raw_back"]) / prior, mean["prior_lbs"], mean["net_lbs"],
        )  # fmt: skip
        if "spread_low" in mean:
            log.info(
                "%-11s doubt: net error %.2f cm where the head expects least (fifth), %.2f cm "
                "where most", split, mean["spread_low"], mean["spread_high"],
            )  # fmt: skip
    prior = float(np.mean([0.5 * (r["prior_front"] + r["prior_back"]) for r in everyone]))
    net = float(np.mean([0.5 * (r["net_front"] + r["net_back"]) for r in everyone]))
    raw = float(np.mean([0.5 * (r["raw_front"] + r["raw_back"]) for r in everyone]))
    depth_ms, skin_ms = ms_per_photo(samples[0])
    log.info("ms per 512-px photo: depth %.0f, with decoded skinning %.0f", depth_ms, skin_ms)
    figures = {
        "prior_cm": prior,
        "net_cm": net,
        "depth_err_ratio": net / prior,
        "raw_err_ratio": raw / prior,
        "lbs_prior": float(np.mean([r["prior_lbs"] for r in everyone])),
        "lbs_err": float(np.mean([r["net_lbs"] for r in everyone])),
        "ms_per_photo": depth_ms,
    }
    if "spread_low" in everyone[0]:
        for key in ("spread_low", "spread_high"):
            figures[f"{key}_cm"] = float(np.mean([r[key] for r in everyone]))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", type=Path, help="pickle of the held-out samples")
    parser.add_argument("--generate-only", action="store_true", help="fill --cache and stop")
    parser.add_argument("--weights", type=Path, default=ONNX_PATH, help="network 1 (ONNX)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.generate_only:
        held_out(10 if args.quick else 30, 2 if args.quick else 3, workers=1, cache=args.cache)
        return
    figures = depth_figures(args.quick, args.cache, args.weights)
    print("depth_net: " + " ".join(f"{k}={v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
