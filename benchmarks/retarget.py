"""Retargeting benchmark: bone-direction error and foot skating on the avatar's armature.

    python benchmarks/retarget.py                  # the project's procedural walk and dance
    python benchmarks/retarget.py FILE.bvh ...     # your own BVH files
    python benchmarks/retarget.py --rig cmu_mb ... # another anny rig (first build ~2 min)
    python benchmarks/retarget.py --strip docs/retarget_strip.png  # also render the motions

dir_err_deg: the angle between every matched bone's direction on the source (turned into the
target's axes) and on the retargeted armature, averaged over bones and frames.
skate_cm_per_m: how far the ankle and toe joints slide horizontally, summed over the frames
in which the source has them planted (near their lowest level and nearly still), in cm, per
metre the hips travel (counted as at least 1 m, so a motion on the spot reports plain cm).
The source's own figure, scaled to the target's size, is printed beside it: mocap skates a
little too.
Last line: `retarget: dir_err_deg=… skate_cm_per_m=… frames=…` over all motions.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from photo_avatar.core import skinning
from photo_avatar.core.body_model import load_body_model
from photo_avatar.core.camera import Camera
from photo_avatar.core.preview import shade
from photo_avatar.core.retarget.bone_maps import SIDES, detect_layout
from photo_avatar.core.retarget.bvh import Motion, read_bvh
from photo_avatar.core.retarget.kinematics import TargetRig, pose_frames
from photo_avatar.core.retarget.motions import dance, walk
from photo_avatar.core.retarget.solve import RetargetedMotion, retarget

CONTACT_M = 0.03
CONTACT_SPEED = 0.5
"""A source foot joint this close (metres) to its lowest level and slower than this (m/s,
horizontally) is planted: the swing foot skims the ground fast, a planted one barely moves."""


def direction_error(source: np.ndarray, posed: np.ndarray, result: RetargetedMotion) -> float:
    """Mean angle (degrees) between matched bone directions: source joint positions
    (T, Js, 3) in target axes, posed target heads (T, J, 3)."""
    angles = []
    for s, ms, t, mt in result.links:
        a = source[:, ms] - source[:, s]
        b = posed[:, mt] - posed[:, t]
        cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return float(np.mean(angles)) if angles else float("nan")


def contacts(joint: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: frames in which a source joint (T, 3), metres, Z up, is planted — within
    `CONTACT_M` of its lowest level (5th percentile) and moving slower than `CONTACT_SPEED`."""
    height = joint[:, 2] - np.percentile(joint[:, 2], 5)
    speed = np.linalg.norm(np.gradient(joint[:, :2], axis=0), axis=-1) * fps
    return (height < CONTACT_M) & (speed < CONTACT_SPEED)


def foot_skating(joint: np.ndarray, planted: np.ndarray) -> float:
    """Centimetres a joint (T, 3), metres, slides horizontally between consecutive frames
    that are both `planted` (T,)."""
    step = np.linalg.norm(np.diff(joint[:, :2], axis=0), axis=-1)
    return 100.0 * float(step[planted[1:] & planted[:-1]].sum())


def hips_travel(hips: np.ndarray) -> float:
    """Horizontal path length (metres) of the hips (T, 3)."""
    return float(np.linalg.norm(np.diff(hips[:, :2], axis=0), axis=-1).sum())


def evaluate(motion: Motion, rig: TargetRig) -> dict[str, float]:
    result = retarget(motion, rig)
    posed = pose_frames(rig, result.rotations, result.root_bone, result.root_translations)
    heads = posed[..., :3, 3]
    source = motion.world()[0] @ result.axes.T * result.scale

    target_bones = detect_layout(rig.bone_names).bone_for()
    source_bones = detect_layout(motion.names).bone_for()
    skate_t = skate_s = 0.0
    for joint in (f"{side}_{part}" for side in SIDES for part in ("foot", "toes")):
        if joint in target_bones and joint in source_bones:
            s = motion.names.index(source_bones[joint])
            planted = contacts(source[:, s], motion.fps)
            skate_s += foot_skating(source[:, s], planted)
            skate_t += foot_skating(heads[:, rig.bone_names.index(target_bones[joint])], planted)
    travel = max(hips_travel(heads[:, result.root_bone]), 1.0)
    return {
        "frames": motion.frames,
        "dir_err_deg": direction_error(source, heads, result),
        "skate_cm": skate_t,
        "source_skate_cm": skate_s,
        "travel_m": travel,
        "layout": result.source_layout,
        "scale": result.scale,
    }


