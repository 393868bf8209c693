"""Add and remove photos in the sidebar's list."""

from pathlib import Path

import bpy
from bpy.props import CollectionProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

IMAGE_FILTER = "*.jpg;*.jpeg;*.png;*.webp;*.bmp;*.tif;*.tiff"


class PHOTO_AVATAR_OT_photo_add(bpy.types.Operator, ImportHelper):
    """Add photos of the person (the same person, from any side; up to 8)"""

    bl_idname = "photo_avatar.photo_add"
    bl_label = "Add Photos"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    filter_glob: StringProperty(default=IMAGE_FILTER, options={"HIDDEN"})
    files: CollectionProperty(
        type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"}
    )
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.photo_avatar
        names = [f.name for f in self.files if f.name] or [Path(self.filepath).name]
        folder = Path(self.directory or Path(self.filepath).parent)
        known = {item.filepath for item in settings.photos}
        for name in names:
            path = str(folder / name)
            if path not in known:
                settings.photos.add().filepath = path
        settings.active_photo = len(settings.photos) - 1
        return {"FINISHED"}


class PHOTO_AVATAR_OT_photo_remove(bpy.types.Operator):
    """Remove the selected photo from the list (the file stays on disk)"""

    bl_idname = "photo_avatar.photo_remove"
    bl_label = "Remove Photo"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return len(context.scene.photo_avatar.photos) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.photo_avatar
        settings.photos.remove(settings.active_photo)
        settings.active_photo = min(settings.active_photo, len(settings.photos) - 1)
        return {"FINISHED"}


CLASSES = (PHOTO_AVATAR_OT_photo_add, PHOTO_AVATAR_OT_photo_remove)
