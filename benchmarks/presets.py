"""Seconds and peak memory per avatar at each preset, for 1 and 4 photos.

    python benchmarks/presets.py                 # 3 people, fast/default/high, 1 and 4 photos
    python benchmarks/presets.py --people 1      # one person each: a few minutes

Every avatar is made in a fresh process, so its peak memory (max RSS) is its own and not the
high-water mark of earlier runs. The photos are synthetic renders with perception from the
ground truth (as in `benchmarks/fusion.py`), so the detector's misses do not leave gaps.
Per row: median seconds, median seconds per stage and the largest peak memory.
Last line: `presets: default_1=… default_4=… peak_gb_default_4=…` (seconds, GB).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import fusion

from photo_avatar.core.avatar import Settings
from photo_avatar.core.pipeline import generate

PRESETS = ("fast", "default", "high")


def one_avatar(preset: str, views: int, seed: int) -> dict[str, object]:
    """Make one avatar in this process; its wall time, stage times and peak memory."""
    person, shots, photos = fusion.photographed(seed, views)
    detector = fusion.TruthDetector(person, shots)
    start = time.perf_counter()
    run = generate(photos, Settings.from_preset(preset), detector=detector)
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"seconds": seconds, "stages": run.seconds, "peak_gb": peak_gb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=3, help="synthetic people per row")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--views", type=int, nargs="+", default=[1, 4], help="photos per run")
    parser.add_argument("--one", nargs=3, metavar=("PRESET", "VIEWS", "SEED"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.one:
        preset, views, seed = args.one
        print(json.dumps(one_avatar(preset, int(views), int(seed))))
        return
    figures: dict[str, float] = {}
    for preset in args.presets:
        for views in args.views:
            runs = []
            for seed in range(args.people):
                done = subprocess.run(
                    [sys.executable, __file__, "--one", preset, str(views), str(seed)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            seconds = statistics.median(r["seconds"] for r in runs)
            peak = max(r["peak_gb"] for r in runs)
            stages = {k: statistics.median(r["stages"][k] for r in runs) for k in runs[0]["stages"]}
            print(f"preset={preset} photos={views} seconds={seconds:.1f} peak_gb={peak:.2f} "
                  + " ".join(f"{k}={v:.1f}" for k, v in stages.items()), flush=True)  # fmt: skip
            figures[f"{preset}_{views}"] = seconds
            figures[f"peak_gb_{preset}_{views}"] = peak
    print("presets: " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