STRIP_FRAMES = 6
TILE_W, TILE_H = 200, 340


def render_strip(path: Path, rig_name: str) -> None:
    """Two rows of `STRIP_FRAMES` shaded frames: the average anny body (the avatar's body
    prior, skinned with its own weights) walking, seen from three-quarters, and dancing,
    seen from the front; the camera follows the hips. Frames span one stride and one bar."""
    body = load_body_model(rig_name)
    rest = body.rest(body.default_phenotype)
    rig = TargetRig.from_body(rig_name)
    bind = rest.bone_matrices.double()
    vertices = rest.vertices[0].double()
    weights = body.skin_weights.double()
    rows = []
    for motion, yaw, span in ((walk(), 75.0, 32), (dance(), 15.0, 60)):
        result = retarget(motion, rig)
        frames = np.linspace(0, span, STRIP_FRAMES, endpoint=False).round().astype(int)
        posed = pose_frames(
            rig, result.rotations[frames], result.root_bone, result.root_translations[frames]
        )
        transforms = skinning.skinning_transforms(torch.as_tensor(posed), bind)
        skinned = skinning.forward_skin(vertices, weights, transforms).numpy()
        tiles = []
        for k, frame in enumerate(frames):
            hips = posed[k, result.root_bone, :3, 3]
            # anny's origin is near the pelvis: aim a little below the hips, mid-body
            camera = Camera.looking_at_person(
                TILE_W, TILE_H, yaw, 3.4, centre=(hips[0], hips[1], hips[2] - 0.1)
            )
            image, _ = shade(camera, skinned[k], body.faces)
            tile = Image.fromarray(image)
            ImageDraw.Draw(tile).text((6, 6), f"{motion.source} f{frame}", fill=(255, 255, 0))
            tiles.append(np.asarray(tile))
        rows.append(np.concatenate(tiles, axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    print(f"strip: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bvh", nargs="*", help="BVH files (default: the procedural motions)")
    parser.add_argument("--rig", default="mixamo", help="anny rig of the target armature")
    parser.add_argument("--strip", type=Path, help="also render the walk and dance to this PNG")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rig = TargetRig.from_body(args.rig)
    motions = [read_bvh(p) for p in args.bvh] if args.bvh else [walk(), dance()]
    rows = []
    for motion in motions:
        start = time.perf_counter()
        row = evaluate(motion, rig)
        rows.append(row)
        print(
            f"{motion.source}: frames={row['frames']} layout={row['layout']} "
            f"scale={row['scale']:.4f} dir_err_deg={row['dir_err_deg']:.2f} "
            f"skate_cm_per_m={row['skate_cm'] / row['travel_m']:.2f} "
            f"(source {row['source_skate_cm'] / row['travel_m']:.2f}) "
            f"travel_m={row['travel_m']:.2f} seconds={time.perf_counter() - start:.2f}"
        )
    frames = sum(r["frames"] for r in rows)
    dir_err = sum(r["dir_err_deg"] * r["frames"] for r in rows) / frames
    skate = sum(r["skate_cm"] for r in rows) / sum(r["travel_m"] for r in rows)
    if args.strip:
        render_strip(args.strip, args.rig)
    print(f"retarget: dir_err_deg={dir_err:.2f} skate_cm_per_m={skate:.2f} frames={frames}")


if __name__ == "__main__":
    main()
