"""Generate in Blender without freezing it: the longest main-thread stall and the time from
Generate to a finished rig, at the fast and default presets.

    python benchmarks/blender_stall.py [--presets fast default] [--repeats 3]

The bpy module has no event loop, so the modal operator's timer is played here by a loop
that does what each timer event does (read the worker's progress, then build a slice of the
avatar within `BUILD_BUDGET`) and times every event. Baseline in the same run: building the
whole avatar in one main-thread call, as a plain blocking operator would.
Cancel: the worst time from Cancel to a stopped worker, pressed in each long stage.
Last line: `blender: preset=fast stall_s=… blocking_build_s=… seconds=… cancel_s=…
| preset=default …`.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bpy

from photo_avatar.core.avatar import Settings
from photo_avatar.core.cli import write_sample
from photo_avatar.operators import build
from photo_avatar.operators.generate import BUILD_BUDGET, TIMER_SECONDS, start_job

CANCEL_STAGES = ("finding the person", "fitting the body", "predicting depth", "fusing")


def one_run(photo: Path, preset: str, name: str) -> tuple[float, float, float]:
    """(longest timer event, blocking whole build, Generate-to-rig) in seconds."""
    job = start_job([photo], Settings.from_preset(preset), 0)
    builder = None
    while True:
        time.sleep(TIMER_SECONDS)
        start = time.perf_counter()
        _ = (job.fraction, job.stage)
        if not job.thread.is_alive():
            if job.error is not None:
                raise job.error
            if builder is None:
                builder = build.Builder(bpy.context, job.result.avatar, name, job.arrays)
            elif builder.advance(BUILD_BUDGET):
                job.longest_stall = max(job.longest_stall, time.perf_counter() - start)
                break
        job.longest_stall = max(job.longest_stall, time.perf_counter() - start)
    total = time.perf_counter() - job.started
    start = time.perf_counter()
    build.build_avatar(bpy.context, job.result.avatar, f"{name}_blocking")
    return job.longest_stall, time.perf_counter() - start, total


def cancel_latency(photo: Path, preset: str, stage: str) -> float:
    """Seconds from Cancel (pressed during `stage`) until the worker has stopped."""
    job = start_job([photo], Settings.from_preset(preset), 0)
    while job.stage != stage and job.thread.is_alive():
        time.sleep(0.01)
    start = time.perf_counter()
    job.progress.cancel()
    job.thread.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["fast", "default"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else None)
    logging.basicConfig(level=logging.WARNING)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    photo = write_sample(Path(tempfile.mkdtemp()) / "sample.png")
    parts = []
    for preset in args.presets:
        runs = [one_run(photo, preset, f"Avatar_{preset}_{n}") for n in range(args.repeats)]
        stall, blocking, seconds = (statistics.median(r[k] for r in runs) for k in range(3))
        worst = max(r[0] for r in runs)
        stops = {
            stage: max(cancel_latency(photo, preset, stage) for _ in range(args.repeats))
            for stage in CANCEL_STAGES
        }
        print(
            f"preset={preset} cancel latency (worst of {args.repeats}): "
            + " ".join(f"{stage}={sec:.2f} s" for stage, sec in stops.items()),
            flush=True,
        )
        print(
            f"preset={preset} runs={len(runs)} median stall={stall:.3f} s (worst {worst:.3f}) "
            f"blocking build={blocking:.3f} s ratio={stall / blocking:.2f} "
            f"Generate-to-rig={seconds:.1f} s",
            flush=True,
        )
        parts.append(
            f"preset={preset} stall_s={stall:.3f} blocking_build_s={blocking:.3f} "
            f"seconds={seconds:.1f} cancel_s={max(stops.values()):.2f}"
        )
    print("blender: " + " | ".join(parts))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # the bpy wheel can deadlock in its exit-time destructors
