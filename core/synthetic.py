"""Synthetic people with ground truth: anny bodies of random shape and pose, dressed in
simple clothes, rendered to photos with masks and depth.

Used by the tests, the demo sample, the benchmarks and network training. Everything is
seeded and deterministic. People stand in the body model's own frame (metres, Z up, facing
-Y, anny's feet at z ≈ -0.82), so `body_vertices` is exactly
`body.pose(body.rest(phenotype), pose)`; cameras carry the placement.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
import trimesh
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from . import garments as g
from .avatar import KEYPOINT_NAMES
from .body_model import BodyModel, Rest, load_body_model
from .camera import DEFAULT_FOV_DEGREES, Camera
from .raster import render_depth
from .skinning import axis_angle_to_matrix, forward_kinematics

GARMENTS = ("tight", "loose_top", "skirt", "dress", "trousers")
POSES = ("random", "hanging", "a", "t")
HANGING_DEGREES = (3.0, 10.0)
"""Range of the arms' angle from the body in the 'hanging' pose: against it, or nearly."""

_FEET_Z = -0.82
"""Height of the soles in anny's frame, whatever the stature."""
_NOMINAL_STATURE = 1.74
_FILL = 0.75
"""Share of the image height a person of nominal stature fills in `sample_cameras`."""

_SKIN = np.array([[255, 224, 196], [241, 194, 167], [224, 172, 140], [198, 134, 100],
                  [160, 104, 72], [115, 74, 50], [80, 52, 38]], np.float32)  # fmt: skip
_HAIR = np.array([[28, 24, 22], [58, 40, 30], [98, 68, 44], [185, 150, 100],
                  [120, 56, 34], [150, 148, 145]], np.float32)  # fmt: skip


@dataclass
class SyntheticPerson:
    """A clothed person and its ground truth.

    phenotype (1, P) float32 in [0, 1]; pose (J, 3, 3) float32 local rotations;
    vertices (V, 3) float32 metres, the posed clothed outer surface (closed); faces (F, 3)
    int32; colors (V, 3) uint8 albedo; body_vertices (Vb, 3) and body_faces (Fb, 3) the
    naked posed body; weights (V, J) float32 skinning of the clothed surface, rows sum to 1.
    """

    rig: str
    garment: str
    phenotype: np.ndarray
    pose: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    body_vertices: np.ndarray
    body_faces: np.ndarray
    weights: np.ndarray

    def posed_vertices(self) -> np.ndarray:
        """(V, 3) the clothed surface as posed (the benchmarks' ground truth)."""
        return self.vertices


@dataclass
class SyntheticPhoto:
    """image (H, W, 3) uint8 RGB; mask (H, W) bool; front, back (H, W) float32 camera z in
    metres of the nearest and farthest surface, inf outside the mask."""

    image: np.ndarray
    mask: np.ndarray
    front: np.ndarray
    back: np.ndarray
    camera: Camera


