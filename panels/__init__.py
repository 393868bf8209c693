"""Blender sidebar panels (bpy lives here and in `operators` only)."""

import bpy
import bpy.utils.previews

from . import retarget, sidebar

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(
    (sidebar.PHOTO_AVATAR_UL_photos, sidebar.PHOTO_AVATAR_PT_sidebar, *retarget.CLASSES)
)


def register() -> None:
    sidebar._thumbnails = bpy.utils.previews.new()
    _register_classes()


def unregister() -> None:
    _unregister_classes()
    bpy.utils.previews.remove(sidebar._thumbnails)
    sidebar._thumbnails = None
