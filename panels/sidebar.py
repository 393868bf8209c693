"""The Photo Avatar tab in the 3D Viewport's sidebar: photos, options, Generate and progress."""

from pathlib import Path

import bpy
import bpy.utils.previews

from ..operators.preferences import ADDON_ID

_thumbnails = None
"""Preview collection of the photos' thumbnails (kept out of bpy.data, so nothing is saved)."""


def _thumbnail(path: str) -> int:
    absolute = bpy.path.abspath(path)
    if _thumbnails is None or not Path(absolute).is_file():
        return 0
    if absolute not in _thumbnails:
        _thumbnails.load(absolute, absolute, "IMAGE")
    return _thumbnails[absolute].icon_id


class PHOTO_AVATAR_UL_photos(bpy.types.UIList):
    """The photos of the person, with thumbnails."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        icon_id = _thumbnail(item.filepath)
        name = Path(item.filepath).name or "(no file)"
        if icon_id:
            layout.label(text=name, icon_value=icon_id)
        else:
            layout.label(text=name, icon="ERROR")


class PHOTO_AVATAR_PT_sidebar(bpy.types.Panel):
    """Photos in, a rigged and textured avatar out."""

    bl_idname = "PHOTO_AVATAR_PT_sidebar"
    bl_label = "Photo Avatar"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Photo Avatar"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.photo_avatar
        state = context.window_manager.photo_avatar_run

        layout.label(text="Photos of the person")
        row = layout.row()
        row.template_list(
            "PHOTO_AVATAR_UL_photos", "", settings, "photos", settings, "active_photo", rows=3
        )
        buttons = row.column(align=True)
        buttons.operator("photo_avatar.photo_add", icon="ADD", text="")
        buttons.operator("photo_avatar.photo_remove", icon="REMOVE", text="")

        options = layout.column()
        options.use_property_split = True
        options.use_property_decorate = False
        options.enabled = not state.running
        options.prop(settings, "preset")
        options.prop(settings, "rig")
        options.prop(settings, "rest_pose")
        options.prop(settings, "triangles")
        options.prop(settings, "use_network")
        prefs = context.preferences.addons.get(ADDON_ID)
        if prefs is not None:
            options.prop(prefs.preferences, "device")

        if state.running:
            layout.progress(factor=state.progress, type="BAR", text=state.stage.capitalize())
            layout.operator("photo_avatar.cancel", icon="CANCEL")
            return
        generate = layout.row()
        generate.scale_y = 1.5
        generate.enabled = len(settings.photos) > 0
        op = generate.operator("photo_avatar.generate", icon="OUTLINER_OB_ARMATURE")
        op.preset, op.rig = settings.preset, settings.rig
        op.rest_pose, op.triangles = settings.rest_pose, settings.triangles
        op.use_network = settings.use_network
