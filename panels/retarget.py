"""The Motion section of the Photo Avatar sidebar: built-in motions in one click, motion capture
with its bone map, and export of the animated avatar."""

import bpy


class PHOTO_AVATAR_UL_bone_map(bpy.types.UIList):
    """Source bone -> avatar bone, the avatar bone editable (picked from the avatar's bones)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        target = context.scene.photo_avatar_retarget.target
        row = layout.split(factor=0.45)
        row.label(text=item.source, icon="BONE_DATA")
        if target is not None and target.type == "ARMATURE":
            row.prop_search(item, "target", target.data, "bones", text="")
        else:
            row.prop(item, "target", text="")


class PHOTO_AVATAR_PT_retarget(bpy.types.Panel):
    """Make the avatar move: a walk or a dance, or your own BVH/FBX motion capture."""

    bl_idname = "PHOTO_AVATAR_PT_retarget"
    bl_label = "Motion"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Photo Avatar"
    bl_parent_id = "PHOTO_AVATAR_PT_sidebar"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.photo_avatar_retarget
        target = settings.target.name if settings.target else ""

        layout.prop(settings, "target")
        ready = settings.target is not None

        built_in = layout.row(align=True)
        built_in.enabled = ready
        built_in.prop(settings, "motion", text="")
        op = built_in.operator("photo_avatar.motion", icon="PLAY")
        op.motion, op.target = settings.motion, target

        box = layout.box()
        box.label(text="Motion capture", icon="ARMATURE_DATA")
        box.prop(settings, "filepath")
        source = box.row()
        source.enabled = not settings.filepath
        source.prop(settings, "source")
        box.prop(settings, "keep_source")
        box.operator("photo_avatar.retarget_detect", icon="VIEWZOOM").target = target
        if len(settings.bone_map):
            box.template_list(
                "PHOTO_AVATAR_UL_bone_map",
                "",
                settings,
                "bone_map",
                settings,
                "active_pair",
                rows=4,
            )
        go = box.row()
        go.scale_y = 1.3
        go.enabled = ready and bool(settings.filepath or settings.source)
        op = go.operator("photo_avatar.retarget", icon="ANIM")
        op.filepath, op.target, op.keep_source = settings.filepath, target, settings.keep_source
        op.source = settings.source.name if settings.source else ""
        for pair in settings.bone_map:
            item = op.bone_map.add()
            item.source, item.target = pair.source, pair.target

        export = layout.row(align=True)
        export.enabled = ready
        export.label(text="Export", icon="EXPORT")
        for kind in ("FBX", "GLB"):
            op = export.operator("photo_avatar.export_animation", text=kind)
            op.format, op.target = kind, target


CLASSES = (PHOTO_AVATAR_UL_bone_map, PHOTO_AVATAR_PT_retarget)
"""Registered after the sidebar panel, the Motion section's parent."""