def make_person(
    seed: int, rig: str = "mixamo", garment: str | None = None, pose: str = "random"
) -> SyntheticPerson:
    """A random adult: phenotype, pose (one of `POSES`), clothes (`garment`, drawn
    from the seed when None), skin, cloth and hair colours, all from `seed`. The same seed
    gives the same body and pose whatever the garment."""
    if pose not in POSES:
        raise ValueError(f"pose must be one of {', '.join(POSES)}, not {pose!r}")
    if garment is None:
        garment = GARMENTS[np.random.default_rng([seed, 2]).integers(len(GARMENTS))]
    if garment not in GARMENTS:
        raise ValueError(f"unknown garment {garment!r}; choose one of {', '.join(GARMENTS)}")
    body = load_body_model(rig)
    phenotype = _random_phenotype(body, np.random.default_rng([seed, 0]))
    with torch.no_grad():
        rest = body.rest(torch.as_tensor(phenotype))
        rotations = _random_pose(body, rest, np.random.default_rng([seed, 1]), pose)
        posed = body.pose(rest, rotations)
    body_vertices = posed.vertices[0].numpy().astype(np.float64)
    anatomy = g.measure_anatomy(body, rest.vertices[0].numpy(), rest.heads[0].numpy())
    looks = np.random.default_rng([seed, 3])
    female = phenotype[0, body.phenotype_names.index("gender")] > 0.5
    layers, solids = _outfit(garment, anatomy, body, body_vertices, posed.landmarks[0].numpy(),
                             female, looks)  # fmt: skip
    surface = g.clothe(body_vertices, body.faces, layers, solids, np.random.default_rng([seed, 4]))
    colors = _paint(surface, anatomy, body, garment, looks)
    return SyntheticPerson(
        rig=rig,
        garment=garment,
        phenotype=phenotype,
        pose=rotations[0].numpy().astype(np.float32),
        vertices=surface.vertices,
        faces=surface.faces,
        colors=colors,
        body_vertices=body_vertices.astype(np.float32),
        body_faces=body.faces.astype(np.int32),
        weights=_carry_weights(surface, body),
    )


def _random_phenotype(body: BodyModel, rng: np.random.Generator) -> np.ndarray:
    """(1, P) float32: an adult of either sex, with a stature drawn from adult statistics
    and moderate age, muscle, weight and proportions (anny: gender 0 male, 1 female; age
    2/3 is a young adult, 1 old)."""
    female = rng.random() < 0.5
    values = {
        "gender": rng.uniform(0.8, 1.0) if female else rng.uniform(0.0, 0.2),
        "age": rng.uniform(0.62, 0.92),
        "muscle": rng.uniform(0.25, 0.75),
        "weight": rng.uniform(0.2, 0.75),
        "proportions": rng.uniform(0.3, 0.7),
    }
    stature = np.clip(rng.normal(1.63, 0.065) if female else rng.normal(1.76, 0.07), 1.5, 1.95)
    names = body.phenotype_names
    base = np.array([[values.get(n, 0.5) for n in names]] * 2, np.float32)
    height = names.index("height")
    base[:, height] = [0.2, 0.6]
    with torch.no_grad():
        z = body.rest(torch.as_tensor(base)).vertices[..., 2]
    tall = (z.amax(1) - z.amin(1)).numpy()
    # Stature is linear in the height parameter (two blend shapes).
    base[0, height] = np.clip(0.2 + 0.4 * (stature - tall[0]) / (tall[1] - tall[0]), 0.02, 0.98)
    return base[:1]


def _random_pose(body: BodyModel, rest: Rest, rng: np.random.Generator, kind: str) -> torch.Tensor:
    """(1, J, 3, 3) local rotations. 'a' / 't' are the canonical rest poses; 'random' is a
    relaxed stand from the A pose: arms 20–65° from the body with elbows a little bent,
    legs slightly apart, small spine and head turns. Arms are opened further until the
    forearms and hands clear the torso and legs by 6 cm. 'hanging' is the same stand with
    the arms let down against the body (`HANGING_DEGREES`), as people stand for a photo."""
    start = body.rest_pose_rotations(rest, "t" if kind == "t" else "a")
    if kind not in ("random", "hanging"):
        return start
    joint = body.joint_bones
    skull = g.head_bone(body)
    chest_path = _ancestors(body, joint["left_shoulder"])
    chest = next(b for b in chest_path if b in _ancestors(body, joint["right_shoulder"]))
    spine = [b for b in _ancestors(body, chest) if b not in _ancestors(body, joint["left_hip"])]
    draw = {
        "spine": (rng.uniform(-5, 6), rng.uniform(-3, 3), rng.uniform(-8, 8)),
        "head": (rng.uniform(-8, 10), rng.uniform(-4, 4), rng.uniform(-15, 15)),
        "arm": rng.uniform(20, 50, 2),
        "swing": rng.uniform(-8, 18, 2),
        "elbow": rng.uniform(5, 30, 2),
        "hip": rng.uniform(2, 6, 2),
        "hip_flex": rng.uniform(-6, 10, 2),
        "knee": rng.uniform(0, 12, 2),
    }
    if kind == "hanging":
        draw["arm"] = np.interp(draw["arm"], (20, 50), HANGING_DEGREES)
        return _relaxed_stand(body, rest, start, draw, np.zeros(2), spine, skull)
    extra = np.zeros(2)
    for _ in range(6):
        rotations = _relaxed_stand(body, rest, start, draw, extra, spine, skull)
        gaps = arm_clearance(body, body.pose(rest, rotations).vertices[0].numpy())
        if (gaps >= 0.06).all():
            break
        extra += np.where(gaps < 0.06, 6.0, 0.0)
    return rotations


