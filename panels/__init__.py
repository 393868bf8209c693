"""Blender sidebar panels (bpy lives here and in `operators` only)."""


def register() -> None:
    """Nothing is registered until the Blender extension lands."""


def unregister() -> None:
    """Nothing is registered until the Blender extension lands."""
