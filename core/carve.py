"""Carve: votes on the canonical fusion grid from posing every voxel into every photo.

Unposing a photo's surface tears it where parts that touch in the photo move apart in the
canonical pose (a skirt between the legs, an arm against the body), and a torn surface no
longer says what is inside. The forward direction cannot tear: every canonical voxel, skinned
with the weights of the body nearest to it, lands somewhere in each photo, and the photo says
what is there. Outside the person's mask is empty (the silhouette is seen, so this vote is
strong); in front of the seen front surface is empty; between the front and the back depth
is inside; behind the back depth is only a guess (the back is never seen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
from scipy import ndimage
from scipy.spatial import cKDTree

from .avatar import DepthMaps
from .camera import pixels_of

SILHOUETTE_WEIGHT = 0.3
"""Vote of a photo whose (grown) mask a voxel lands just outside of: a pose a few degrees
off puts a limb's true edge there."""
SILHOUETTE_FAR_WEIGHT = 3.0
"""Vote of a photo whose mask a voxel lands well outside of (the weight ramps up from
`SILHOUETTE_WEIGHT` over `SILHOUETTE_RAMP_PIXELS` beyond the slack): no pose error explains
a surface there, so it outweighs what other photos' surfaces say (a skirt's hem that the
front photo's depth pushes too far forward is cut back by a side photo's outline)."""
SILHOUETTE_RAMP_PIXELS = 6.0
FREE_WEIGHT = 0.2
"""Vote of a photo that sees past a voxel (it lands in front of the front surface)."""
INSIDE_WEIGHT = 0.1
"""Vote of a photo that puts a voxel between its front and back depth."""
BEHIND_WEIGHT = 0.02
"""Vote of a photo that puts a voxel behind its guessed back."""
MASK_SLACK_PIXELS = 2
"""The mask is grown by this many pixels before it carves: small pose errors must not eat
into the limbs' outline."""
FREE_SLACK = 0.02
"""Metres in front of the front surface before a voxel counts as seen through."""
SQUEEZE = 0.85
"""A point off the body whose distance to the body posing shrinks below this fraction is
squeezed (see `photo_votes`)."""
NEAREST_VERTICES = 4
CHUNK = 262_144


@dataclass(frozen=True)
class PhotoView:
    """One photo as the canonical grid sees it: its depth maps (with their camera) and the
    (J, 4, 4) canonical-to-photo bone transforms that pose the canonical body into it."""

    depth: DepthMaps
    transforms: np.ndarray


def voxel_weights(
    points: np.ndarray, body_vertices: np.ndarray, body_weights: np.ndarray, influences: int
) -> tuple[np.ndarray, np.ndarray]:
    """Skinning weights of canonical points (K, 3) from the nearest canonical body vertices
    (B, 3) and their weights (B, J), inverse-distance blended: the `influences` largest bones
    as indices (K, I) int64 and shares (K, I) float32 summing to one, largest first.

    The blend is a sparse product (a body vertex has a handful of bones), which spares the
    (K, NEAREST_VERTICES, J) gather of a dense one."""
    distance, nearest = cKDTree(body_vertices).query(points, k=NEAREST_VERTICES, workers=-1)
    inverse = (1.0 / (distance + 1e-3)).astype(np.float32)
    bones = scipy.sparse.csr_matrix(body_weights.astype(np.float32))
    index = np.empty((len(points), influences), np.int64)
    share = np.empty((len(points), influences), np.float32)
    for start in range(0, len(points), CHUNK):
        part = slice(start, start + CHUNK)
        count = len(inverse[part])
        rows = np.repeat(np.arange(count), NEAREST_VERTICES)
        near = scipy.sparse.csr_matrix(
            (inverse[part].ravel(), (rows, nearest[part].ravel())),
            shape=(count, len(body_vertices)),
        )
        blend = (near @ bones).toarray()
        top = np.argpartition(-blend, influences - 1, axis=1)[:, :influences]
        values = np.take_along_axis(blend, top, axis=1)
        order = np.argsort(-values, axis=1)
        index[part] = np.take_along_axis(top, order, axis=1)
        share[part] = np.take_along_axis(values, order, axis=1)
    share /= share.sum(1, keepdims=True)
    return index, share


def photo_votes(
    points: np.ndarray,
    index: np.ndarray,
    share: np.ndarray,
    view: PhotoView,
    truncation: float,
    body_distance: np.ndarray,
    posed_body: np.ndarray,
    seen_through: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One photo's vote on canonical points (K, 3) with skinning `index`/`share` (K, I).

    body_distance: (K,) metres from each point to the canonical body (negative inside);
    posed_body: (B, 3) the body's vertices posed as in this photo. Returns the signed
    distance (K,) float32 in metres, clipped to ±`truncation` (positive outside), and the
    vote's weight (K,) float32.

    Skinning squeezes space where limbs close in (the gap between an arm and the body in
    the A pose lands on the body when the arms hang): a point off the body that lands much
    closer to the posed body than it was to the canonical one is not given inside votes,
    or every armpit would grow a web.
    """
    depth = view.depth
    camera = depth.camera
    grown = ndimage.binary_dilation(depth.mask, iterations=MASK_SLACK_PIXELS)
    gap = ndimage.distance_transform_edt(~grown)
    front = np.where(depth.mask, depth.front, np.inf)
    back = np.where(depth.mask, depth.back, np.inf)
    tree = cKDTree(posed_body)
    signed = np.empty(len(points), np.float32)
    weight = np.empty(len(points), np.float32)
    for start in range(0, len(points), CHUNK):
        part = slice(start, start + CHUNK)
        blended = np.einsum("ki,kirc->krc", share[part], view.transforms[index[part]])
        posed = np.einsum("krc,kc->kr", blended[:, :3, :3], points[part]) + blended[:, :3, 3]
        cam = posed @ camera.rotation.T + camera.translation
        z = np.maximum(cam[:, 2], 1e-4)
        u, v, on_image = pixels_of(cam, camera)
        uc, vc = np.clip(u, 0, camera.width - 1), np.clip(v, 0, camera.height - 1)
        outside = ~on_image | ~grown[vc, uc]
        off_body = body_distance[part] > 0
        squeezed = np.zeros(len(cam), bool)
        if off_body.any():
            landed, _ = tree.query(posed[off_body], workers=-1)
            squeezed[off_body] = landed < SQUEEZE * body_distance[part][off_body]
        near, far = front[vc, uc], back[vc, uc]
        known = ~outside & np.isfinite(near) & np.isfinite(far)
        distance = np.where(known, np.maximum(near - z, z - far), truncation)
        s = np.clip(distance, -truncation, truncation)
        w = np.zeros(len(s), np.float32)
        beyond = np.where(on_image, gap[vc, uc], np.inf)[outside]  # pixels past the slack
        ramp = np.clip((beyond - 1.0) / SILHOUETTE_RAMP_PIXELS, 0.0, 1.0)
        w[outside] = SILHOUETTE_WEIGHT + (SILHOUETTE_FAR_WEIGHT - SILHOUETTE_WEIGHT) * ramp
        free = known & (z < near - FREE_SLACK)
        w[free] = FREE_WEIGHT * (1.0 if seen_through is None else seen_through[vc, uc][free])
        w[known & (z >= near - FREE_SLACK) & (z <= far) & ~squeezed] = INSIDE_WEIGHT
        w[known & (z > far) & ~squeezed] = BEHIND_WEIGHT
        signed[part] = s
        weight[part] = w
    return signed, weight