def arm_clearance(body: BodyModel, vertices: np.ndarray) -> np.ndarray:
    """(2,) metres from the left and right forearm and hand to the rest of the body (torso,
    head and legs), for the body's posed `vertices` (V, 3)."""
    weights = body.skin_weights.numpy()
    joint = body.joint_bones
    arms = sum(
        weights[:, g.subtree(body, joint[f"{s}_shoulder"])].sum(1) for s in ("left", "right")
    )
    others = cKDTree(vertices[arms < 0.05])
    forearms = [weights[:, g.subtree(body, joint[f"{s}_elbow"])].sum(1) > 0.5
                for s in ("left", "right")]  # fmt: skip
    return np.array([others.query(vertices[f])[0].min() for f in forearms])


def _relaxed_stand(body, rest, start, draw, extra, spine, skull) -> torch.Tensor:
    """The random pose of `_random_pose` for one set of draws; `extra` (2,) degrees opens
    the left and right arm further."""
    rotations = start.clone()

    def turn(bone: int, axis, degrees: float) -> None:
        # Rotate the bone about a world axis through its head, in the current pose.
        frame = forward_kinematics(rest.bone_matrices, body.parents, rotations)[0, bone, :3, :3]
        carried = frame @ rotations[0, bone].T
        axis = torch.as_tensor(np.asarray(axis, np.float32))
        world = axis_angle_to_matrix(axis / axis.norm() * math.radians(degrees))
        rotations[0, bone] = carried.T @ world @ carried @ rotations[0, bone]

    def head_of(bone: int) -> torch.Tensor:
        return forward_kinematics(rest.bone_matrices, body.parents, rotations)[0, bone, :3, 3]

    bend, side, twist = draw["spine"]
    for bone in spine:
        turn(bone, (1, 0, 0), -bend / len(spine))
        turn(bone, (0, 1, 0), side / len(spine))
        turn(bone, (0, 0, 1), twist / len(spine))
    pitch, roll, yaw = draw["head"]
    turn(skull, (1, 0, 0), -pitch)
    turn(skull, (0, 1, 0), roll)
    turn(skull, (0, 0, 1), yaw)
    joint = body.joint_bones
    for k, (s, sign) in enumerate((("left", 1.0), ("right", -1.0))):
        # The A pose holds the arms 45° from the body; turning about ±Y lowers them.
        opened = min(draw["arm"][k] + extra[k], 65.0)
        turn(joint[f"{s}_shoulder"], (0, sign, 0), 45.0 - opened)
        turn(joint[f"{s}_shoulder"], (1, 0, 0), -draw["swing"][k])
        upper = head_of(joint[f"{s}_elbow"]) - head_of(joint[f"{s}_shoulder"])
        hinge = torch.linalg.cross(upper, torch.tensor([0.0, -1.0, 0.0]))
        turn(joint[f"{s}_elbow"], hinge.numpy(), draw["elbow"][k])
        turn(joint[f"{s}_hip"], (0, -sign, 0), draw["hip"][k])
        turn(joint[f"{s}_hip"], (1, 0, 0), -draw["hip_flex"][k])
        turn(joint[f"{s}_knee"], (1, 0, 0), draw["knee"][k])
    return rotations


