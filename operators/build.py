"""Build an `Avatar` as native Blender data: a collection with the armature and the skinned,
textured mesh, and one action per photo pose. Main thread only.

Conventions change here: the avatar's UVs have v = 0 at the top of the texture (glTF), Blender's
at the bottom; Blender images store rows bottom-up. Positions stay metres, Z up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import bpy
import cv2
import numpy as np
from mathutils import Matrix, Vector

from ..core.avatar import Avatar


@dataclass(frozen=True)
class MeshArrays:
    """The avatar's mesh as Blender wants it, computed off the main thread (numpy and
    OpenCV only): welded positions, faces, per-loop UVs, sparse weights and the texture as
    PNG bytes, so the main thread only copies arrays in."""

    positions: np.ndarray
    faces: np.ndarray
    loop_uv: np.ndarray
    weight_rows: np.ndarray
    weight_bones: np.ndarray
    weight_values: np.ndarray
    texture_png: bytes
    texture_size: tuple[int, int]


def prepare(avatar: Avatar) -> MeshArrays:
    """Weld the UV-seam copies (so the mesh paints and deforms as one piece), flip UVs to
    Blender's convention and encode the texture. Safe in any thread."""
    positions, index = np.unique(avatar.vertices, axis=0, return_inverse=True)
    index = index.reshape(-1)
    first = np.zeros(len(positions), dtype=np.int64)
    first[index[::-1]] = np.arange(len(index))[::-1]
    loop_uv = avatar.uv[avatar.faces.reshape(-1)].astype(np.float32)
    loop_uv[:, 1] = 1.0 - loop_uv[:, 1]
    weights = avatar.weights[first]
    rows, bones = np.nonzero(weights > 0)
    ok, png = cv2.imencode(
        ".png", np.ascontiguousarray(avatar.texture[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    if not ok:
        raise RuntimeError("could not encode the texture")
    height, width = avatar.texture.shape[:2]
    return MeshArrays(
        positions=positions.astype(np.float32),
        faces=index[avatar.faces].astype(np.int32),
        loop_uv=loop_uv,
        weight_rows=rows,
        weight_bones=bones,
        weight_values=weights[rows, bones].astype(np.float64),
        texture_png=png.tobytes(),
        texture_size=(width, height),
    )


class Builder:
    """Builds the avatar a slice at a time so the main thread never stalls for long: each
    `advance` runs steps until its time budget is spent. On failure or `abort`, every
    datablock made so far is removed, so the scene stays as it was."""

    def __init__(
        self, context: bpy.types.Context, avatar: Avatar, name: str, arrays: MeshArrays | None
    ) -> None:
        self.made: list[bpy.types.ID] = []
        self.collection: bpy.types.Collection | None = None
        self._steps = _steps(context, avatar, arrays or prepare(avatar), name, self)

    def advance(self, budget: float) -> bool:
        """Run steps for about `budget` seconds; True once the avatar is in the scene."""
        deadline = time.perf_counter() + budget
        try:
            for _ in self._steps:
                if time.perf_counter() >= deadline:
                    return False
        except Exception:
            self.abort()
            raise
        return True

    def abort(self) -> None:
        self._steps.close()
        _remove(self.made)
        self.made.clear()
        self.collection = None


def build_avatar(
    context: bpy.types.Context, avatar: Avatar, name: str, arrays: MeshArrays | None = None
) -> bpy.types.Collection:
    """Add the avatar to the scene at the 3D cursor in one go; returns its new collection."""
    builder = Builder(context, avatar, name, arrays)
    builder.advance(math.inf)
    return builder.collection


VERTEX_GROUP_SLICE = 10_000
"""Weights assigned per step (about 20 ms)."""


def _steps(
    context: bpy.types.Context, avatar: Avatar, arrays: MeshArrays, name: str, builder: Builder
) -> Iterator[None]:
    """The build as steps of a few tens of milliseconds each; the collection is linked into
    the scene last, so nothing half-built is ever visible."""
    made = builder.made
    collection = bpy.data.collections.new(name)
    made.append(collection)
    armature_obj = _armature(avatar, name, made)
    yield
    mesh_obj = _mesh(arrays, name, made)
    yield
    mesh_obj.data.materials.append(_material(arrays, name, made))
    yield
    groups = [mesh_obj.vertex_groups.new(name=bone_name) for bone_name in avatar.bone_names]
    entries = zip(
        arrays.weight_rows.tolist(),
        arrays.weight_bones.tolist(),
        arrays.weight_values.tolist(),
        strict=True,
    )
    for n, (row, bone, value) in enumerate(entries, 1):
        groups[bone].add((row,), value, "REPLACE")
        if n % VERTEX_GROUP_SLICE == 0:
            yield
    collection.objects.link(armature_obj)
    collection.objects.link(mesh_obj)
    mesh_obj.parent = armature_obj
    modifier = mesh_obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature_obj
    armature_obj.location = context.scene.cursor.location
    _photo_actions(avatar, armature_obj, name, made)
    yield
    context.scene.collection.children.link(collection)
    builder.collection = collection


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


def _mesh(arrays: MeshArrays, name: str, made: list) -> bpy.types.Object:
    """The welded mesh with split UVs (seams in the UV map, not in the surface)."""
    mesh = bpy.data.meshes.new(f"{name}_mesh")
    made.append(mesh)
    faces = arrays.faces
    mesh.vertices.add(len(arrays.positions))
    mesh.vertices.foreach_set("co", arrays.positions.reshape(-1))
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.reshape(-1))
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", arrays.loop_uv.reshape(-1))
    mesh.shade_smooth()
    mesh.validate()
    obj = bpy.data.objects.new(f"{name}_mesh", mesh)
    made.append(obj)
    return obj


def _material(arrays: MeshArrays, name: str, made: list) -> bpy.types.Material:
    """A Principled material over the baked texture, packed into the .blend from the PNG
    bytes made off the main thread (packing pixels would encode here, ~0.2 s)."""
    image = bpy.data.images.new(f"{name}_texture", *arrays.texture_size, alpha=False)
    made.append(image)
    image.pack(data=arrays.texture_png, data_len=len(arrays.texture_png))
    image.source = "FILE"
    image.filepath_raw = f"//{name}_texture.png"
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
