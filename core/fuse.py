"""Fuse: the canonical surfaces of all photos -> one watertight, skinned canonical mesh.

Volumetric fusion on a grid in the canonical pose: every photo's surface gives a truncated
signed distance near itself, weighted by how squarely that photo saw the nearest point (a
point seen squarely by one photo beats another's guess of its back); the canonical body
gives a weak prior where no photo says anything (and covers where unposing tore a surface
open). Each photo also votes forward on the voxels near the body (`carve`: posed into the
photo, is the voxel outside the silhouette, in front of the seen surface, or between front
and back?), which settles what torn surfaces leave open. Far from every photo's surface and
from the body the volume is kept empty, so folds of unposing cannot grow spikes. Marching
cubes gives the surface, the largest component is kept, decimated to the triangle budget and
smoothed, and the body's skinning weights are carried over to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import fast_simplification
import numpy as np
import scipy.sparse
import torch
import trimesh
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from . import skinning
from .avatar import Settings
from .body_model import BodyModel
from .camera import pixels_of
from .canonicalise import CanonicalSurface
from .carve import PhotoView, photo_votes, voxel_weights
from .progress import Progress

log = logging.getLogger(__name__)

TRUNCATION_VOXELS = 3.0
"""Half-width of the band around each photo's surface where it speaks, in voxels."""
BODY_WEIGHT = 0.05
"""Weight of the canonical body's vote: below any photo that saw a point, above the
far-field votes of a single photo (so the body fills what the photos leave open)."""
NEAR_WEIGHT = 0.1
"""Weight floor of a photo near its own surface, added to the squared confidence."""
FAR_WEIGHT = 0.03
"""Weight of a photo's inside/outside vote away from its surface."""
SPIKE_MARGIN = 0.15
"""Metres from the body beyond which only a photo's own surface band may be solid."""
DOUBT_DEPTH = 0.03
"""Metres: a photo's surface seen edge-on by another photo, lying deeper than this inside
that photo's solid (behind its front and before its back), starts to lose trust (see
`_trust`)."""
EDGE_ON = 0.5
"""Cosine between a point's normal and another photo's ray below which that photo sees it
edge-on."""
DOUBT_PIXELS = 3
"""Pixels inside another photo's outline from which that photo's solid can refute a point."""
PAD_VOXELS = 3
SEAL_VOXELS = 4
"""Tears in a surface narrower than twice this many voxels do not open its inside."""
WEIGHT_NEIGHBOURS = 8
"""Canonical body vertices each final vertex takes its skinning weights from."""
WEIGHT_SMOOTHING_STEPS = 3
TAUBIN_ITERATIONS = 4
DECIMATION_AGGRESSION = (5.0, 3.0)
RESAMPLE_MARGIN = 1.15
"""fast_simplification's `agg`, from fast to careful (lower keeps meshes manifold)."""


