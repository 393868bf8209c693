"""Build an `Avatar` as native Blender data: a collection with the armature and the skinned,
textured mesh, and one action per photo pose. Main thread only.

Conventions change here: the avatar's UVs have v = 0 at the top of the texture (glTF), Blender's
at the bottom; Blender images store rows bottom-up. Positions stay metres, Z up.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix, Vector

from ..core.avatar import Avatar


def build_avatar(context: bpy.types.Context, avatar: Avatar, name: str) -> bpy.types.Collection:
    """Add the avatar to the scene at the 3D cursor; returns its new collection.

    On any failure every datablock made so far is removed, so the scene stays as it was.
    """
    made: list[bpy.types.ID] = []
    try:
        return _build(context, avatar, name, made)
    except Exception:
        _remove(made)
        raise


def _build(context, avatar: Avatar, name: str, made: list) -> bpy.types.Collection:
    collection = bpy.data.collections.new(name)
    made.append(collection)
    armature_obj = _armature(avatar, name, made)
    mesh_obj = _mesh(avatar, name, made)
    collection.objects.link(armature_obj)
    collection.objects.link(mesh_obj)
    mesh_obj.parent = armature_obj
    modifier = mesh_obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature_obj
    armature_obj.location = context.scene.cursor.location
    _photo_actions(avatar, armature_obj, name, made)
    context.scene.collection.children.link(collection)
    return collection


def _armature(avatar: Avatar, name: str, made: list) -> bpy.types.Object:
    """Bones from the canonical frames: head, direction and roll all come from the matrix."""
    data = bpy.data.armatures.new(f"{name}_rig")
    made.append(data)
    obj = bpy.data.objects.new(f"{name}_rig", data)
    made.append(obj)
    # Edit bones exist only in edit mode, which needs the object in a scene's view layer.
    scene = bpy.context.scene
    scene.collection.objects.link(obj)
    view_layer = bpy.context.view_layer
    previous = view_layer.objects.active
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        bones = []
        for j, bone_name in enumerate(avatar.bone_names):
            bone = data.edit_bones.new(bone_name)
            head = Vector(avatar.bone_matrices[j][:3, 3].tolist())
            length = max(
                float(np.linalg.norm(avatar.bone_tails[j] - avatar.bone_matrices[j][:3, 3])), 0.01
            )
            bone.head = head
            bone.tail = head + Vector((0.0, 0.0, length))
            bone.matrix = Matrix(avatar.bone_matrices[j].tolist())
            bone.length = length
            bones.append(bone)
        for j, parent in enumerate(avatar.parents):
            if parent >= 0:
                bones[j].parent = bones[parent]
                bones[j].use_connect = False
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous
        scene.collection.objects.unlink(obj)
    data.display_type = "OCTAHEDRAL"
    obj.show_in_front = True
    return obj


def _mesh(avatar: Avatar, name: str, made: list) -> bpy.types.Object:
    """One mesh with the UV seams as split UVs, not split vertices, so it welds and paints."""
    positions, index = np.unique(avatar.vertices, axis=0, return_inverse=True)
    index = index.reshape(-1)
    first = np.zeros(len(positions), dtype=np.int64)
    first[index[::-1]] = np.arange(len(index))[::-1]
    faces = index[avatar.faces]
    mesh = bpy.data.meshes.new(f"{name}_mesh")
    made.append(mesh)
    mesh.from_pydata(positions.tolist(), [], faces.tolist())
    uv_layer = mesh.uv_layers.new(name="UVMap")
    loop_uv = avatar.uv[avatar.faces.reshape(-1)].astype(np.float32).copy()
    loop_uv[:, 1] = 1.0 - loop_uv[:, 1]
    uv_layer.data.foreach_set("uv", loop_uv.reshape(-1))
    mesh.shade_smooth()
    mesh.validate()
    mesh.materials.append(_material(avatar, name, made))
    obj = bpy.data.objects.new(f"{name}_mesh", mesh)
    made.append(obj)
    weights = avatar.weights[first]
    groups = [obj.vertex_groups.new(name=bone_name) for bone_name in avatar.bone_names]
    rows, bones = np.nonzero(weights > 0)
    for row, bone in zip(rows.tolist(), bones.tolist(), strict=True):
        groups[bone].add((row,), float(weights[row, bone]), "REPLACE")
    return obj


def _material(avatar: Avatar, name: str, made: list) -> bpy.types.Material:
    height, width = avatar.texture.shape[:2]
    image = bpy.data.images.new(f"{name}_texture", width, height, alpha=False)
    made.append(image)
    rgba = np.ones((height, width, 4), dtype=np.float32)
    rgba[..., :3] = avatar.texture[::-1] / 255.0
    image.pixels.foreach_set(rgba.reshape(-1))
    image.pack()
    material = bpy.data.materials.new(f"{name}_skin")
    made.append(material)
    material.use_nodes = True
    nodes = material.node_tree.nodes
    shader = nodes.get("Principled BSDF")
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.location = (-400, 200)
    material.node_tree.links.new(texture.outputs["Color"], shader.inputs["Base Color"])
    shader.inputs["Roughness"].default_value = 0.7
    return material


def _photo_actions(avatar: Avatar, armature: bpy.types.Object, name: str, made: list) -> None:
    """One single-frame action per photo: the pose the person had in that photo."""
    armature.animation_data_create()
    for n, photo_name in enumerate(avatar.photo_names):
        action = bpy.data.actions.new(f"{name}_pose_{n + 1}_{photo_name}")
        made.append(action)
        action.use_fake_user = True
        armature.animation_data.action = action
        for j, bone_name in enumerate(avatar.bone_names):
            pose_bone = armature.pose.bones[bone_name]
            pose_bone.rotation_mode = "QUATERNION"
            pose_bone.rotation_quaternion = Matrix(
                avatar.photo_poses[n, j].tolist()
            ).to_quaternion()
            pose_bone.keyframe_insert("rotation_quaternion", frame=1, group=bone_name)
    armature.animation_data.action = None
    for pose_bone in armature.pose.bones:
        pose_bone.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)


def _remove(made: list) -> None:
    """Remove the datablocks in reverse order of creation (users before what they use)."""
    collections = {
        bpy.types.Object: bpy.data.objects,
        bpy.types.Mesh: bpy.data.meshes,
        bpy.types.Armature: bpy.data.armatures,
        bpy.types.Material: bpy.data.materials,
        bpy.types.Image: bpy.data.images,
        bpy.types.Action: bpy.data.actions,
        bpy.types.Collection: bpy.data.collections,
    }
    for block in reversed(made):
        for kind, data in collections.items():
            if isinstance(block, kind):
                data.remove(block)
                break
