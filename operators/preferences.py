"""Add-on preferences: compute device, threads, default preset, SMPL-X folder, and the state of
the Python packages the pipeline needs."""

import importlib.util

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .properties import preset_property

ADDON_ID = __package__.rpartition(".")[0]
"""`photo_avatar` as a legacy add-on or in tests, `bl_ext.<repo>.photo_avatar` as an extension."""

REQUIRED = ("numpy", "torch", "cv2", "mediapipe", "anny", "onnxruntime", "trimesh", "xatlas")


def missing_packages() -> list[str]:
    """The packages the pipeline imports that this Python cannot find, and the pose models
    when neither their bundle nor mediapipe 0.10.21 is there."""
    from ..models import pose_bundle

    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    return missing + ([] if pose_bundle.available() else ["pose models"])


class PHOTO_AVATAR_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    device: EnumProperty(
        name="Device",
        description="Where the networks and the fitting run",
        items=(
            ("auto", "Auto", "CUDA when an NVIDIA GPU is usable, else the CPU"),
            ("cpu", "CPU", "Always the CPU"),
            ("cuda", "CUDA", "An NVIDIA GPU through CUDA"),
        ),
        default="auto",
    )
    threads: IntProperty(
        name="Threads",
        description="CPU threads for the pipeline; 0 lets torch decide",
        default=0,
        min=0,
        max=256,
    )
    default_preset: preset_property()
    smplx_folder: StringProperty(
        name="SMPL-X model folder",
        description="Folder with your own licensed SMPL-X model files (optional, never shipped)",
        subtype="DIR_PATH",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "device")
        layout.prop(self, "threads")
        layout.prop(self, "default_preset")
        layout.prop(self, "smplx_folder")
        missing = missing_packages()
        box = layout.box()
        if missing:
            box.label(text="Missing Python packages: " + ", ".join(missing), icon="ERROR")
            box.label(text="Reinstall the extension for your platform and Blender version.")
        else:
            box.label(text="All Python packages found", icon="CHECKMARK")


def preferences(context: bpy.types.Context) -> "PHOTO_AVATAR_preferences | None":
    """This add-on's preferences, or None when it is not registered as an add-on (tests)."""
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon else None
