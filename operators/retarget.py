"""Retarget: motion capture (a BVH or FBX file, or an animated armature in the scene) or one of
the project's own motions onto the avatar's armature, baked as one action; and export of the
animated avatar. The math is `core.retarget`; this module reads and writes Blender data.

Every operator here is synchronous and one undo step. A failure removes whatever was added
(an importer's objects, half an action) and puts the scene's frame range and fps back.

No `from __future__ import annotations` here: Blender reads the property annotations as values.
"""

import dataclasses
import logging
from pathlib import Path

import bpy
import numpy as np
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.retarget import motions
from ..core.retarget.bone_maps import bone_map as detect_bone_map
from ..core.retarget.bvh import Motion, read_bvh
from ..core.retarget.kinematics import TargetRig
from ..core.retarget.solve import RetargetedMotion, retarget

log = logging.getLogger(__name__)

_DATA = (
    "objects", "meshes", "armatures", "actions", "materials", "images", "textures",
    "collections", "cameras", "lights", "node_groups", "curves",
)  # fmt: skip
"""The datablock kinds an importer may add."""

_MOTIONS = {"walk": motions.walk, "dance": motions.dance}
_MOTION_ITEMS = (
    ("walk", "Walk", "A walk cycle, four strides"),
    ("dance", "Light dance", "A light dance at 120 bpm, two bars"),
)
"""The built-in motions as enum items, for the operator and the panel's choice."""


class RetargetError(Exception):
    """A user-facing failure: the message is reported as it is."""


# --- scene bookkeeping -------------------------------------------------------------------


def _snapshot() -> dict[str, set[int]]:
    """Pointers of every datablock now in the file, per kind."""
    return {kind: {d.as_pointer() for d in getattr(bpy.data, kind)} for kind in _DATA}


def _remove_added(before: dict[str, set[int]], keep: tuple = ()) -> None:
    """Remove every datablock added since `before` (objects first), except those in `keep`."""
    kept = {d.as_pointer() for d in keep}
    for kind in _DATA:
        collection = getattr(bpy.data, kind)
        for block in [d for d in collection if d.as_pointer() not in before[kind]]:
            if block.as_pointer() not in kept:
                collection.remove(block)


class _SceneState:
    """Frame range, fps, current frame and the target's action, to put back on failure."""

    def __init__(self, scene: bpy.types.Scene, target: bpy.types.Object | None) -> None:
        self.scene, self.target = scene, target
        self.values = (scene.frame_start, scene.frame_end, scene.render.fps)
        self.fps_base, self.frame = scene.render.fps_base, scene.frame_current
        data = target.animation_data if target is not None else None
        self.action = data.action if data is not None else None
        self.had_animation_data = data is not None

    def restore(self) -> None:
        scene = self.scene
        scene.frame_start, scene.frame_end, scene.render.fps = self.values
        scene.render.fps_base = self.fps_base
        scene.frame_set(self.frame)
        if self.target is not None:
            if self.had_animation_data:
                self.target.animation_data.action = self.action
            elif self.target.animation_data is not None:
                self.target.animation_data_clear()


def _armature(name: str, what: str) -> bpy.types.Object:
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "ARMATURE":
        raise RetargetError(f"{what} {name!r} is not an armature in this file")
    return obj


def _target(context: bpy.types.Context, name: str) -> bpy.types.Object:
    if name:
        return _armature(name, "target")
    obj = context.view_layer.objects.active if context.view_layer else None
    if obj is None or obj.type != "ARMATURE":
        raise RetargetError("choose the avatar's armature as the target")
    return obj


# --- Blender armatures <-> core ----------------------------------------------------------


def _bones_parents_first(obj: bpy.types.Object) -> list[bpy.types.Bone]:
    order: list[bpy.types.Bone] = []

    def visit(bone: bpy.types.Bone) -> None:
        order.append(bone)
        for child in bone.children:
            visit(child)

    for bone in obj.data.bones:
        if bone.parent is None:
            visit(bone)
    return order


def target_rig(obj: bpy.types.Object) -> TargetRig:
    """The armature's bones at rest, armature space (parents first)."""
    bones = _bones_parents_first(obj)
    index = {b.name: i for i, b in enumerate(bones)}
    return TargetRig(
        [b.name for b in bones],
        [index[b.parent.name] if b.parent else -1 for b in bones],
        np.array([np.array(b.matrix_local) for b in bones], dtype=np.float64),
    )


