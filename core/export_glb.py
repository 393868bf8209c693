"""Export: an `Avatar` -> one skinned, textured glTF 2.0 binary (.glb), written by hand.

Layout: node 0 is the mesh (at the scene root: glTF ignores a skinned mesh node's own
transform), nodes 1..J are the bones in the avatar's order (parents first). The rest pose
of the nodes is the avatar's canonical pose; each photo's pose is an animation named after
the photo, one rotation key per bone.

Axes change here: the avatar is Z up, glTF is Y up, so world points go through
C: (x, y, z) -> (x, z, -y). Bone frames are only left-multiplied (global' = C @ M), the way
Blender's own exporter does it, so each bone keeps its local axes (+Y along the bone): the
parent-relative transforms, the photo poses (local rotations) and a Blender round trip all
come out unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import uuid
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from .avatar import Avatar
from .progress import PhotoError

log = logging.getLogger(__name__)

MAX_INFLUENCES = 4
"""Bones per vertex a glTF JOINTS_0/WEIGHTS_0 pair holds."""
Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], np.float64)
"""C: our Z-up world -> glTF's Y-up world."""

_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


def write_glb(avatar: Avatar, path: Path | str) -> Path:
    """Write `avatar` as a skinned glTF binary at `path`, atomically (a failure leaves no
    file behind). Raises `PhotoError` when the file cannot be written there."""
    path = Path(path)
    data = _glb_bytes(avatar)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # os.open (not mkstemp) so the file gets the user's usual permissions (umask).
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise PhotoError(f"{path}: cannot write there ({error.strerror})") from error
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise PhotoError(f"{path}: cannot write there ({error.strerror})") from error
        raise
    log.info("wrote %s (%.1f MB)", path, len(data) / 1e6)
    return path


def _glb_bytes(avatar: Avatar) -> bytes:
    """The whole .glb file of `avatar` (JSON chunk + binary chunk)."""
    gltf, binary = _gltf(avatar)
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(text), b"JSON"),
            text,
            struct.pack("<I4s", len(binary), b"BIN\0"),
            binary,
        ]
    )


