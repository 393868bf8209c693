"""Canonicalise: one photo's front and back depth -> a closed surface in the canonical pose.

The depth maps are meshed as two grid triangulations (the back one with reversed winding)
stitched along the silhouette, triangles across depth discontinuities are dropped, the
vertices are lifted to the world with the photo's camera, given the weights of their pixels,
and unposed with inverse linear blend skinning. Each vertex carries a confidence: how
squarely the photo saw it (|cos| between the view ray and the normal). The back, never seen,
counts as much as the front: network 1 predicts it about as well (its model card: 5.3 cm off
against 5.7 held out), and with photos from both sides two estimates of one surface are
averaged rather than the front photo's guess of the back overruled by the back photo's
front (the README's fusion benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import skinning
from .avatar import BodyFit, DepthMaps
from .body_model import BodyModel
from .camera import unproject

GRID_PIXELS = 256
"""The depth maps are sampled every side/256 pixels (2 px at 512): 20-60k vertices."""
DISCONTINUITY_STEPS = 5.0
"""A triangle whose depths differ by more than this many grid spacings crosses an occlusion
edge (an arm in front of the chest) and is dropped."""
MIN_DISCONTINUITY = 0.03
"""Metres: depth steps below this are never treated as occlusion edges."""
TEAR_STRETCH = 3.0
"""A triangle whose edges unposing stretches more than this factor (and by more than
`TEAR_STRETCH_MIN`) joined parts that move apart (an arm touching the hip): it is dropped."""
TEAR_STRETCH_MIN = 0.02
SPREAD_REFERENCE = 0.01
"""Metres: a depth the network expects to be further off than this loses confidence in
proportion (its fusion weight, the confidence squared, as one over the expected error
squared)."""


@dataclass(frozen=True)
class CanonicalSurface:
    """One photo's surface in the canonical pose.

    vertices: (N, 3) float32 metres, canonical pose; faces: (F, 3) int64, outward winding;
    weights: (N, J) float32 skinning weights (rows sum to one); confidence: (N,) float32 in
    [0, 1], how much the photo tells about each point.
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    confidence: np.ndarray


def canonical_surface(
    depth: DepthMaps,
    fit: BodyFit,
    index: int,
    body: BodyModel,
    canonical_rotations: torch.Tensor,
) -> CanonicalSurface:
    """Mesh and unpose the depth maps of photo `index`.

    canonical_rotations: (1, J, 3, 3) local rotations of the canonical pose (A or T).
    """
    posed, faces, weights, confidence = posed_surface(depth)
    rest = body.rest(torch.as_tensor(fit.phenotype, dtype=torch.float32))
    rotations = torch.cat(
        [torch.as_tensor(fit.poses[index : index + 1], dtype=torch.float32), canonical_rotations]
    )
    frames = skinning.forward_kinematics(
        rest.bone_matrices.expand(2, -1, -1, -1), body.parents, rotations
    )
    transforms = skinning.skinning_transforms(frames, rest.bone_matrices.expand(2, -1, -1, -1))
    canonical = repose(posed, weights, transforms[:1], transforms[1:])
    faces = faces[~_torn(posed, canonical, faces)]
    return _compact(canonical, faces, weights, confidence)


def repose(
    points: np.ndarray, weights: np.ndarray, from_pose: torch.Tensor, to_pose: torch.Tensor
) -> np.ndarray:
    """Move points from one pose to another with their own weights.

    points: (N, 3) metres; weights: (N, J); from_pose, to_pose: (1, J, 4, 4) rest-to-posed
    transforms. Unposes to the body model's rest, then skins forward: exact for the body
    itself, where one blended matrix from pose to pose would not be.
    """
    w = torch.as_tensor(weights, dtype=torch.float32)
    at_rest = skinning.unpose(torch.as_tensor(points, dtype=torch.float32)[None], w, from_pose)
    return skinning.forward_skin(at_rest[0], w, to_pose)[0].numpy()