def _ancestors(body: BodyModel, bone: int) -> list[int]:
    """`bone` and its ancestors up to the root."""
    chain = []
    while bone >= 0:
        chain.append(bone)
        bone = body.parents[bone]
    return chain


def _outfit(garment, a, body, posed, landmarks, female, rng):
    """The layers and solids of `garment`, with hair and shoes; sizes from `rng`."""
    lv = a.levels
    waist = lv["hip"] + rng.uniform(0.07, 0.13)
    sleeve = rng.choice([0.02, rng.uniform(0.08, 0.16), lv["arm"] - rng.uniform(0.0, 0.06)])
    neck = (rng.uniform(0.02, 0.05), rng.uniform(0.0, 0.08))
    trousers = lv["leg"] - rng.uniform(0.0, 0.05)
    bottom_length = rng.choice([trousers, rng.uniform(0.15, 0.3)])
    knee = min(landmarks[body.landmark_names.index(f"{s}_knee")][2] for s in ("left", "right"))
    skirt_args = (lv["hip"] + rng.uniform(0.09, 0.13), knee - rng.uniform(0.0, 0.2),
                  rng.uniform(0.015, 0.03), rng.uniform(0.05, 0.3))  # fmt: skip
    layers: list[g.Layer]
    solids: list[g.Solid] = []
    if garment == "tight":
        layers = [
            g.Layer("top", 0.003, g.top_reach(a, waist - 0.02, sleeve, *neck)),
            g.Layer("bottom", 0.0025, g.bottom_reach(a, waist, bottom_length)),
        ]
    elif garment == "loose_top":
        hem = lv["hip"] + rng.uniform(-0.06, 0.05)
        sleeve = rng.uniform(0.1, lv["upper_arm"])
        layers = [
            g.Layer("top", rng.uniform(0.015, 0.03), g.top_reach(a, hem, sleeve, *neck)),
            g.Layer("bottom", rng.uniform(0.006, 0.01), g.bottom_reach(a, waist, trousers)),
        ]
    elif garment == "trousers":
        layers = [
            g.Layer("top", rng.uniform(0.005, 0.009), g.top_reach(a, waist - 0.03, sleeve, *neck)),
            g.Layer("bottom", rng.uniform(0.01, 0.02), g.bottom_reach(a, waist, trousers)),
        ]
    else:
        dress = garment == "dress"
        sleeve = min(sleeve, 0.16) if dress else sleeve
        top = g.top_reach(a, skirt_args[0] - 0.03, sleeve, *neck)
        layers = [
            g.Layer("top", rng.uniform(0.006, 0.012) if dress else 0.005, top),
            g.Layer("bottom", 0.004, g.bottom_reach(a, skirt_args[0], 0.1)),
        ]
        solids.append(g.skirt_solid("bottom", posed, a, *skirt_args))
    long_hair = rng.random() < (0.75 if female else 0.1)
    layers.append(g.Layer("hair", rng.uniform(0.008, 0.02), g.hair_reach(a, rng.uniform(0, 0.03))))
    layers.append(
        g.Layer("shoes", rng.uniform(0.006, 0.01), g.shoe_reach(a, rng.uniform(0.01, 0.05)))
    )
    if long_hair:
        ears = 0.5 * (
            posed[body.vertex_landmarks["left_ear"]] + posed[body.vertex_landmarks["right_ear"]]
        )
        crown = posed[a.head > 0.5][posed[a.head > 0.5, 2].argmax()]
        end = lv["shoulder"] - rng.uniform(-0.05, 0.15)
        solids.append(g.long_hair_solid(crown, ears, end, rng.uniform(0.07, 0.09)))
    return layers, solids


