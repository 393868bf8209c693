"""Simple clothes and hair on a posed body, meshed as one closed outer surface.

A garment is described on the body's skin — how far inside its region each body vertex lies
(`Layer.reach`) and how thick it is — plus solids that stand off the skin (a skirt, long
hair). The clothed surface is the zero level of

    min(body signed distance - layer thickness at the nearest skin point, solids...)

sampled on a voxel grid and meshed with marching cubes: closed, and containing the body by
construction. Coordinates: metres, the body model's world (Z up, facing -Y).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import fast_simplification
import numpy as np
import trimesh
from scipy import ndimage, sparse
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from .body_model import BodyModel

log = logging.getLogger(__name__)

LABELS = ("skin", "top", "bottom", "hair", "shoes")
"""What a clothed-surface vertex shows; `ClothedSurface.label` indexes this."""

VOXEL = 0.01
"""Grid spacing of the clothed surface, metres. Bare skin is put back on the body surface
afterwards, so faces keep their shape; fingers merge into mittens."""
_SPACING = 0.003
"""Mean spacing of the skin samples that stand in for the body surface, metres."""
_GAP = 1
"""Openings of the body this many voxels across or narrower are shut (mouth, nostrils)."""
_HEM = 0.012
"""Width of the thickness ramp at a garment's edge, metres: a bevelled hem, wide enough
that the nearest skin point along it, and so its colour, is well defined."""


@dataclass(frozen=True)
class Anatomy:
    """Where each body vertex sits, measured on the rest body (metres).

    arm, leg, head: (V,) share of the vertex's skinning on the arms, legs and head;
    arm_along, leg_along: (V,) distance along the limb from the shoulder or hip joint;
    head_angle: (V,) azimuth about the head (0 = front, ±pi = back);
    levels: heights (z) and limb lengths.
    """

    rest: np.ndarray
    arm: np.ndarray
    arm_along: np.ndarray
    leg: np.ndarray
    leg_along: np.ndarray
    head: np.ndarray
    head_angle: np.ndarray
    levels: dict[str, float]


@dataclass(frozen=True)
class Layer:
    """Cloth on the skin: `reach` (V,) metres inside the covered region (negative outside);
    `thickness` in metres; `label` one of `LABELS`."""

    label: str
    thickness: float
    reach: np.ndarray


@dataclass(frozen=True)
class Solid:
    """A volume standing off the skin: `sdf` maps (N, 3) points to (N,) signed distances
    (negative inside, roughly metres) and is only evaluated inside `bounds` (2, 3)."""

    label: str
    sdf: Callable[[np.ndarray], np.ndarray]
    bounds: np.ndarray


@dataclass(frozen=True)
class ClothedSurface:
    """The outer surface: vertices (N, 3) float32, faces (F, 3) int32, label (N,) index into
    `LABELS`, on_solid (N,) bool for vertices on a solid rather than a layer, and the
    nearest body point of each vertex as a body face (N,) with
    barycentrics (N, 3), for carrying skinning weights and colours over."""

    vertices: np.ndarray
    faces: np.ndarray
    label: np.ndarray
    on_solid: np.ndarray
    body_face: np.ndarray
    body_bary: np.ndarray


def subtree(body: BodyModel, bone: int) -> np.ndarray:
    """(J,) bool: `bone` and all its descendants (parents come before children)."""
    inside = np.zeros(len(body.parents), bool)
    inside[bone] = True
    for j in range(bone + 1, len(body.parents)):
        inside[j] = body.parents[j] >= 0 and inside[body.parents[j]]
    return inside


def head_bone(body: BodyModel) -> int:
    """The skull bone, whatever the rig: the bone that moves the nose most."""
    return int(body.skin_weights[body.vertex_landmarks["nose"]].argmax())


def measure_anatomy(body: BodyModel, rest_vertices: np.ndarray, heads: np.ndarray) -> Anatomy:
    """Per-vertex body coordinates on the rest body. rest_vertices (V, 3), heads (J, 3)."""
    weights = body.skin_weights.numpy()
    joint = {k: heads[b] for k, b in body.joint_bones.items()}
    share = {k: weights[:, subtree(body, b)].sum(1) for k, b in body.joint_bones.items()}

    def along(side: str, root: str, mid: str, end: str) -> np.ndarray:
        # Blend the projections on the upper and lower segment by the lower one's skinning.
        a, b, c = joint[f"{side}_{root}"], joint[f"{side}_{mid}"], joint[f"{side}_{end}"]
        upper = (rest_vertices - a) @ ((b - a) / np.linalg.norm(b - a))
        lower = np.linalg.norm(b - a) + (rest_vertices - b) @ ((c - b) / np.linalg.norm(c - b))
        w = share[f"{side}_{mid}"]
        return (1 - w) * upper + w * lower

    left_arm, right_arm = share["left_shoulder"], share["right_shoulder"]
    left_leg, right_leg = share["left_hip"], share["right_hip"]
    arm_along = np.where(
        left_arm > right_arm,
        along("left", "shoulder", "elbow", "wrist"),
        along("right", "shoulder", "elbow", "wrist"),
    )
    leg_along = np.where(
        left_leg > right_leg,
        along("left", "hip", "knee", "ankle"),
        along("right", "hip", "knee", "ankle"),
    )
    skull = head_bone(body)
    neck = heads[body.parents[skull]]
    ears = 0.5 * (
        rest_vertices[body.vertex_landmarks["left_ear"]]
        + rest_vertices[body.vertex_landmarks["right_ear"]]
    )
    x, y, z = rest_vertices.T
    limb = lambda a, b: float(np.linalg.norm(joint[f"left_{b}"] - joint[f"left_{a}"]))  # noqa: E731
    levels = {
        "hip": float(0.5 * (joint["left_hip"][2] + joint["right_hip"][2])),
        "shoulder": float(0.5 * (joint["left_shoulder"][2] + joint["right_shoulder"][2])),
        "neck": float(neck[2]),
        "neck_y": float(neck[1]),
        "nose": float(rest_vertices[body.vertex_landmarks["nose"], 2]),
        "ear": float(ears[2]),
        "crown": float(z.max()),
        "upper_arm": limb("shoulder", "elbow"),
        "arm": limb("shoulder", "elbow") + limb("elbow", "wrist"),
        "thigh": limb("hip", "knee"),
        "leg": limb("hip", "knee") + limb("knee", "ankle"),
    }
    return Anatomy(
        rest=rest_vertices,
        arm=left_arm + right_arm,
        arm_along=arm_along,
        leg=left_leg + right_leg,
        leg_along=leg_along,
        head=weights[:, subtree(body, skull)].sum(1),
        head_angle=np.arctan2(x - ears[0], -(y - ears[1])),
        levels=levels,
    )


def top_reach(a: Anatomy, hem: float, sleeve: float, neckline: float, opening: float) -> np.ndarray:
    """(V,) reach of a top: from z `hem` up to a collar `neckline` metres below the neck
    joint, tilted like a crew neck (higher at the back) and lower in front by up to
    `opening`; sleeves `sleeve` metres down the arm (negative: sleeveless)."""
    z, y = a.rest[:, 2], a.rest[:, 1] - a.levels["neck_y"]
    front = np.clip(-y / 0.08, 0, 1)
    collar = a.levels["neck"] - neckline + 0.45 * y - opening * front
    torso = np.minimum(z - hem, collar - z)
    return (1 - a.arm) * torso + a.arm * (sleeve - a.arm_along)


def bottom_reach(a: Anatomy, waist: float, length: float) -> np.ndarray:
    """(V,) reach of trousers, shorts or a waistband: below z `waist`, `length` metres down
    each leg from the hip joint; never the arms."""
    z = a.rest[:, 2]
    body = (1 - a.leg) * (waist - z) + a.leg * np.minimum(waist - z, length - a.leg_along)
    return (1 - a.arm) * body - a.arm * 0.05


def hair_reach(a: Anatomy, fringe: float) -> np.ndarray:
    """(V,) reach of hair on the scalp: above a hairline at the forehead (lowered by
    `fringe`), over the ears on the sides and at the nape behind."""
    lv = a.levels
    front = lv["nose"] + 0.6 * (lv["crown"] - lv["nose"]) - fringe
    side, back = lv["ear"] + 0.03, lv["ear"] - 0.06
    line = np.interp(np.abs(a.head_angle), [0, 0.6, np.pi / 2, np.pi], [front, front, side, back])
    return a.head * (a.rest[:, 2] - line) - (1 - a.head) * 0.05


def shoe_reach(a: Anatomy, height: float) -> np.ndarray:
    """(V,) reach of shoes: the foot and `height` metres of ankle above the ankle joint."""
    return a.leg * (a.leg_along - (a.levels["leg"] - height)) - (1 - a.leg) * 0.05


def skirt_solid(
    label: str, posed: np.ndarray, a: Anatomy, top: float, hem: float, ease: float, flare: float
) -> Solid:
    """A skirt from z `top` down to z `hem` around the posed legs (N, 3): at each height the
    convex hull of the body's cross-section plus `ease` metres, never narrowing downwards
    and widening by `flare` metres per metre below the hips."""
    keep = (a.arm < 0.5) & (a.head < 0.5)
    points = posed[keep]
    angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    dirs = np.stack([np.cos(angles), np.sin(angles)], 1)
    heights = np.arange(top, hem - 0.02, -0.01)
    reach = np.empty((len(heights), len(dirs)))
    hip = a.levels["hip"]
    for i, h in enumerate(heights):
        near = points[np.abs(points[:, 2] - h) < 0.015, :2]
        support = (near @ dirs.T).max(0) + ease if len(near) else reach[i - 1]
        grow = flare * 0.01 if h < hip else 0.0
        reach[i] = support if i == 0 else np.maximum(support, reach[i - 1] + grow)

    # Keep clear of the hands: the plane most facing each arm point stays 2 cm short of it.
    arms = posed[(a.arm > 0.5) & (posed[:, 2] < top) & (posed[:, 2] > hem)]
    rows = np.clip(np.round((top - arms[:, 2]) / 0.01).astype(int), 0, len(heights) - 1)
    facing = arms[:, :2] @ dirs.T
    best = facing.argmax(1)
    limit = facing[np.arange(len(arms)), best] - 0.02
    np.minimum.at(reach, (rows, best), limit)

    def sdf(p: np.ndarray) -> np.ndarray:
        t = np.clip((top - p[:, 2]) / 0.01, 0, len(heights) - 1.001)
        i = t.astype(int)
        f = (t - i)[:, None]
        planes = (1 - f) * reach[i] + f * reach[i + 1]
        radial = (p[:, :2] @ dirs.T - planes).max(1)
        return np.maximum(radial, np.maximum(hem - p[:, 2], p[:, 2] - top))

    extent = reach.max()
    bounds = np.array([[-extent, -extent, hem], [extent, extent, top]])
    return Solid(label, sdf, bounds)


def long_hair_solid(crown: np.ndarray, ears: np.ndarray, end: float, width: float) -> Solid:
    """Hair hanging behind the head from the `crown` (3,) to z `end`, centred a little
    behind the posed ears' midpoint (3,); `width` is its half-width in metres."""
    centre = np.array([ears[0], ears[1] + 0.04, 0.5 * (crown[2] + end)])
    radii = np.array([width, 0.06, 0.5 * (crown[2] - end)])

    def sdf(p: np.ndarray) -> np.ndarray:
        q = (p - centre) / radii
        # Round across, nearly flat along its length: hair falls straight.
        return (np.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2 + q[:, 2] ** 8) - 1) * radii[:2].min()

    return Solid("hair", sdf, np.stack([centre - radii, centre + radii]))