def _rotation(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) the rotation of 4x4 or 3x3 matrices with scale (columns normalised)."""
    m = matrix[..., :3, :3]
    return m / np.linalg.norm(m, axis=-2, keepdims=True)


def sample_armature(scene: bpy.types.Scene, obj: bpy.types.Object) -> tuple[Motion, int]:
    """An animated armature as a `Motion` in world space (metres, Z up), over its action's
    frame range; and the first frame."""
    action = obj.animation_data.action if obj.animation_data else None
    if action is None:
        raise RetargetError(f"armature {obj.name!r} has no action to retarget")
    start, end = (round(f) for f in action.frame_range)
    bones = _bones_parents_first(obj)
    index = {b.name: i for i, b in enumerate(bones)}
    world = np.array(obj.matrix_world)
    rest = world @ np.array([np.array(b.matrix_local) for b in bones])
    poses = [obj.pose.bones[b.name] for b in bones]
    frames = np.zeros((end - start + 1, len(bones), 4, 4))
    current = scene.frame_current
    try:
        for k, frame in enumerate(range(start, end + 1)):
            scene.frame_set(frame)
            frames[k] = world @ np.array([np.array(p.matrix) for p in poses])
    finally:
        scene.frame_set(current)
    rotations = _rotation(frames) @ np.swapaxes(_rotation(rest), -1, -2)
    motion = Motion.from_world(
        [b.name for b in bones],
        [index[b.parent.name] if b.parent else -1 for b in bones],
        rest[:, :3, 3],
        rotations,
        frames[:, 0, :3, 3],
        scene.render.fps / scene.render.fps_base,
        obj.name,
    )
    return motion, start


def _import(filepath: str) -> list[bpy.types.Object]:
    """Blender's own importer for the file; the armatures it added."""
    before = {o.as_pointer() for o in bpy.data.objects}
    suffix = Path(filepath).suffix.lower()
    if suffix == ".fbx":
        # FBX keeps times in seconds and Blender's exporter writes frame f at f / fps; the
        # importer's default offset of one frame would shift the range, so none here
        bpy.ops.import_scene.fbx(filepath=filepath, use_anim=True, anim_offset=0.0)
    elif suffix == ".bvh":
        motion = read_bvh(filepath)
        axis = motion.up_axis[1].upper()
        bpy.ops.import_anim.bvh(
            filepath=filepath,
            global_scale=motion.unit_scale,
            axis_up=axis if motion.up_axis[0] == "+" else f"-{axis}",
            axis_forward="-Z" if axis != "Z" else "Y",
            update_scene_fps=False,
            update_scene_duration=False,
        )
    added = [o for o in bpy.data.objects if o.as_pointer() not in before]
    armatures = [o for o in added if o.type == "ARMATURE"]
    if not armatures:
        raise RetargetError(f"{Path(filepath).name}: no armature in the file")
    return armatures


def read_source(
    context: bpy.types.Context, filepath: str, source: str, keep: bool
) -> tuple[Motion, int]:
    """The motion to retarget and its first frame: a BVH read by `core.retarget.bvh` (and
    imported by Blender too when `keep`), an FBX through Blender's importer, or a scene
    armature. Datablocks an import adds stay; the caller removes them."""
    if not filepath:
        if not source:
            raise RetargetError("choose a BVH or FBX file or an animated armature")
        return sample_armature(context.scene, _armature(source, "source"))
    path = Path(bpy.path.abspath(filepath))
    suffix = path.suffix.lower()
    if suffix not in (".bvh", ".fbx"):
        raise RetargetError(f"{path.name}: not a BVH or FBX file")
    if not path.is_file():
        raise RetargetError(f"{path.name}: no such file")
    if suffix == ".bvh":
        motion = read_bvh(path)
        if keep:
            _import(str(path))
        return motion, 1
    armatures = _import(str(path))
    animated = [o for o in armatures if o.animation_data and o.animation_data.action]
    if not animated:
        raise RetargetError(f"{path.name}: the armature in the file has no animation")
    motion, start = sample_armature(context.scene, animated[0])
    return dataclasses.replace(motion, source=path.name), start