def _paint(
    surface: g.ClothedSurface, a: g.Anatomy, body: BodyModel, garment: str, rng: np.random.Generator
) -> np.ndarray:
    """(V, 3) uint8 albedo: skin with eyes, brows and lips; cloth in one or two colours,
    plain, striped or checked, the pattern fixed on the rest body; hair; shoes."""
    corners = body.faces[surface.body_face]
    weights = surface.body_bary[..., None]
    skin = _mix(_SKIN, rng.random())
    hair = _mix(_HAIR, rng.random()) * rng.uniform(0.85, 1.15)
    colors = (_face_paint(body, a.rest, skin, hair)[corners] * weights).sum(1)
    # Patterns sit on the rest body; a skirt, far from any one leg, carries its own.
    rest = np.where(surface.on_solid[:, None], surface.vertices, (a.rest[corners] * weights).sum(1))
    rest = g.smooth_along(surface.faces, rest, 2)
    top = _cloth(rest, rng)
    bottom = top if garment == "dress" else _cloth(rest, rng)
    shoes = _mix(np.array([[25, 22, 20], [70, 45, 30], [225, 225, 220]], np.float32), rng.random())
    strands = hair * rng.uniform(0.88, 1.12, (len(colors), 1))
    for name, value in (("top", top), ("bottom", bottom), ("hair", strands)):
        chosen = surface.label == g.LABELS.index(name)
        colors[chosen] = value[chosen]
    colors[surface.label == g.LABELS.index("shoes")] = shoes
    return np.clip(colors, 0, 255).astype(np.uint8)


def _mix(palette: np.ndarray, t: float) -> np.ndarray:
    """(3,) a colour at `t` in [0, 1] along a palette's rows, linearly interpolated."""
    x = t * (len(palette) - 1)
    i = min(int(x), len(palette) - 2)
    return palette[i] + (x - i) * (palette[i + 1] - palette[i])


