"""The glTF export: structure, skinning data, axes, animations and a Blender round trip."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import fast_simplification
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from photo_avatar.core import skinning
from photo_avatar.core.avatar import Avatar
from photo_avatar.core.camera import Camera
from photo_avatar.core.export_glb import write_glb
from photo_avatar.core.progress import PhotoError

Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
SIZES = {5126: 4, 5123: 2, 5125: 4}
DTYPES = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}


@pytest.fixture(scope="module")
def avatar(body) -> Avatar:
    """A small avatar: the decimated rest body, its weights cut to four bones, planar uv,
    a gradient texture and two random photo poses."""
    rest = body.rest(body.default_phenotype)
    dense = rest.vertices[0].numpy()
    vertices, faces = fast_simplification.simplify(
        dense, body.faces.astype(np.int32), target_count=3000
    )
    weights = body.skin_weights.numpy()[cKDTree(dense).query(vertices)[1]]
    weak = np.argsort(-weights, axis=1)[:, 4:]
    np.put_along_axis(weights, weak, 0.0, axis=1)
    weights /= weights.sum(1, keepdims=True)
    low, high = vertices.min(0), vertices.max(0)
    uv = np.stack([(vertices[:, 0] - low[0]) / (high[0] - low[0]),
                   (high[2] - vertices[:, 2]) / (high[2] - low[2])], 1)  # fmt: skip
    texture = np.zeros((32, 32, 3), np.uint8)
    texture[..., 0] = np.arange(32)[None] * 8
    texture[..., 1] = np.arange(32)[:, None] * 8
    g = torch.Generator().manual_seed(0)
    poses = skinning.axis_angle_to_matrix(
        0.4 * torch.randn(2, len(body.bone_names), 3, generator=g)
    )
    return Avatar(
        vertices=vertices.astype(np.float32),
        faces=faces.astype(np.int32),
        weights=weights.astype(np.float32),
        uv=uv.astype(np.float32),
        texture=texture,
        bone_names=list(body.bone_names),
        parents=list(body.parents),
        bone_matrices=rest.bone_matrices[0].numpy(),
        bone_tails=rest.tails[0].numpy(),
        photo_poses=poses.numpy(),
        cameras=[Camera.looking_at_person(64, 64)] * 2,
        photo_names=["front.jpg", "side.jpg"],
    )


@pytest.fixture(scope="module")
def glb(avatar, tmp_path_factory) -> Path:
    return write_glb(avatar, tmp_path_factory.mktemp("glb") / "avatar.glb")


def _read(path: Path) -> tuple[dict, bytes]:
    """The JSON and the binary chunk of a .glb, checking the container on the way."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_kind = struct.unpack_from("<I4s", data, 12)
    assert json_kind == b"JSON" and json_length % 4 == 0
    gltf = json.loads(data[20 : 20 + json_length])
    bin_length, bin_kind = struct.unpack_from("<I4s", data, 20 + json_length)
    assert bin_kind == b"BIN\0" and bin_length % 4 == 0
    start = 28 + json_length
    assert start + bin_length == len(data)
    return gltf, data[start : start + bin_length]


