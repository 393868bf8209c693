"""Photo Avatar: photos of a person to a rigged, textured avatar (CanonicalFusion).

Importing this package must never need Blender: `photo_avatar.core` is used headless by the
command line, the tests and pipeline scripts. Blender calls `register()` and `unregister()`,
which import the Blender-facing modules lazily.
"""


def register() -> None:
    """Register the Blender classes (called by Blender when the extension is enabled)."""
    from . import operators, panels

    operators.register()
    panels.register()


def unregister() -> None:
    """Unregister the Blender classes, in the reverse order of `register`."""
    from . import operators, panels

    panels.unregister()
    operators.unregister()