class _Buffer:
    """The binary chunk under construction, with its bufferViews and accessors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        """Append raw bytes (4-byte aligned) as a bufferView; returns its index."""
        pad = -self.length % 4
        self.parts.append(b"\0" * pad)
        self.length += pad
        view = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.parts.append(data)
        self.length += len(data)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, target: int | None = None, bounds: bool = False) -> int:
        """Append (N, C) or (N,) array (float32, uint16 or uint32) as an accessor."""
        array = np.ascontiguousarray(array)
        components = 1 if array.ndim == 1 else int(np.prod(array.shape[1:]))
        kind = {np.float32: _FLOAT, np.uint16: _UNSIGNED_SHORT, np.uint32: _UNSIGNED_INT}
        accessor = {
            "bufferView": self.view(array.tobytes(), target),
            "componentType": kind[array.dtype.type],
            "count": int(array.shape[0]),
            "type": _TYPES[components],
        }
        if bounds:
            flat = array.reshape(len(array), components)
            accessor["min"] = [float(x) for x in flat.min(0)]
            accessor["max"] = [float(x) for x in flat.max(0)]
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def _gltf(avatar: Avatar) -> tuple[dict, bytes]:
    """The glTF JSON document and its binary buffer."""
    rotation = Y_UP[:3, :3]
    vertices = np.asarray(avatar.vertices, np.float64)
    faces = np.asarray(avatar.faces, np.int64)
    joints, weights = _top_influences(np.asarray(avatar.weights, np.float64))
    buffer = _Buffer()
    attributes = {
        "POSITION": buffer.accessor(
            (vertices @ rotation.T).astype(np.float32), _ARRAY_BUFFER, bounds=True
        ),
        "NORMAL": buffer.accessor(
            (_smooth_normals(vertices, faces) @ rotation.T).astype(np.float32), _ARRAY_BUFFER
        ),
        "TEXCOORD_0": buffer.accessor(np.asarray(avatar.uv, np.float32), _ARRAY_BUFFER),
        "JOINTS_0": buffer.accessor(joints, _ARRAY_BUFFER),
        "WEIGHTS_0": buffer.accessor(weights, _ARRAY_BUFFER),
    }
    indices = buffer.accessor(faces.reshape(-1).astype(np.uint32), _ELEMENT_ARRAY_BUFFER)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(avatar.texture[..., ::-1]))
    if not ok:
        raise ValueError("could not encode the texture as PNG")
    image_view = buffer.view(png.tobytes())

    nodes, globals_ = _bone_nodes(avatar)
    inverse_bind = np.linalg.inv(globals_).transpose(0, 2, 1)  # glTF matrices: column-major
    skin = {
        "inverseBindMatrices": buffer.accessor(inverse_bind.reshape(-1, 16).astype(np.float32)),
        "joints": list(range(1, len(nodes) + 1)),
        "skeleton": 1 + avatar.parents.index(-1),
    }
    roots = [1 + j for j, p in enumerate(avatar.parents) if p < 0]
    gltf = {
        "asset": {"version": "2.0", "generator": "photo_avatar"},
        "scene": 0,
        "scenes": [
            {
                "name": "avatar",
                "nodes": [0, *roots],
                "extras": {"rig": avatar.rig, "rest_pose": avatar.rest_pose},
            }
        ],
        "nodes": [{"name": "avatar", "mesh": 0, "skin": 0}, *nodes],
        "meshes": [
            {
                "name": "avatar",
                "primitives": [
                    {"attributes": attributes, "indices": indices, "material": 0, "mode": 4}
                ],
            }
        ],
        "materials": [
            {
                "name": "avatar",
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0, "texCoord": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.9,
                },
            }
        ],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [
            {
                "magFilter": _LINEAR,
                "minFilter": _LINEAR_MIPMAP_LINEAR,
                "wrapS": _CLAMP_TO_EDGE,
                "wrapT": _CLAMP_TO_EDGE,
            }
        ],
        "images": [{"name": "avatar", "bufferView": image_view, "mimeType": "image/png"}],
        "skins": [skin],
    }
    animations = _animations(avatar, nodes, buffer)
    if animations:
        gltf["animations"] = animations
    gltf["accessors"] = buffer.accessors
    gltf["bufferViews"] = buffer.views
    gltf["buffers"] = [{"byteLength": buffer.length}]
    return gltf, b"".join(buffer.parts)


def _bone_nodes(avatar: Avatar) -> tuple[list[dict], np.ndarray]:
    """One glTF node per bone (parent-relative translation and rotation) and (J, 4, 4) the
    global bind matrices those nodes compose to, in glTF axes."""
    frames = np.asarray(avatar.bone_matrices, np.float64)
    nodes: list[dict] = []
    globals_ = np.zeros_like(frames)
    for j, p in enumerate(avatar.parents):
        local = Y_UP @ frames[j] if p < 0 else np.linalg.solve(frames[p], frames[j])
        quaternion = Rotation.from_matrix(local[:3, :3]).as_quat()  # x, y, z, w
        node = {
            "name": avatar.bone_names[j],
            "translation": [float(x) for x in local[:3, 3]],
            "rotation": [float(x) for x in quaternion],
        }
        # Rebuild the local matrix from what the node stores, so the inverse bind matrices
        # match the nodes exactly even if a frame was not perfectly orthonormal.
        exact = np.eye(4)
        exact[:3, :3] = Rotation.from_quat(quaternion).as_matrix()
        exact[:3, 3] = local[:3, 3]
        globals_[j] = exact if p < 0 else globals_[p] @ exact
        nodes.append(node)
    for j, p in enumerate(avatar.parents):
        if p >= 0:
            nodes[p].setdefault("children", []).append(1 + j)
    return nodes, globals_


def _animations(avatar: Avatar, nodes: list[dict], buffer: _Buffer) -> list[dict]:
    """One animation per photo: each bone's node rotation becomes its rest rotation followed
    by the photo's local rotation (`skinning.forward_kinematics`: rest_local @ R)."""
    poses = np.asarray(avatar.photo_poses, np.float64)
    if len(poses) == 0:
        return []
    time = buffer.accessor(np.zeros(1, np.float32), bounds=True)
    rest = Rotation.from_quat([node["rotation"] for node in nodes])
    animations = []
    for n, name in enumerate(avatar.photo_names):
        posed = (rest * Rotation.from_matrix(poses[n])).as_quat().astype(np.float32)
        samplers, channels = [], []
        for j, quaternion in enumerate(posed):
            output = buffer.accessor(quaternion[None])
            samplers.append({"input": time, "output": output, "interpolation": "LINEAR"})
            channels.append({"sampler": j, "target": {"node": 1 + j, "path": "rotation"}})
        animations.append({"name": name, "samplers": samplers, "channels": channels})
    return animations


def _top_influences(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, J) weights -> (V, 4) uint16 joints and (V, 4) float32 weights: the strongest
    four, heaviest first, renormalised; empty slots point at joint 0 with weight 0."""
    bones = weights.shape[1]
    if bones < MAX_INFLUENCES:
        weights = np.pad(weights, ((0, 0), (0, MAX_INFLUENCES - bones)))
    order = np.argsort(-weights, axis=1, kind="stable")[:, :MAX_INFLUENCES]
    top = np.clip(np.take_along_axis(weights, order, axis=1), 0.0, None)
    total = top.sum(1, keepdims=True)
    # A vertex without any weight follows the root rather than staying behind at the origin.
    top = np.where(total > 1e-8, top / np.maximum(total, 1e-8), np.eye(MAX_INFLUENCES)[0])
    order = np.where(top > 0, order, 0)
    if (total <= 1e-8).any():
        log.warning("%d vertices had no skinning weight; bound to bone 0", (total <= 1e-8).sum())
    top = top.astype(np.float32)
    top[:, 0] += 1.0 - top.sum(1)  # float32 rounding: sums of exactly one for validators
    return order.astype(np.uint16), top


def _smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals, area-weighted over the faces around each position, so the
    seam copies of a vertex share one normal and seams stay invisible in shading."""
    _, position = np.unique(vertices, axis=0, return_inverse=True)
    position = position.reshape(-1)
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    summed = np.zeros((position.max() + 1, 3))
    for k in range(3):
        np.add.at(summed, position[faces[:, k]], face_normals)
    normals = summed[position]
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 1e-12, normals / np.maximum(length, 1e-12), [0.0, 0.0, 1.0])
