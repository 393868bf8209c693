"""Blender operators and the data they keep (bpy lives here and in `panels` only)."""

import bpy

from . import generate, photo_list, preferences, properties, retarget

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(
    (preferences.PHOTO_AVATAR_preferences, *photo_list.CLASSES, *generate.CLASSES)
)


def register() -> None:
    properties.register()
    _register_classes()
    retarget.register()


def unregister() -> None:
    if generate.running is not None:
        generate.running.progress.cancel()
    retarget.unregister()
    _unregister_classes()
    properties.unregister()