@dataclass(frozen=True)
class FusedMesh:
    """The fused canonical mesh.

    vertices: (V, 3) float32 metres, canonical pose; faces: (F, 3) int32, outward winding;
    weights: (V, J) float32, at most `Settings.max_influences` non-zero per row, rows sum to 1.
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray


def fuse(
    surfaces: list[CanonicalSurface],
    body: BodyModel,
    canonical_rest_vertices: np.ndarray,
    settings: Settings,
    progress: Progress,
    views: Sequence[PhotoView] = (),
) -> FusedMesh:
    """Fuse the photos' canonical surfaces into one watertight skinned mesh.

    canonical_rest_vertices: (V, 3) the fitted body in the canonical pose (its faces are
    `body.faces`), the prior where the photos say nothing and the source of the weights.
    views: the photos themselves, one per surface in the same order, whose forward votes
    (`carve`) settle what torn surfaces leave open and which cross-check each other's
    surfaces (`_trust`); none fuses the surfaces alone.
    """
    spacing = settings.voxel_size
    truncation = TRUNCATION_VOXELS * spacing
    body_vertices = np.asarray(canonical_rest_vertices, dtype=np.float64)
    every = np.concatenate([body_vertices, *[s.vertices for s in surfaces]])
    margin = (PAD_VOXELS + SEAL_VOXELS + 1) * spacing + truncation
    origin = every.min(0) - margin
    shape = tuple(np.ceil((every.max(0) + margin - origin) / spacing).astype(int) + 1)
    progress.step("fusing", 0.0)

    # The body's distance reaches far (for the spike guard); the photos' only their band.
    band = _band(body_vertices, body.faces, origin, spacing, shape, truncation + spacing)
    body_sdf = spacing * (
        ndimage.distance_transform_edt(~band.inside) - ndimage.distance_transform_edt(band.inside)
    ).astype(np.float32)
    body_sdf[tuple(band.index.T)] = band.signed
    total = BODY_WEIGHT * np.clip(body_sdf, -truncation, truncation)
    weight = np.full(shape, BODY_WEIGHT, dtype=np.float32)
    seen = np.zeros(shape, dtype=bool)
    deep = body_sdf < -2 * truncation
    interiors = [ndimage.distance_transform_edt(v.depth.mask) > DOUBT_PIXELS for v in views]
    trusts = [_trust(s, i, views, interiors) for i, s in enumerate(surfaces)]
    for i, surface in enumerate(surfaces):
        progress.step("fusing", 0.1 + 0.3 * i / len(surfaces))
        if len(surface.faces) == 0:
            log.warning("photo %d gave no surface to fuse", i)
            continue
        band = _band(surface.vertices, surface.faces, origin, spacing, shape, truncation)
        near = tuple(band.index.T)
        sdf = np.where(band.inside, -truncation, truncation).astype(np.float32)
        sdf[near] = band.signed
        # A tear wider than the seal lets the flood fill leak into the surface's inside:
        # deep inside the body, a photo's far "outside" vote is no evidence.
        w = np.where(band.inside | ~deep, FAR_WEIGHT, 0.0).astype(np.float32)
        w[near] = (NEAR_WEIGHT + surface.confidence[band.nearest] ** 2) * trusts[i][band.nearest]
        total += w * sdf
        weight += w
        seen[near] = True
    if views:
        candidates = np.argwhere(body_sdf < SPIKE_MARGIN)
        points = (origin + candidates * spacing).astype(np.float32)
        index, share = voxel_weights(
            points, body_vertices, body.skin_weights.numpy(), settings.max_influences
        )
        cells = tuple(candidates.T)
        distance = body_sdf[cells]
        canonical_body = torch.as_tensor(body_vertices, dtype=torch.float32)
        for i, view in enumerate(views):
            progress.step("fusing", 0.4 + 0.2 * i / len(views))
            transforms = torch.as_tensor(view.transforms, dtype=torch.float32)[None]
            posed_body = skinning.forward_skin(canonical_body, body.skin_weights, transforms)
            seen_through = _trust_map(surfaces[i], trusts[i], view)
            signed, w = photo_votes(
                points,
                index,
                share,
                view,
                truncation,
                distance,
                posed_body[0].numpy(),
                seen_through,
            )
            total[cells] += w * signed
            weight[cells] += w
    values = total / weight
    values[~seen & (body_sdf > SPIKE_MARGIN)] = truncation
    values[[0, -1]] = values[:, [0, -1]] = values[:, :, [0, -1]] = truncation

    progress.step("fusing", 0.6)
    vertices, faces = _mesh_on_budget(values, origin, spacing, settings.triangles)
    progress.step("fusing", 0.9)
    weights = transfer_weights(
        vertices, faces, body_vertices, body.skin_weights.numpy(), settings.max_influences
    )
    progress.step("fusing", 1.0)
    log.info("fused %d surfaces into %d triangles", len(surfaces), len(faces))
    return FusedMesh(vertices.astype(np.float32), faces.astype(np.int32), weights)


def _trust(
    surface: CanonicalSurface,
    index: int,
    views: Sequence[PhotoView],
    interiors: Sequence[np.ndarray],
) -> np.ndarray:
    """(N,) in [0, 1]: how far each of photo `index`'s surface points is from being refuted.

    A surface that another photo sees edge-on lies on that photo's outline or where its
    depth jumps, never deep inside what it shows as one solid (behind its front, before its
    back): a side view's skirt predicted against the leg lands there in the front photo,
    which shows cloth out to the skirt's outline. The trust falls from 1 at `DOUBT_DEPTH`
    inside to 0 at twice that. Two depth layers also call solid the space between an arm
    and the torso behind it, so a flank there can lose trust it deserved; on the fusion
    benchmark the test gains more than that costs. No other photo: trusted throughout.
    interiors: per photo, (H, W) bool, its mask more than `DOUBT_PIXELS` inside the outline.
    """
    mesh = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float32)
    deepest = np.zeros(len(normals), np.float32)
    for j, view in enumerate(views):
        if j == index:
            continue
        depth = view.depth
        camera = depth.camera
        cam, turn, u, v, on = _into_photo(surface, view)
        turned = np.einsum("nrc,nc->nr", turn, normals) @ camera.rotation.T
        facing = (turned * cam).sum(1) / np.linalg.norm(cam, axis=1)
        uc, vc = np.clip(u, 0, camera.width - 1), np.clip(v, 0, camera.height - 1)
        inside = np.minimum(cam[:, 2] - depth.front[vc, uc], depth.back[vc, uc] - cam[:, 2])
        counted = on & interiors[j][vc, uc] & (np.abs(facing) < EDGE_ON) & np.isfinite(inside)
        deepest = np.maximum(deepest, np.where(counted, inside, 0.0))
    return np.clip(2.0 - deepest / DOUBT_DEPTH, 0.0, 1.0).astype(np.float32)


def _into_photo(
    surface: CanonicalSurface, view: PhotoView
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A canonical surface posed into a photo with its own weights: camera-space points
    (N, 3), the blended rotations (N, 3, 3) (canonical to world), pixel columns and rows
    (N,) int64 and whether they land on the image (N,) bool."""
    camera = view.depth.camera
    bones = view.transforms.reshape(len(view.transforms), 16)
    blended = (surface.weights @ bones).reshape(-1, 4, 4)
    posed = np.einsum("nrc,nc->nr", blended[:, :3, :3], surface.vertices) + blended[:, :3, 3]
    cam = posed @ camera.rotation.T + camera.translation
    return cam, blended[:, :3, :3], *pixels_of(cam, camera)


