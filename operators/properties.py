"""The user's choices (on the scene, saved with the .blend) and the run state (on the window
manager, transient).

No `from __future__ import annotations` here: Blender reads the property annotations as values.
"""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.avatar import Settings
from ..core.body_model import RIGS

_RIG_LABELS = {
    "mixamo": ("Mixamo", "52 bones with mixamorig: names, the default for Mixamo motions"),
    "game_engine": ("Game engine", "Unreal-style bone names for game engines"),
    "cmu_mb": ("CMU", "The CMU motion-capture skeleton, for CMU BVH files"),
    "makehuman": ("MakeHuman", "MakeHuman's default skeleton"),
    "smplx": ("SMPL-X", "Your own SMPL-X model files (set their folder in the preferences)"),
}


def preset_property(default: str = "default"):
    return EnumProperty(
        name="Preset",
        description="Speed against detail of the result",
        items=(
            ("fast", "Fast", "Fewer triangles, smaller texture, quicker fitting"),
            ("default", "Default", "About 20,000 triangles and a 1024 px texture"),
            ("high", "High", "About 40,000 triangles and a 2048 px texture; slowest"),
        ),
        default=default,
    )


def rig_property():
    return EnumProperty(
        name="Rig",
        description="Bone names and layout of the generated armature",
        items=[(rig, *_RIG_LABELS.get(rig, (rig, rig))) for rig in (*RIGS, "smplx")],
        default="mixamo",
    )


def rest_pose_property():
    return EnumProperty(
        name="Rest pose",
        description="The pose the avatar is built in, and the armature's rest pose",
        items=(("a", "A-pose", "Arms 45° down"), ("t", "T-pose", "Arms level")),
        default="a",
    )


def triangles_property():
    return IntProperty(
        name="Triangles",
        description="Triangle budget of the mesh; 0 takes the preset's",
        default=0,
        min=0,
        soft_max=80_000,
    )


def network_property():
    return BoolProperty(
        name="Depth network",
        description="Refine the fitted body's depth and shape with the shipped network; "
        "off: the fitted body alone (to compare)",
        default=Settings.use_network,
    )


class PHOTO_AVATAR_PG_photo(bpy.types.PropertyGroup):
    """One photo of the person."""

    filepath: StringProperty(
        name="Photo", description="A photo of the person (JPEG, PNG or WebP)", subtype="FILE_PATH"
    )


class PHOTO_AVATAR_PG_settings(bpy.types.PropertyGroup):
    """What the next Generate will use; stored with the scene."""

    photos: CollectionProperty(type=PHOTO_AVATAR_PG_photo, name="Photos")
    active_photo: IntProperty(name="Active photo", description="The selected photo in the list")
    preset: preset_property()
    rig: rig_property()
    rest_pose: rest_pose_property()
    triangles: triangles_property()
    use_network: network_property()


class PHOTO_AVATAR_PG_run(bpy.types.PropertyGroup):
    """The state of the running Generate, drawn by the sidebar; never saved."""

    running: BoolProperty(name="Running", description="A Generate is running")
    progress: FloatProperty(
        name="Progress", description="Share of the run done", min=0.0, max=1.0, subtype="FACTOR"
    )
    stage: StringProperty(name="Stage", description="What the running Generate is doing")


CLASSES = (PHOTO_AVATAR_PG_photo, PHOTO_AVATAR_PG_settings, PHOTO_AVATAR_PG_run)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.photo_avatar = PointerProperty(type=PHOTO_AVATAR_PG_settings)
    bpy.types.WindowManager.photo_avatar_run = PointerProperty(type=PHOTO_AVATAR_PG_run)


def unregister() -> None:
    del bpy.types.WindowManager.photo_avatar_run
    del bpy.types.Scene.photo_avatar
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