def bake(
    scene: bpy.types.Scene,
    obj: bpy.types.Object,
    rig: TargetRig,
    result: RetargetedMotion,
    name: str,
    start: int,
) -> bpy.types.Action:
    """One action on `obj` with a quaternion key per bone and frame and the root's location;
    the scene's frame range and fps set to the motion's."""
    frames = np.arange(start, start + result.rotations.shape[0], dtype=np.float64)
    quaternions = _quaternions(result.rotations)
    locations = result.root_locations(rig)
    action = bpy.data.actions.new(name)
    try:
        # Layered actions (Blender 4.4+; 5.0 removed `action.fcurves`): one slot for the
        # armature, its F-curves in the channelbag of one keyframe strip.
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        channels = action.layers.new("Layer").strips.new(type="KEYFRAME").channelbags.new(slot)
        for j, bone in enumerate(rig.bone_names):
            pose_bone = obj.pose.bones[bone]
            pose_bone.rotation_mode = "QUATERNION"
            path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"]'
            group = channels.groups.new(bone)
            for k in range(4):
                _curve(
                    channels, f"{path}.rotation_quaternion", k, group, frames, quaternions[:, j, k]
                )
            if j == result.root_bone:
                for k in range(3):
                    _curve(channels, f"{path}.location", k, group, frames, locations[:, k])
        action.use_frame_range = True
        action.frame_start, action.frame_end = frames[0], frames[-1]
        if obj.animation_data is None:
            obj.animation_data_create()
        obj.animation_data.action = action
        obj.animation_data.action_slot = slot
    except Exception:
        bpy.data.actions.remove(action)
        raise
    fps = round(result.fps)
    scene.render.fps, scene.render.fps_base = fps, fps / result.fps
    scene.frame_start, scene.frame_end = int(frames[0]), int(frames[-1])
    scene.frame_set(int(frames[0]))
    return action


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """(T, J, 4) w, x, y, z of rotations (T, J, 3, 3), sign-continuous over T so that
    interpolation takes the short way."""
    m = rotations
    w = np.sqrt(np.clip(1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2], 0, None)) / 2
    x = np.sqrt(np.clip(1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], 0, None)) / 2
    y = np.sqrt(np.clip(1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 0, None)) / 2
    z = np.sqrt(np.clip(1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2], 0, None)) / 2
    x = np.copysign(x, m[..., 2, 1] - m[..., 1, 2])
    y = np.copysign(y, m[..., 0, 2] - m[..., 2, 0])
    z = np.copysign(z, m[..., 1, 0] - m[..., 0, 1])
    q = np.stack([w, x, y, z], axis=-1)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    for t in range(1, q.shape[0]):
        flip = np.sum(q[t] * q[t - 1], axis=-1) < 0
        q[t, flip] *= -1
    return q


def _curve(channels, data_path: str, index: int, group, frames, values) -> None:
    curve = channels.fcurves.new(data_path, index=index)
    curve.group = group
    points = curve.keyframe_points
    points.add(len(frames))
    points.foreach_set("co", np.stack([frames, values], axis=1).astype(np.float32).ravel())
    points.foreach_set("interpolation", np.ones(len(frames), dtype=np.int32))  # LINEAR
    curve.update()


# --- properties --------------------------------------------------------------------------