def _cloth(rest: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) float cloth colour at rest-body points (N, 3): a random colour, plain or with
    soft stripes or 3D checks of a second colour (soft so the mesh does not alias them)."""
    base = np.array(
        colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.15, 0.9))
    )
    other = np.array(
        colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.2, 1.0))
    )
    period = rng.uniform(0.05, 0.12)
    wave = np.sin(2 * np.pi * rest / period + rng.uniform(0, 2 * np.pi, 3))
    pattern = rng.choice(["plain", "stripes", "checks"], p=[0.4, 0.3, 0.3])
    if pattern == "plain":
        share = np.zeros(len(rest))
    elif pattern == "stripes":
        share = np.clip(wave[:, 2] * 1.5 + 0.5, 0, 1)
    else:
        share = np.clip(wave.prod(1) * 3 + 0.5, 0, 1)
    return 255 * (base + share[:, None] * (other - base))


def _face_paint(
    body: BodyModel, rest: np.ndarray, skin: np.ndarray, hair: np.ndarray
) -> np.ndarray:
    """(Vb, 3) float body colours: skin, the eyeballs (anny's small closed pieces left and
    right of the nose) white with a dark iris, brows in the hair colour, reddish lips."""
    colors = np.tile(skin, (len(rest), 1))
    edges = np.concatenate([body.faces[:, [0, 1]], body.faces[:, [1, 2]]])
    graph = sparse.coo_matrix((np.ones(len(edges)), edges.T), shape=(len(rest),) * 2)
    _, piece = connected_components(graph, directed=False)
    main = np.bincount(piece).argmax()
    nose = rest[body.vertex_landmarks["nose"]]
    for p in np.unique(piece):
        part = piece == p
        centre = rest[part].mean(0)
        if p == main or abs(centre[0]) < 0.01 or centre[2] < nose[2]:
            continue
        colors[part] = [225, 220, 210]
        front = part & (rest[:, 1] < rest[part, 1].min() + 0.005)
        colors[front] = [70, 50, 35]
        brow = (piece == main) & (np.abs(rest[:, 0] - centre[0]) < 0.022) & (rest[:, 1] < centre[1])
        brow &= (rest[:, 2] > centre[2] + 0.014) & (rest[:, 2] < centre[2] + 0.024)
        colors[brow] = 0.6 * hair + 0.4 * skin * 0.5
    lips = (piece == main) & (np.abs(rest[:, 0]) < 0.024) & (rest[:, 1] < nose[1] + 0.035)
    lips &= np.abs(rest[:, 2] - (nose[2] - 0.035)) < 0.006
    colors[lips] = skin * np.array([0.88, 0.68, 0.68])
    return colors


def _carry_weights(surface: g.ClothedSurface, body: BodyModel) -> np.ndarray:
    """(V, J) float32 skinning of the clothed surface: the nearest body point's weights,
    then diffused along the surface so skirts and sleeves blend between bones."""
    weights = body.skin_weights.numpy()[body.faces[surface.body_face]]
    out = g.smooth_along(surface.faces, (weights * surface.body_bary[..., None]).sum(1), 8)
    return (out / out.sum(1, keepdims=True)).astype(np.float32)


def sample_cameras(
    n: int,
    width: int = 512,
    height: int = 640,
    seed: int = 0,
    person: SyntheticPerson | None = None,
    frontal: bool = False,
    pitch: tuple[float, float] | None = None,
) -> list[Camera]:
    """`n` cameras around the person at evenly spaced yaws from a seeded start (one
    camera, or `frontal`: within 20° of frontal, so that the n views of a seed are among
    its 2n views; else anywhere), 40° vertical field of view, framing a person of nominal
    stature to about 75% of the image height — or, given `person`, framing that person's
    whole clothed surface (arms included) with a margin. Level, or given `pitch` (low,
    high), each tilted down by an angle drawn from that range in degrees (from a stream of
    its own, so level sets of a seed stay what they were)."""
    rng = np.random.default_rng([seed, 5])
    tilt = np.random.default_rng([seed, 8])
    start = rng.uniform(-20, 20) if n == 1 or frontal else rng.uniform(-180, 180)
    low, top, reach = _FEET_Z, _FEET_Z + _NOMINAL_STATURE, 0.0
    if person is not None:
        low, top = float(person.vertices[:, 2].min()), float(person.vertices[:, 2].max())
        reach = float(np.hypot(person.vertices[:, 0], person.vertices[:, 1]).max())
    span = max((top - low) / _FILL, 2 * reach / 0.9 * height / width)
    cameras = []
    for k in range(n):
        yaw = (start + 360.0 * k / n + 180) % 360 - 180
        distance = span / (2 * math.tan(math.radians(DEFAULT_FOV_DEGREES) / 2))
        distance *= rng.uniform(0.97, 1.03)
        centre = (0.0, 0.0, 0.5 * (low + top) + rng.uniform(-0.03, 0.03))
        down = float(tilt.uniform(*pitch)) if pitch is not None else 0.0
        cameras.append(
            Camera.looking_at_person(
                width, height, yaw, distance, DEFAULT_FOV_DEGREES, centre, pitch_degrees=down
            )
        )
    return cameras


def true_keypoints(
    body: BodyModel, person: SyntheticPerson, cameras: list[Camera]
) -> list[np.ndarray]:
    """Per camera, (K, 3) u, v, confidence 1 of the body's landmarks named in
    `KEYPOINT_NAMES`, posed as the person stands (once for all cameras) and projected (0 for
    names the body lacks): the perception a perfect detector would give, so that a test or
    benchmark measures what comes after it."""
    with torch.no_grad():
        rest = body.rest(torch.as_tensor(person.phenotype))
        landmarks = body.pose(rest, torch.as_tensor(person.pose)[None]).landmarks[0]
    found = [(k, body.landmark_names.index(n)) for k, n in enumerate(KEYPOINT_NAMES)
             if n in body.landmark_names]  # fmt: skip
    out = []
    for camera in cameras:
        pixels = camera.project(landmarks).numpy()
        keypoints = np.zeros((len(KEYPOINT_NAMES), 3), np.float32)
        for k, i in found:
            keypoints[k] = (*pixels[i, :2], 1.0)
        out.append(keypoints)
    return out


def render_photo(
    person: SyntheticPerson, camera: Camera, seed: int = 0, background: str = "random"
) -> SyntheticPhoto:
    """A photo of `person`: Lambert shading of the albedo under a seeded key light from
    the camera's side and above, a weak fill and ambient light, in linear light; over a
    `background` ('random': seeded plain colour, gradient or noise; 'plain': grey; 'none':
    black); mild sensor noise."""
    if background not in ("random", "plain", "none"):
        raise ValueError(f"background must be 'random', 'plain' or 'none', not {background!r}")
    rng = np.random.default_rng([seed, 6])
    faces = torch.as_tensor(person.faces.astype(np.int64))
    depth = render_depth(camera, torch.as_tensor(person.vertices), person.faces)
    front = depth.front
    mask = front.mask.numpy()
    normals = np.array(trimesh.Trimesh(person.vertices, person.faces, process=False).vertex_normals)
    normal = front.interpolate(torch.as_tensor(normals, dtype=torch.float32), faces).numpy()
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-8)
    albedo = front.interpolate(torch.as_tensor(person.colors / 255.0, dtype=torch.float32), faces)
    albedo = albedo.numpy() ** 2.2
    # Camera axes: x right, y down, z forward; lights point from the surface to the lamp.
    key = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-1.0, -0.2), -1.0])
    fill = np.array([-key[0], 0.3, -1.0])
    key, fill = (camera.rotation.T @ (v / np.linalg.norm(v)) for v in (key, fill))
    shade = (
        rng.uniform(0.25, 0.4)
        + rng.uniform(0.6, 0.8) * np.clip(normal @ key, 0, None)
        + 0.15 * np.clip(normal @ fill, 0, None)
    )
    tint = 1 + rng.uniform(-0.05, 0.05, 3)
    person_rgb = np.clip(albedo * shade[..., None] * tint, 0, 1) ** (1 / 2.2) * 255
    image = np.where(mask[..., None], person_rgb, _background(background, camera, rng))
    image = image + rng.normal(0, rng.uniform(0.5, 2.5), image.shape)
    return SyntheticPhoto(
        image=np.clip(image, 0, 255).astype(np.uint8),
        mask=mask,
        front=front.depth.numpy(),
        back=depth.back.depth.numpy(),
        camera=camera,
    )


def _background(kind: str, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float background."""
    h, w = camera.height, camera.width
    if kind == "none":
        return np.zeros((h, w, 3))
    if kind == "plain":
        return np.full((h, w, 3), 128.0)
    # Muted colours, like walls, floors and out-of-focus rooms.
    colour = rng.uniform(45, 215) + rng.uniform(-30, 30, 3)
    style = rng.choice(["plain", "gradient", "noise"])
    if style == "plain":
        return np.broadcast_to(colour, (h, w, 3)).copy()
    if style == "gradient":
        other = rng.uniform(45, 215) + rng.uniform(-30, 30, 3)
        t = np.linspace(0, 1, h)[:, None, None]
        return np.broadcast_to(colour + t * (other - colour), (h, w, 3)).copy()
    # Mostly brightness blotches with a little colour, like a wall or foliage out of focus.
    size = (h // 32 + 2, w // 32 + 2)
    coarse = rng.normal(0, 1, (*size, 1)) + rng.normal(0, 0.3, (*size, 3))
    blotches = ndimage.zoom(coarse, (32, 32, 1), order=3)[:h, :w]
    return colour + rng.uniform(8, 25) * blotches