def _array(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    accessor = gltf["accessors"][index]
    view = gltf["bufferViews"][accessor["bufferView"]]
    components = COMPONENTS[accessor["type"]]
    start = view["byteOffset"] + accessor.get("byteOffset", 0)
    count = accessor["count"] * components
    values = np.frombuffer(binary, DTYPES[accessor["componentType"]], count, start)
    return values.reshape(accessor["count"], components)


def _globals(gltf: dict, rotations: dict[int, list[float]] | None = None) -> dict[int, np.ndarray]:
    """Global 4x4 matrix of every node from its TRS (rotations overridden per node)."""
    rotations = rotations or {}
    parent = {c: i for i, node in enumerate(gltf["nodes"]) for c in node.get("children", [])}
    out: dict[int, np.ndarray] = {}

    def world(i: int) -> np.ndarray:
        if i not in out:
            node = gltf["nodes"][i]
            local = np.eye(4)
            local[:3, :3] = Rotation.from_quat(
                rotations.get(i, node.get("rotation", [0, 0, 0, 1]))
            ).as_matrix()
            local[:3, 3] = node.get("translation", [0, 0, 0])
            out[i] = world(parent[i]) @ local if i in parent else local
        return out[i]

    for i in range(len(gltf["nodes"])):
        world(i)
    return out


def test_glb_loads_in_trimesh_with_the_vertices_and_the_texture(avatar, glb):
    scene = trimesh.load(glb, force="scene")
    meshes = list(scene.geometry.values())
    assert len(meshes) == 1
    mesh = meshes[0]
    assert len(mesh.vertices) == len(avatar.vertices)
    assert len(mesh.faces) == len(avatar.faces)
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    np.testing.assert_array_equal(image, avatar.texture)
    np.testing.assert_allclose(mesh.visual.uv[:, 0], avatar.uv[:, 0], atol=1e-6)


def test_buffers_and_accessors_are_consistent(avatar, glb):
    gltf, binary = _read(glb)
    assert gltf["buffers"][0]["byteLength"] <= len(binary)
    for view in gltf["bufferViews"]:
        assert view["byteOffset"] % 4 == 0
        assert view["byteOffset"] + view["byteLength"] <= gltf["buffers"][0]["byteLength"]
    for accessor in gltf["accessors"]:
        view = gltf["bufferViews"][accessor["bufferView"]]
        size = SIZES[accessor["componentType"]] * COMPONENTS[accessor["type"]]
        assert accessor.get("byteOffset", 0) + accessor["count"] * size <= view["byteLength"]
    attributes = gltf["meshes"][0]["primitives"][0]["attributes"]
    for name in ("POSITION", "NORMAL", "TEXCOORD_0", "JOINTS_0", "WEIGHTS_0"):
        assert gltf["accessors"][attributes[name]]["count"] == len(avatar.vertices)
    indices = _array(gltf, binary, gltf["meshes"][0]["primitives"][0]["indices"])
    assert len(indices) == avatar.faces.size and indices.max() < len(avatar.vertices)
    positions = _array(gltf, binary, attributes["POSITION"])
    np.testing.assert_allclose(positions, avatar.vertices @ Y_UP.T, atol=1e-6)
    normals = _array(gltf, binary, attributes["NORMAL"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)


def test_skin_weights_are_four_sorted_normalised_influences(avatar, glb):
    gltf, binary = _read(glb)
    attributes = gltf["meshes"][0]["primitives"][0]["attributes"]
    joints = _array(gltf, binary, attributes["JOINTS_0"])
    weights = _array(gltf, binary, attributes["WEIGHTS_0"])
    assert joints.max() < len(avatar.bone_names) == len(gltf["skins"][0]["joints"])
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-3)
    assert (np.diff(weights, axis=1) <= 0).all()
    dense = np.zeros_like(avatar.weights)
    rows = np.repeat(np.arange(len(joints)), 4)
    np.add.at(dense, (rows, joints.ravel().astype(int)), weights.ravel())  # empty slots add 0
    np.testing.assert_allclose(dense, avatar.weights, atol=1e-5)


def test_joints_sit_at_the_bones_and_inverse_binds_undo_them(avatar, glb):
    gltf, binary = _read(glb)
    skin = gltf["skins"][0]
    assert "children" not in gltf["nodes"][0] and all(
        0 not in n.get("children", []) for n in gltf["nodes"]
    )
    order = {node: k for k, node in enumerate(skin["joints"])}
    for k, node in enumerate(skin["joints"]):  # parents before children
        assert all(order[c] > k for c in gltf["nodes"][node].get("children", []))
    world = _globals(gltf)
    inverse_bind = _array(gltf, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4)
    for j, node in enumerate(skin["joints"]):
        assert gltf["nodes"][node]["name"] == avatar.bone_names[j]
        # Column-major storage: the transpose of each stored block is the matrix.
        np.testing.assert_allclose(world[node] @ inverse_bind[j].T, np.eye(4), atol=1e-5)
        np.testing.assert_allclose(
            world[node][:3, :3], Y_UP @ avatar.bone_matrices[j, :3, :3], atol=1e-5
        )
        np.testing.assert_allclose(
            world[node][:3, 3], Y_UP @ avatar.bone_matrices[j, :3, 3], atol=1e-5
        )


def test_each_photo_pose_is_an_animation_reproducing_forward_kinematics(avatar, glb):
    gltf, binary = _read(glb)
    assert [a["name"] for a in gltf["animations"]] == avatar.photo_names
    bind = torch.as_tensor(avatar.bone_matrices)[None]
    for n, animation in enumerate(gltf["animations"]):
        rotations = {}
        for channel in animation["channels"]:
            assert channel["target"]["path"] == "rotation"
            sampler = animation["samplers"][channel["sampler"]]
            rotations[channel["target"]["node"]] = _array(gltf, binary, sampler["output"])[0]
        world = _globals(gltf, rotations)
        expected = skinning.forward_kinematics(
            bind, avatar.parents, torch.as_tensor(avatar.photo_poses[n : n + 1])
        )[0].numpy()
        for j, node in enumerate(gltf["skins"][0]["joints"]):
            np.testing.assert_allclose(world[node][:3, :3], Y_UP @ expected[j, :3, :3], atol=1e-5)
            np.testing.assert_allclose(world[node][:3, 3], Y_UP @ expected[j, :3, 3], atol=1e-5)


def test_missing_folder_raises_and_leaves_no_file(avatar, tmp_path):
    target = tmp_path / "missing" / "avatar.glb"
    with pytest.raises(PhotoError, match=r"avatar\.glb"):
        write_glb(avatar, target)
    assert not target.parent.exists()


def test_unwritable_target_raises_and_leaves_no_partial_file(avatar, tmp_path):
    target = tmp_path / "avatar.glb"
    target.mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(PhotoError, match=r"avatar\.glb"):
        write_glb(avatar, target)
    assert [p.name for p in tmp_path.iterdir()] == ["avatar.glb"] and target.is_dir()


@pytest.mark.slow
def test_blender_imports_the_rig_and_poses_it_like_forward_skin(avatar, glb):
    bpy = pytest.importorskip("bpy")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(glb))
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    # Skinned meshes only: the importer also makes an icosphere to draw bones with.
    meshes = [o for o in bpy.data.objects if any(m.type == "ARMATURE" for m in o.modifiers)]
    assert len(armatures) == 1 and len(meshes) == 1
    armature, mesh = armatures[0], meshes[0]
    assert sorted(b.name for b in armature.data.bones) == sorted(avatar.bone_names)
    assert {g.name for g in mesh.vertex_groups} <= set(avatar.bone_names)
    assert len(mesh.vertex_groups) > 0.8 * len(avatar.bone_names)
    for j, name in enumerate(avatar.bone_names):  # bones keep their frames (+Y along the bone)
        frame = np.array(armature.data.bones[name].matrix_local)
        np.testing.assert_allclose(frame, avatar.bone_matrices[j], atol=1e-4)

    def evaluated() -> np.ndarray:
        depsgraph = bpy.context.evaluated_depsgraph_get()
        obj = mesh.evaluated_get(depsgraph)
        data = obj.to_mesh()
        points = np.array([obj.matrix_world @ v.co for v in data.vertices])
        obj.to_mesh_clear()
        return points

    armature.data.pose_position = "REST"
    bpy.context.scene.frame_set(1)
    rest = evaluated()
    distance, ours = cKDTree(avatar.vertices).query(rest)
    assert distance.max() < 1e-4  # Blender's Z-up world is ours again

    # The importer makes one action per glTF animation (and NLA tracks): play only the first.
    action = bpy.data.actions[avatar.photo_names[0]]
    animation = armature.animation_data or armature.animation_data_create()
    for track in animation.nla_tracks:
        track.mute = True
    animation.action = action
    if hasattr(animation, "action_slot") and action.slots:
        animation.action_slot = action.slots[0]
    armature.data.pose_position = "POSE"
    bpy.context.scene.frame_set(1)
    posed = evaluated()
    transforms = skinning.skinning_transforms(
        skinning.forward_kinematics(
            torch.as_tensor(avatar.bone_matrices)[None], avatar.parents,
            torch.as_tensor(avatar.photo_poses[:1]),
        ),
        torch.as_tensor(avatar.bone_matrices)[None],
    )  # fmt: skip
    expected = skinning.forward_skin(
        torch.as_tensor(avatar.vertices), torch.as_tensor(avatar.weights), transforms
    )[0].numpy()
    assert np.abs(posed - rest).max() > 0.1  # the animation really moved the mesh
    assert np.linalg.norm(posed - expected[ours], axis=1).max() < 0.01