def _is_armature(self, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


class PHOTO_AVATAR_PG_bone_pair(bpy.types.PropertyGroup):
    """One line of the bone map: a source bone and the avatar bone it drives."""

    source: StringProperty(name="Source bone", description="Bone of the motion capture")
    target: StringProperty(
        name="Avatar bone", description="Bone of the avatar it drives; empty to leave it out"
    )


class PHOTO_AVATAR_PG_retarget(bpy.types.PropertyGroup):
    """The sidebar's Motion section: what to retarget onto which armature."""

    filepath: StringProperty(
        name="Motion file",
        description="BVH or FBX motion capture; empty to use the source armature",
        subtype="FILE_PATH",
    )
    source: PointerProperty(
        type=bpy.types.Object,
        name="Source armature",
        description="An animated armature already in the scene (when no file is chosen)",
        poll=_is_armature,
    )
    target: PointerProperty(
        type=bpy.types.Object,
        name="Avatar",
        description="The avatar's armature that receives the motion",
        poll=_is_armature,
    )
    keep_source: BoolProperty(
        name="Keep source",
        description="Keep the imported motion-capture armature in the scene",
        default=False,
    )
    bone_map: CollectionProperty(
        type=PHOTO_AVATAR_PG_bone_pair,
        name="Bone map",
        description="Source bone -> avatar bone; empty detects it from the bone names",
    )
    active_pair: IntProperty(name="Active bone pair", description="Selected line of the map")
    motion: EnumProperty(
        name="Motion",
        description="A motion made by Photo Avatar itself",
        items=_MOTION_ITEMS,
        default="walk",
    )


# --- operators ---------------------------------------------------------------------------


class _Guarded:
    """`execute` runs `run`; any failure removes what was added, puts the scene back and is
    reported to the user (one place for error handling). Subclasses have a `target`."""

    def run(self, context: bpy.types.Context) -> str:
        raise NotImplementedError

    def execute(self, context: bpy.types.Context) -> set[str]:
        before = _snapshot()
        obj = bpy.data.objects.get(self.target) if self.target else context.active_object
        state = _SceneState(context.scene, obj if obj and obj.type == "ARMATURE" else None)
        try:
            message = self.run(context)
        except Exception as error:
            _remove_added(before)
            state.restore()
            if not isinstance(error, (RetargetError, ValueError)):
                log.exception("%s failed", self.bl_idname)
            self.report({"ERROR"}, f"Photo Avatar: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Photo Avatar: {message}")
        return {"FINISHED"}


def _pairs(collection) -> dict[str, str] | None:
    return {p.source: p.target for p in collection if p.target} or None


class PHOTO_AVATAR_OT_retarget(_Guarded, bpy.types.Operator):
    """Put motion capture (a BVH or FBX file, or an animated armature) on the avatar's
    armature as a baked action"""

    bl_idname = "photo_avatar.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(
        name="Motion file",
        description="BVH or FBX file; empty to use `source`",
        subtype="FILE_PATH",
    )
    source: StringProperty(
        name="Source armature", description="Name of an animated armature in the scene"
    )
    target: StringProperty(
        name="Avatar", description="Name of the avatar's armature; empty for the active object"
    )
    keep_source: BoolProperty(
        name="Keep source", description="Keep the imported armature in the scene", default=False
    )
    bone_map: CollectionProperty(
        type=PHOTO_AVATAR_PG_bone_pair,
        name="Bone map",
        description="Source bone -> avatar bone pairs; empty detects them from the names",
    )

    def run(self, context: bpy.types.Context) -> str:
        target = _target(context, self.target)
        before = _snapshot()
        motion, start = read_source(context, self.filepath, self.source, self.keep_source)
        if not self.keep_source:
            _remove_added(before)
        rig = target_rig(target)
        result = retarget(motion, rig, _pairs(self.bone_map))
        name = f"{target.name}_{Path(motion.source).stem}"
        action = bake(context.scene, target, rig, result, name, start)
        return (
            f"{action.name}: {motion.frames} frames at {result.fps:g} fps, "
            f"{len(result.bone_map)} bones ({result.source_layout or 'hand-made map'})"
        )


class PHOTO_AVATAR_OT_motion(_Guarded, bpy.types.Operator):
    """Make the avatar walk or dance with a motion made by Photo Avatar (no mocap needed)"""

    bl_idname = "photo_avatar.motion"
    bl_label = "Apply Motion"
    bl_options = {"REGISTER", "UNDO"}

    motion: EnumProperty(
        name="Motion",
        description="The built-in motion to apply",
        items=_MOTION_ITEMS,
        default="walk",
    )
    target: StringProperty(
        name="Avatar", description="Name of the avatar's armature; empty for the active object"
    )

    def run(self, context: bpy.types.Context) -> str:
        target = _target(context, self.target)
        rig = target_rig(target)
        result = retarget(_MOTIONS[self.motion](), rig)
        action = bake(context.scene, target, rig, result, f"{target.name}_{self.motion}", 1)
        return f"{action.name}: {result.rotations.shape[0]} frames"