def posed_surface(
    depth: DepthMaps,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The closed surface of the depth maps in the world, as photographed.

    Returns vertices (N, 3) float32 metres, faces (F, 3) int64, weights (N, J) float32 and
    confidence (N,) float32. Front vertices come first, then back vertices; vertices of no
    triangle are kept here (they are dropped after unposing).
    """
    camera = depth.camera
    height, width = depth.mask.shape
    step = max(1, round(max(height, width) / GRID_PIXELS))
    rows = np.arange(0, height, step)
    cols = np.arange(0, width, step)
    grid = np.ix_(rows, cols)
    valid = depth.mask[grid] & np.isfinite(depth.front[grid]) & np.isfinite(depth.back[grid])
    count = int(valid.sum())
    ids = np.full(valid.shape, -1, dtype=np.int64)
    ids[valid] = np.arange(count)
    front_tris = _grid_triangles(ids)
    back_tris = front_tris[:, ::-1] + count
    walls, outline = _stitch(front_tris, count)

    r, c = np.nonzero(valid)
    v, u = rows[r], cols[c]
    front = depth.front[v, u]
    # A predicted back in front of the front would turn the surface inside out.
    z = np.concatenate([front, np.maximum(depth.back[v, u], front)])
    vertices = unproject(np.tile(u, 2).astype(np.float32), np.tile(v, 2).astype(np.float32),
                         z, camera)  # fmt: skip
    weights = np.concatenate([depth.weights_front[v, u], depth.weights_back[v, u]])

    # Occlusion edges: a big depth step between grid neighbours relative to their spacing.
    # Triangles touching the outline are steep because the surface turns away there, not
    # because something is in front: they stay, so the stitched surface stays closed.
    spacing = step * z / camera.fx
    limit = np.maximum(DISCONTINUITY_STEPS * spacing, MIN_DISCONTINUITY)
    on_outline = np.zeros(2 * count, dtype=bool)
    on_outline[outline] = True
    on_outline[outline + count] = True
    faces = np.concatenate([front_tris, back_tris])
    tz = z[faces]
    continuous = (tz.max(1) - tz.min(1)) <= limit[faces].min(1)
    faces = np.concatenate([faces[continuous | on_outline[faces].any(1)], walls])

    normals = _vertex_normals(vertices, faces)
    rays = vertices - camera.position[None].astype(np.float32)
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    confidence = np.abs((normals * rays).sum(1))
    if depth.spread_front is not None and depth.spread_back is not None:
        spread = np.concatenate([depth.spread_front[v, u], depth.spread_back[v, u]])
        confidence *= spread_confidence(spread)
    return vertices, faces, weights.astype(np.float32), confidence.astype(np.float32)


def spread_confidence(spread: np.ndarray) -> np.ndarray:
    """How much of its confidence a depth keeps, given how far off the network expects it
    to be (metres): all of it up to `SPREAD_REFERENCE`, then in inverse proportion."""
    return np.minimum(1.0, SPREAD_REFERENCE / np.maximum(spread, 1e-6))


def _grid_triangles(ids: np.ndarray) -> np.ndarray:
    """(F, 3) triangles over a grid of vertex ids (-1 = no vertex), wound so that the normal
    faces the camera (image u right, v down, camera looking along +z).

    A cell with four vertices gives two triangles, a cell with three gives one, so the
    outline follows the silhouette to within half a cell.
    """
    a, b = ids[:-1, :-1], ids[:-1, 1:]
    c, d = ids[1:, :-1], ids[1:, 1:]
    pa, pb, pc, pd = (x >= 0 for x in (a, b, c, d))
    cases = [
        ((a, c, b), pa & pb & pc),
        ((b, c, d), pb & pc & pd),
        ((a, c, d), pa & ~pb & pc & pd),
        ((a, d, b), pa & pb & ~pc & pd),
    ]
    return np.concatenate([np.stack([x[when] for x in tri], axis=1) for tri, when in cases])


def _stitch(front: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall triangles joining the front surface's open outline to the back's.

    front: (F, 3) front triangles; back vertex i + count lies behind front vertex i.
    Each outline edge a->b of the front gets the quad (b, a, a', b'), wound to match.
    Returns the walls (W, 3) and the ids of the front vertices on the outline.
    """
    edges = np.concatenate([front[:, [0, 1]], front[:, [1, 2]], front[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    outline = edges[counts[inverse.ravel()] == 1]
    a, b = outline[:, 0], outline[:, 1]
    walls = np.concatenate(
        [np.stack([b, a, a + count], axis=1), np.stack([b, a + count, b + count], axis=1)]
    )
    return walls, np.unique(outline)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) area-weighted unit vertex normals; zero for vertices of no triangle."""
    tri = vertices[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-12)


def _torn(posed: np.ndarray, canonical: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles that unposing stretched apart (parts that touch in the photo but
    move apart in the canonical pose)."""
    before = np.linalg.norm(posed[faces] - posed[np.roll(faces, 1, axis=1)], axis=2)
    after = np.linalg.norm(canonical[faces] - canonical[np.roll(faces, 1, axis=1)], axis=2)
    return ((after > TEAR_STRETCH * before) & (after > TEAR_STRETCH_MIN)).any(1)


def _compact(
    vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray, confidence: np.ndarray
) -> CanonicalSurface:
    """The surface without the vertices no triangle uses."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return CanonicalSurface(
        vertices=vertices[used].astype(np.float32),
        faces=remap[faces].astype(np.int64),
        weights=weights[used],
        confidence=confidence[used],
    )
