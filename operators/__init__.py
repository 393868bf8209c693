"""Blender operators (bpy lives here and in `panels` only)."""


def register() -> None:
    """Nothing is registered until the Blender extension lands."""


def unregister() -> None:
    """Nothing is registered until the Blender extension lands."""