class PHOTO_AVATAR_OT_retarget_detect(_Guarded, bpy.types.Operator):
    """Fill the bone map from the bone names of the source and the avatar"""

    bl_idname = "photo_avatar.retarget_detect"
    bl_label = "Detect Bones"
    bl_options = {"REGISTER", "UNDO"}

    target: StringProperty(
        name="Avatar", description="Name of the avatar's armature; empty for the sidebar's"
    )

    def run(self, context: bpy.types.Context) -> str:
        settings = context.scene.photo_avatar_retarget
        target = _target(context, self.target or (settings.target.name if settings.target else ""))
        before = _snapshot()
        source = settings.source.name if settings.source else ""
        motion, _ = read_source(context, settings.filepath, source, keep=False)
        _remove_added(before)
        pairs = detect_bone_map(motion.names, target_rig(target).bone_names, motion.source)
        settings.bone_map.clear()
        for name in motion.names:
            item = settings.bone_map.add()
            item.source, item.target = name, pairs.get(name, "")
        return f"{len(pairs)} of {len(motion.names)} source bones mapped"


class PHOTO_AVATAR_OT_export_animation(_Guarded, bpy.types.Operator):
    """Export the avatar (armature, mesh and its action) to FBX or glTF binary"""

    bl_idname = "photo_avatar.export_animation"
    bl_label = "Export Animated Avatar"
    bl_options = {"REGISTER"}

    filepath: StringProperty(
        name="File", description="Where to write (.fbx or .glb)", subtype="FILE_PATH"
    )
    format: EnumProperty(
        name="Format",
        description="File format, when the file name has no .fbx or .glb ending",
        items=(
            ("FBX", "FBX", "Autodesk FBX with the baked animation"),
            ("GLB", "glTF binary", "glTF 2.0 binary with the animation"),
        ),
        default="FBX",
    )
    target: StringProperty(
        name="Avatar", description="Name of the avatar's armature; empty for the active object"
    )

    def run(self, context: bpy.types.Context) -> str:
        target = _target(context, self.target)
        if not self.filepath:
            raise RetargetError("choose where to write the file")
        path = Path(bpy.path.abspath(self.filepath))
        if path.suffix.lower() not in (".fbx", ".glb"):
            path = path.with_name(f"{path.name}.{self.format.lower()}")
        if target.animation_data is None or target.animation_data.action is None:
            raise RetargetError(f"{target.name} has no action: apply a motion first")
        export_animated(context, target, path)
        return f"{path.name} written"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            stem = (self.target or "avatar").removesuffix("_rig")
            self.filepath = f"//{stem}.{self.format.lower()}"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


def export_animated(context: bpy.types.Context, armature: bpy.types.Object, path: Path) -> None:
    """Write the armature, its child meshes and its action with Blender's exporters."""
    objects = [armature, *(c for c in armature.children if c.type == "MESH")]
    view_layer = context.view_layer
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    try:
        for obj in view_layer.objects:
            obj.select_set(obj in objects)
        view_layer.objects.active = armature
        if path.suffix.lower() == ".fbx":
            bpy.ops.export_scene.fbx(
                filepath=str(path),
                use_selection=True,
                object_types={"ARMATURE", "MESH"},
                add_leaf_bones=False,
                bake_anim=True,
                bake_anim_use_all_actions=False,
                bake_anim_use_nla_strips=False,
                bake_anim_simplify_factor=0.0,
                path_mode="COPY",
                embed_textures=True,
            )
        else:
            bpy.ops.export_scene.gltf(
                filepath=str(path),
                export_format="GLB",
                use_selection=True,
                export_animations=True,
                export_animation_mode="ACTIVE_ACTIONS",
                export_force_sampling=True,
            )
    finally:
        for obj in view_layer.objects:
            obj.select_set(obj in selected)
        view_layer.objects.active = active


CLASSES = (
    PHOTO_AVATAR_PG_bone_pair,
    PHOTO_AVATAR_PG_retarget,
    PHOTO_AVATAR_OT_retarget,
    PHOTO_AVATAR_OT_motion,
    PHOTO_AVATAR_OT_retarget_detect,
    PHOTO_AVATAR_OT_export_animation,
)
"""Register in this order (the settings hold bone pairs, the operators take them)."""


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.photo_avatar_retarget = PointerProperty(
        type=PHOTO_AVATAR_PG_retarget,
        name="Photo Avatar motion",
        description="Motion capture and built-in motions for the avatar",
    )


def unregister() -> None:
    del bpy.types.Scene.photo_avatar_retarget
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