def clothe(
    vertices: np.ndarray,
    faces: np.ndarray,
    layers: list[Layer],
    solids: list[Solid],
    rng: np.random.Generator,
    max_faces: int = 70_000,
) -> ClothedSurface:
    """The clothed outer surface of a posed body (vertices (V, 3), faces (F, 3))."""
    samples = _skin_samples(vertices, faces, rng)
    points, face, bary, normals = samples
    reach = np.stack([(layer.reach[faces[face]] * bary).sum(1) for layer in layers], 1)
    cover = np.clip(reach / _HEM + 0.5, 0, 1)
    thick = np.array([layer.thickness for layer in layers])
    offset = (cover * thick).max(1)

    margin = thick.max() + 3 * VOXEL
    lo = np.minimum(vertices.min(0) - margin, np.min([s.bounds[0] for s in solids], 0, initial=9))
    hi = np.maximum(vertices.max(0) + margin, np.max([s.bounds[1] for s in solids], 0, initial=-9))
    # An odd fraction of a voxel keeps grid columns off the body's mirror plane and vertices.
    origin = lo - 2.37 * VOXEL
    shape = tuple(np.ceil((hi - origin) / VOXEL).astype(int) + 3)
    inside = _solid(vertices, faces, origin, shape)
    corner = np.floor((points - origin) / VOXEL).astype(int)
    buried = np.ones(len(points), bool)
    for step in np.ndindex(2, 2, 2):
        buried &= inside[tuple((corner + step).T)]
    points, face, bary, normals = (x[~buried] for x in (points, face, bary, normals))
    cover, offset = cover[~buried], offset[~buried]

    band = np.zeros(shape, bool)
    band[tuple(np.floor((points - origin) / VOXEL).astype(int).T)] = True
    band = ndimage.binary_dilation(band, iterations=int(np.ceil(margin / VOXEL)))
    field = np.where(inside, -margin, margin).astype(np.float32)
    cells = np.argwhere(band)
    centres = origin + cells * VOXEL
    dist, nearest = cKDTree(points).query(centres, workers=-1)
    along_normal = np.abs(((centres - points[nearest]) * normals[nearest]).sum(1))
    depth = np.maximum(along_normal, dist - _SPACING)
    signed = np.where(inside[tuple(cells.T)], -depth, depth) - offset[nearest]
    field[tuple(cells.T)] = np.minimum(signed, margin)
    for solid in solids:
        a = np.clip(np.floor((solid.bounds[0] - origin) / VOXEL).astype(int) - 1, 0, None)
        b = np.minimum(np.ceil((solid.bounds[1] - origin) / VOXEL).astype(int) + 2, shape)
        box = tuple(slice(i, j) for i, j in zip(a, b, strict=True))
        grid = np.stack(np.meshgrid(*[np.arange(i, j) for i, j in zip(a, b, strict=True)],
                                    indexing="ij"), -1)  # fmt: skip
        values = solid.sdf(origin + grid.reshape(-1, 3) * VOXEL).reshape(grid.shape[:3])
        field[box] = np.minimum(field[box], values)

    mesh = _mesh_level_set(field, origin)
    tree = cKDTree(points)
    dist, nearest = tree.query(mesh.vertices, workers=-1)
    # Bare skin goes back onto the body's own surface: faces keep their nose and lips.
    bare = (offset[nearest] < 1e-4) & (dist < VOXEL)
    for solid in solids:
        bare &= solid.sdf(mesh.vertices) > 1e-3
    rise = ((mesh.vertices - points[nearest]) * normals[nearest]).sum(1, keepdims=True)
    mesh.vertices[bare] -= (rise * normals[nearest])[bare]
    verts, tris = _decimate(mesh, max_faces)
    dist, nearest = tree.query(verts, workers=-1)
    # The layer that sets the offset shows, down to the foot of its hem's bevel; smoothing
    # along the surface keeps hems from fraying where the nearest skin point jumps.
    covered = smooth_along(tris, cover[nearest], 3)
    top = (covered * thick).argmax(1)
    shown = covered[np.arange(len(top)), top] > 0.1
    label = np.where(shown, np.array([LABELS.index(x.label) for x in layers])[top], 0)
    skin_field = dist - offset[nearest]
    on_solid = np.zeros(len(verts), bool)
    for solid in solids:
        on = solid.sdf(verts) < skin_field - 1e-3
        label = np.where(on, LABELS.index(solid.label), label)
        on_solid |= on
    return ClothedSurface(
        verts.astype(np.float32),
        tris.astype(np.int32),
        label.astype(np.int8),
        on_solid,
        face[nearest],
        bary[nearest].astype(np.float32),
    )


