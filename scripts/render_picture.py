"""Render the README's Blender pictures: the avatar Generate builds from one photo, in its
rest pose, in the photo's pose and in a pose of our own; and, with `--motions`, a strip of it
walking and dancing with the built-in motions. Cycles on the CPU.

    .venv/bin/python scripts/render_picture.py PHOTO -o docs/blender_result.png \
        [--motions docs/avatar_motion_strip.png] [--preset fast]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import bpy
import cv2
import numpy as np
from mathutils import Euler, Vector

import photo_avatar

# A pose of our own: (bone, XYZ Euler degrees in the bone's frame).
WAVE = (
    ("mixamorig:RightArm", (0, 0, -70)),
    ("mixamorig:RightForeArm", (0, 0, -60)),
    ("mixamorig:LeftArm", (0, 0, 20)),
    ("mixamorig:LeftUpLeg", (-35, 0, 0)),
    ("mixamorig:LeftLeg", (60, 0, 0)),
    ("mixamorig:Spine1", (0, 12, 0)),
    ("mixamorig:Head", (10, -15, 0)),
)


def _stage(rig: bpy.types.Object, mesh: bpy.types.Object, size: tuple[int, int]) -> None:
    """Camera framing the avatar from the front-left, a sun and a grey floor."""
    scene = bpy.context.scene
    corners = [mesh.matrix_world @ Vector(c) for c in mesh.bound_box]
    low = Vector([min(c[i] for c in corners) for i in range(3)])
    high = Vector([max(c[i] for c in corners) for i in range(3)])
    centre, height = (low + high) / 2, high.z - low.z
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.lens = 50
    scene.collection.objects.link(camera)
    distance = 1.25 * height / (2 * math.tan(camera.data.angle_y / 2))
    camera.location = centre + Vector((0.35 * distance, -distance, 0.1 * height))
    camera.rotation_euler = (centre - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = Euler((math.radians(40), 0, math.radians(-30)))
    scene.collection.objects.link(sun)
    bpy.ops.mesh.primitive_plane_add(size=20, location=(centre.x, centre.y, low.z))
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 32
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.film_transparent = False


def _render(path: Path) -> np.ndarray:
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return cv2.imread(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--motions", type=Path, help="also render the walk and dance strip")
    parser.add_argument("--preset", default="default")
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    photo_avatar.register()
    bpy.ops.photo_avatar.generate(photos=[{"name": str(args.photo)}], preset=args.preset)
    rig = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    mesh = next(o for o in bpy.data.objects if o.type == "MESH")
    _stage(rig, mesh, (400, 600))
    frames = []
    with tempfile.TemporaryDirectory() as folder:
        frames.append(_render(Path(folder) / "rest.png"))
        rig.animation_data.action = next(iter(a for a in bpy.data.actions if "_pose_1_" in a.name))
        bpy.context.scene.frame_set(1)
        frames.append(_render(Path(folder) / "photo.png"))
        rig.animation_data.action = None
        for name, degrees in WAVE:
            bone = rig.pose.bones[name]
            bone.rotation_mode = "XYZ"
            bone.rotation_euler = Euler([math.radians(d) for d in degrees])
        frames.append(_render(Path(folder) / "wave.png"))
        cv2.imwrite(str(args.output), np.concatenate(frames, axis=1))
        print(f"wrote {args.output}")
        if args.motions:
            for bone in rig.pose.bones:
                bone.rotation_euler = (0.0, 0.0, 0.0)
            rows = [_motion_row(rig, motion, Path(folder)) for motion in ("walk", "dance")]
            cv2.imwrite(str(args.motions), np.concatenate(rows, axis=0))
            print(f"wrote {args.motions}")


def _motion_row(rig: bpy.types.Object, motion: str, folder: Path) -> np.ndarray:
    """Five frames of a built-in motion, the camera following the avatar's hips."""
    bpy.ops.photo_avatar.motion(motion=motion, target=rig.name)
    scene, camera = bpy.context.scene, bpy.context.scene.camera
    start, end = scene.frame_start, scene.frame_end
    home = camera.location.copy()
    scene.frame_set(start)
    first = rig.matrix_world @ rig.pose.bones["mixamorig:Hips"].head
    frames = []
    for frame in np.linspace(start, min(end, start + 60), 5).astype(int):
        scene.frame_set(int(frame))
        hips = rig.matrix_world @ rig.pose.bones["mixamorig:Hips"].head
        camera.location = home + Vector((hips.x - first.x, hips.y - first.y, 0.0))
        frames.append(_render(folder / f"{motion}_{frame}.png"))
    camera.location = home
    return np.concatenate(frames, axis=1)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # the bpy wheel can deadlock in its exit-time destructors