def _trust_map(surface: CanonicalSurface, trust: np.ndarray, view: PhotoView) -> np.ndarray:
    """(H, W) the trust of the surface points back on the photo's pixels (the least of those
    that land on a pixel, the nearest one's where none lands): how far the photo may be
    believed when it sees past a point."""
    camera = view.depth.camera
    _, _, u, v, on = _into_photo(surface, view)
    grid = np.full((camera.height, camera.width), np.inf, np.float32)
    np.minimum.at(grid, (v[on], u[on]), trust[on])
    landed = np.isfinite(grid)
    if not landed.any():
        return np.ones_like(grid)
    _, (rows, cols) = ndimage.distance_transform_edt(~landed, return_indices=True)
    return grid[rows, cols]


@dataclass(frozen=True)
class _Band:
    """A mesh's signed distance near itself on the grid: voxel indices (K, 3), signed
    distance (K,) metres (positive outside), nearest surface sample (K,) and whether each
    voxel of the grid is inside (X, Y, Z) bool."""

    index: np.ndarray
    signed: np.ndarray
    nearest: np.ndarray
    inside: np.ndarray


def _band(
    vertices: np.ndarray,
    faces: np.ndarray,
    origin: np.ndarray,
    spacing: float,
    shape: tuple[int, ...],
    width: float,
) -> _Band:
    """Signed distance within `width` metres of a mesh, and inside/outside everywhere.

    Near the surface: distance to the tangent plane of the nearest vertex, signed by its
    normal, so open or folded surfaces still get a sensible sign. Beyond: regions the band
    encloses are inside, those reaching the grid's border outside (a tear wider than the
    band lets the outside in; the body prior then decides there).
    """
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    samples = np.asarray(mesh.vertices)
    normals = np.asarray(mesh.vertex_normals)
    voxels = int(np.ceil(width / spacing))
    cells = np.clip(np.floor((samples - origin) / spacing + 0.5).astype(int), 0,
                    np.array(shape) - 1)  # fmt: skip
    occupied = np.zeros(shape, dtype=bool)
    occupied[tuple(cells.T)] = True
    near = ndimage.binary_dilation(occupied, iterations=voxels + 1)
    index = np.argwhere(near)
    points = origin + index * spacing
    distance, nearest = cKDTree(samples).query(points, distance_upper_bound=width, workers=-1)
    found = np.isfinite(distance)
    index, points, nearest = index[found], points[found], nearest[found]
    signed = ((points - samples[nearest]) * normals[nearest]).sum(1)

    # Flood fill from the border around a thicker wall, so that tears up to twice
    # `SEAL_VOXELS` wide do not let the outside in; what it encloses is inside, grown back
    # through the wall up to the band, where the normals decide.
    wall = ndimage.binary_dilation(near, iterations=SEAL_VOXELS)
    labels, _ = ndimage.label(~wall)
    border = np.unique(np.concatenate(
        [labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(), labels[:, :, [0, -1]].ravel()]
    ))  # fmt: skip
    enclosed = ~wall & ~np.isin(labels, border)
    inside = ndimage.binary_dilation(enclosed, iterations=SEAL_VOXELS + voxels + 2, mask=wall)
    inside |= enclosed
    inside[tuple(index.T)] = signed < 0
    return _Band(index, signed.astype(np.float32), nearest, inside)