def smooth_along(faces: np.ndarray, values: np.ndarray, iterations: int) -> np.ndarray:
    """(N, C) per-vertex values diffused over the mesh `faces` (F, 3): each step moves a
    vertex halfway to its neighbours' mean (weighted means stay weighted means)."""
    n = len(values)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    rows, cols = np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]]
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    mean = sparse.diags(1.0 / np.maximum(adjacency.sum(1).A[:, 0], 1)) @ adjacency
    for _ in range(iterations):
        values = 0.5 * values + 0.5 * (mean @ values)
    return values


def _skin_samples(
    vertices: np.ndarray, faces: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Area-uniform points on the body about `_SPACING` apart: positions (S, 3), faces (S,),
    barycentrics (S, 3) and the faces' unit normals (S, 3)."""
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    count = int(area.sum() / _SPACING**2)
    face = rng.choice(len(faces), count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    points = (tri[face] * bary[..., None]).sum(1)
    normals = cross[face] / np.maximum(2 * area[face], 1e-12)[:, None]
    return points, face, bary, normals


def _solid(
    vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """(X, Y, Z) bool voxel centres inside the body, with the mouth and nose cavities (open
    to the outside through gaps of a voxel or two) filled: the outside is what stays
    connected to the grid's border once those gaps are shut."""
    solid = _winding(vertices, faces, origin, shape) > 0
    shut = ndimage.binary_erosion(~solid, iterations=_GAP, border_value=1)
    pieces, _ = ndimage.label(shut)
    outside = ndimage.binary_dilation(pieces == pieces[0, 0, 0], iterations=_GAP) & ~solid
    return ~outside


def _winding(
    vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    """(X, Y, Z) int winding number of the closed mesh at the voxel centres: signed
    crossings of a vertical ray above each centre (+1 leaving through an up-facing face),
    so overlapping parts of a posed body count as one solid."""
    tri = (vertices[faces] - origin) / VOXEL
    xy = tri[..., :2]
    lo = np.ceil(xy.min(1)).astype(int)
    hi = np.floor(xy.max(1)).astype(int)
    (ax, ay), (bx, by), (cx, cy) = xy[:, 0].T, xy[:, 1].T, xy[:, 2].T
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    ok = np.abs(area) > 1e-12
    safe = np.where(ok, area, 1.0)
    counts = np.zeros(shape, np.int32)
    for dx in range(int((hi - lo)[:, 0].max()) + 1):
        for dy in range(int((hi - lo)[:, 1].max()) + 1):
            px, py = lo[:, 0] + dx, lo[:, 1] + dy
            w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / safe
            w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / safe
            w2 = 1 - w0 - w1
            hit = ok & (px <= hi[:, 0]) & (py <= hi[:, 1]) & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
            z = w0[hit] * tri[hit, 0, 2] + w1[hit] * tri[hit, 1, 2] + w2[hit] * tri[hit, 2, 2]
            np.add.at(counts, (px[hit], py[hit], np.floor(z).astype(int)),
                      np.sign(area[hit]).astype(np.int32))  # fmt: skip
    return np.flip(np.cumsum(np.flip(counts, 2), 2), 2)


def _mesh_level_set(field: np.ndarray, origin: np.ndarray) -> trimesh.Trimesh:
    """Marching cubes of the zero level, the largest piece only, lightly smoothed."""
    verts, tris, _, _ = marching_cubes(field, 0.0, spacing=(VOXEL,) * 3)
    mesh = trimesh.Trimesh(verts + origin, tris)
    mesh = max(mesh.split(only_watertight=False), key=lambda m: len(m.faces))
    trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=-0.53, iterations=4)
    return mesh


def _decimate(mesh: trimesh.Trimesh, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_faces` triangles (gentle quadric decimation), closed, outward-facing;
    the rare decimation that breaks closedness is dropped for the full mesh."""
    if len(mesh.faces) > max_faces:
        v, f = fast_simplification.simplify(
            mesh.vertices, mesh.faces, target_reduction=1 - max_faces / len(mesh.faces), agg=3
        )
        # Decimation can leave a doubled triangle (a flat fin); both copies go.
        _, index, count = np.unique(np.sort(f, 1), axis=0, return_inverse=True, return_counts=True)
        simpler = trimesh.Trimesh(v, f[count[index.ravel()] == 1])
        if simpler.is_watertight:
            mesh = simpler
        else:
            log.warning("decimation opened the clothed surface; keeping %d faces", len(mesh.faces))
    if mesh.volume < 0:
        mesh.invert()
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)
