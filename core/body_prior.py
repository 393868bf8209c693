"""The body prior: the fitted body's front and back depth, grown or shrunk to the person.

This is the baseline that network 1 has to beat: the naked fitted body rasterised front and
back, then made to fill the person's silhouette. Where the person reaches beyond the body
(loose clothes, hair, skirts) the depth is extrapolated from the body: the medial depth
(halfway between front and back) by harmonic filling, the thickness by filling the squared
half-thickness between the body and zero at the silhouette with a constant source, which
gives the rounded, ellipse-like taper of a draped cloth and rounds wide regions (a skirt
between the legs). Body pixels outside the silhouette are dropped. Grown pixels take the
skinning weights of the body vertices nearest to them in 3D.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from .avatar import BodyFit, DepthMaps, Perception, Photo
from .body_model import BodyModel
from .camera import unproject
from .progress import Progress
from .raster import render_depth

log = logging.getLogger(__name__)

MIN_HALF_THICKNESS = 0.002
"""Metres: grown pixels keep front strictly in front of back, even at the silhouette."""
CORE_PIXELS_PER_SIDE = 1 / 170
"""Body pixels farther than this fraction of the image side from the body's own outline
pin the thickness; nearer ones may be thickened by clothes that reach beyond the body."""
MEDIAL_PULL = 1e-4
"""Weak tie of the harmonic medial depth to the nearest body pixel's, so regions of the
person that touch no body pixel still get a depth."""
INFLATION = 0.7
"""Depth-to-width ratio of the ellipse that wide grown regions (skirts, coats) round to."""
NEAREST_VERTICES = 4
"""Posed body vertices a grown pixel blends its skinning weights from."""
_NEIGHBOURS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def body_prior_depth(
    photo: Photo,
    perception: Perception,
    fit: BodyFit,
    index: int,
    body: BodyModel,
    progress: Progress | None = None,
) -> DepthMaps:
    """Front/back depth and skinning weights of the fitted body in photo `index`, fitted to
    the person's silhouette (`perception.mask > 0.5`).

    Returns DepthMaps in the camera `fit.cameras[index]` (the working crop's camera).
    `progress` is stepped between the parts of about a second each, so Cancel stops quickly.
    """
    progress = progress or Progress()
    camera = fit.cameras[index]
    person = perception.mask > 0.5
    if person.shape != (camera.height, camera.width) or photo.image.shape[:2] != person.shape:
        raise ValueError(
            f"{photo.name}: mask {person.shape}, photo {photo.image.shape[:2]} and camera "
            f"{(camera.height, camera.width)} must have the same size"
        )
    rest = body.rest(torch.as_tensor(fit.phenotype, dtype=torch.float32))
    poses = torch.as_tensor(fit.poses[index : index + 1], dtype=torch.float32)
    posed = body.pose(rest, poses)
    render = render_depth(camera, posed.vertices[0].detach(), body.faces)
    progress.step("predicting depth", 0.4)
    faces = torch.as_tensor(body.faces)
    weights_front = render.front.interpolate(body.skin_weights, faces).numpy()
    weights_back = render.back.interpolate(body.skin_weights, faces).numpy()
    on_body = render.mask
    if not (on_body & person).any():
        log.warning(
            "%s: the fitted body misses the person's mask; using its own outline", photo.name
        )
        person = on_body
    front, back = grow_to_silhouette(
        render.front.depth.numpy(), render.back.depth.numpy(), on_body, person, camera.fx
    )
    # Grown pixels take the weights of the body nearest in 3D, not in the image: every
    # photo then gives a point of the clothes the same weights, so unposing agrees.
    progress.step("predicting depth", 0.8)
    grown = person & ~on_body
    v, u = np.nonzero(grown)
    vertices = posed.vertices[0].detach().numpy()
    skin = body.skin_weights.numpy()
    for weights, depth in ((weights_front, front), (weights_back, back)):
        weights[~person] = 0.0
        points = unproject(u.astype(np.float32), v.astype(np.float32), depth[grown], camera)
        weights[grown] = _nearest_weights(points, vertices, skin)
    return DepthMaps(camera, front, back, person, weights_front, weights_back)


def _nearest_weights(points: np.ndarray, vertices: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(N, J) inverse-distance blend of the skinning weights `skin` (V, J) of the
    `NEAREST_VERTICES` body vertices (V, 3) nearest to each of `points` (N, 3)."""
    if len(points) == 0:
        return np.zeros((0, skin.shape[1]), dtype=np.float32)
    distance, nearest = cKDTree(vertices).query(points, k=NEAREST_VERTICES, workers=-1)
    inverse = 1.0 / (distance + 1e-3)
    blend = (skin[nearest] * inverse[..., None]).sum(1) / inverse.sum(1, keepdims=True)
    return blend.astype(np.float32)


def grow_to_silhouette(
    front: np.ndarray, back: np.ndarray, on_body: np.ndarray, person: np.ndarray, focal: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fit body depth maps to the person's silhouette.

    front, back: (H, W) float32 camera z of the body (metres, inf off the body);
    on_body, person: (H, W) bool; focal: pixels. Returns the person's front and back (H, W)
    float32 (inf outside `person`). Body pixels inside the person keep their depth unless
    the person reaches beyond the body next to them, where the front and back swell to meet
    the clothes' envelope: a fill of the squared half-thickness with a constant source,
    which rounds a wide region (a skirt) like an ellipse of depth `INFLATION` × its width.
    """
    kept = on_body & person
    grown = person & ~kept
    _, nearest = ndimage.distance_transform_edt(~kept, return_indices=True)
    rows, cols = nearest[0], nearest[1]
    medial_body = np.zeros(front.shape)
    half_body = np.zeros(front.shape)
    medial_body[kept] = 0.5 * (front[kept] + back[kept])
    half_body[kept] = 0.5 * (back[kept] - front[kept])

    medial = _harmonic_fill(
        medial_body, known=kept, unknown=grown, prior=medial_body[rows, cols],
        pull=MEDIAL_PULL,
    )  # fmt: skip
    core_depth = max(1.0, CORE_PIXELS_PER_SIDE * max(person.shape))
    core = kept & (ndimage.distance_transform_edt(kept) > core_depth)
    pixel = medial / focal
    squared = _harmonic_fill(
        np.where(core, half_body**2, 0.0),
        known=core | ~person,
        unknown=person & ~core,
        source=2 * INFLATION**2 * pixel**2,
    )
    half = np.sqrt(np.maximum(squared, 0.0))
    # Only body pixels near where the person reaches beyond the body swell; elsewhere the
    # body's own outline is the silhouette and its depth is kept exactly.
    swell = grown.any() & (ndimage.distance_transform_edt(~grown) <= 2 * core_depth)
    half = np.where(
        kept,
        np.where(swell, np.maximum(half_body, half), half_body),
        np.maximum(half, MIN_HALF_THICKNESS),
    )
    out_front = np.where(person, medial - half, np.inf).astype(np.float32)
    out_back = np.where(person, medial + half, np.inf).astype(np.float32)
    return out_front, out_back


def _harmonic_fill(
    values: np.ndarray,
    known: np.ndarray,
    unknown: np.ndarray,
    prior: np.ndarray | None = None,
    pull: float = 0.0,
    source: np.ndarray | None = None,
) -> np.ndarray:
    """Solve Laplace's equation on the `unknown` pixels (4-neighbours).

    values: (H, W) Dirichlet values, read at `known` pixels; neighbours that are neither
    known nor unknown let nothing through (zero flux). `pull` > 0 ties each unknown pixel
    weakly to `prior` (H, W), a screened equation that stays defined on islands with no
    known neighbour. Returns (H, W) float64: `values` with the unknown pixels filled.
    """
    out = values.astype(np.float64).copy()
    count = int(unknown.sum())
    if count == 0:
        return out
    height, width = values.shape
    index = np.full(values.shape, -1, dtype=np.int64)
    index[unknown] = np.arange(count)
    ys, xs = np.nonzero(unknown)
    diagonal = np.full(count, pull)
    rhs = pull * prior[unknown] if prior is not None and pull > 0 else np.zeros(count)
    if source is not None:
        rhs += source[unknown]
    rows, cols = [], []
    ids = np.arange(count)
    for dy, dx in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        ny, nx = np.clip(ny, 0, height - 1), np.clip(nx, 0, width - 1)
        free = inside & unknown[ny, nx]
        fixed = inside & known[ny, nx] & ~free
        diagonal += free | fixed
        rhs += np.where(fixed, values[ny, nx], 0.0)
        rows.append(ids[free])
        cols.append(index[ny[free], nx[free]])
    r, c = np.concatenate(rows), np.concatenate(cols)
    matrix = scipy.sparse.csr_matrix(
        (np.concatenate([diagonal, -np.ones(len(r))]), (np.r_[ids, r], np.r_[ids, c])),
        shape=(count, count),
    )
    out[unknown] = scipy.sparse.linalg.spsolve(matrix.tocsc(), rhs)
    return out