def surface_from_volume(
    values: np.ndarray, origin: np.ndarray, spacing: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of `values` (negative inside) by marching cubes, outward winding.
    spacing: metres between samples, one for all axes or (3,) per axis."""
    steps = tuple(np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)))
    vertices, faces, _, _ = marching_cubes(values, level=0.0, spacing=steps)
    vertices = vertices + origin
    if trimesh.Trimesh(vertices, faces, process=False).volume < 0:
        faces = faces[:, ::-1]
    return vertices, faces


def _largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The connected component with the most faces (cavities and floaters dropped)."""
    mesh = trimesh.Trimesh(vertices, faces)
    parts = mesh.split(only_watertight=False)
    largest = max(parts, key=lambda m: len(m.faces))
    return np.asarray(largest.vertices), np.asarray(largest.faces)


def _mesh_on_budget(
    values: np.ndarray, origin: np.ndarray, spacing: float, triangles: int
) -> tuple[np.ndarray, np.ndarray]:
    """The zero level set as one closed piece of about `triangles` triangles, its voxel
    steps smoothed away by Taubin's volume-keeping smoothing.

    Quadric decimation can pinch a tangled surface along non-manifold edges; when no pass
    stays watertight, marching cubes runs again on a volume resampled so that it lands on
    the budget by itself.
    """
    vertices, faces = _largest_component(*surface_from_volume(values, origin, spacing))
    decimated = _decimate(vertices, faces, triangles)
    if decimated is None:
        # A little finer than the budget, so that a last decimation can land on it.
        coarse, steps = coarser(values, spacing, RESAMPLE_MARGIN * np.sqrt(triangles / len(faces)))
        resampled = _largest_component(*surface_from_volume(coarse, origin, steps))
        decimated = _decimate(*resampled, triangles) or resampled
        log.info("decimation tore the surface; resampled to %d triangles", len(decimated[1]))
    mesh = trimesh.Trimesh(*decimated)
    trimesh.smoothing.filter_taubin(mesh, iterations=TAUBIN_ITERATIONS)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def coarser(values: np.ndarray, spacing: float, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """`values` (negative inside) resampled to `factor` times as many samples per axis over
    the same extent, and the (3,) spacing of the result. Its border stays outside
    ("nearest"): zooming with scipy's constant fill of 0 set the last slices to 0 at some
    factors, and marching cubes turned them into a flat sheet bigger than the person, which
    then won as the largest piece."""
    coarse = ndimage.zoom(values, factor, order=1, mode="nearest")
    steps = spacing * (np.array(values.shape) - 1) / (np.array(coarse.shape) - 1)
    return coarse, steps


def _decimate(
    vertices: np.ndarray, faces: np.ndarray, triangles: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Quadric decimation to `triangles`, from fast to careful passes; the first result
    that is watertight and (nearly) whole, or None."""
    if len(faces) <= triangles:
        return vertices, faces
    for aggression in DECIMATION_AGGRESSION:
        decimated = fast_simplification.simplify(
            vertices, faces.astype(np.int32), target_count=triangles, agg=aggression
        )
        candidate = _largest_component(*decimated)
        whole = len(candidate[1]) > 0.99 * len(decimated[1])
        on_budget = len(candidate[1]) < 1.1 * triangles
        if whole and on_budget and trimesh.Trimesh(*candidate).is_watertight:
            return candidate
    return None


def transfer_weights(
    vertices: np.ndarray,
    faces: np.ndarray,
    body_vertices: np.ndarray,
    body_weights: np.ndarray,
    max_influences: int,
) -> np.ndarray:
    """Skinning weights for a mesh from the canonical body's nearest vertices.

    vertices: (V, 3) canonical mesh, faces (F, 3); body_vertices (B, 3) canonical body,
    body_weights (B, J). Inverse-distance blend of the nearest body vertices, a few steps of
    Laplacian smoothing over the mesh (clothes far from the body get smooth blends), then
    the `max_influences` largest kept. Returns (V, J) float32, rows summing to one.
    """
    distance, nearest = cKDTree(body_vertices).query(vertices, k=WEIGHT_NEIGHBOURS, workers=-1)
    inverse = 1.0 / (distance + 1e-4) ** 2
    weights = (body_weights[nearest] * inverse[..., None]).sum(1) / inverse.sum(1, keepdims=True)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = scipy.sparse.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(vertices),) * 2
    ).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    degree = np.asarray(adjacency.sum(1)).ravel()
    for _ in range(WEIGHT_SMOOTHING_STEPS):
        weights = 0.5 * weights + 0.5 * (adjacency @ weights) / np.maximum(degree, 1)[:, None]
    drop = np.argsort(weights, axis=1)[:, :-max_influences]
    np.put_along_axis(weights, drop, 0.0, axis=1)
    return (weights / weights.sum(1, keepdims=True)).astype(np.float32)
