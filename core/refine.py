"""Refine: pose the fused canonical mesh back into every photo by forward skinning and
correct it until it agrees with all of them.

Unknowns: one offset per canonical vertex (shared by all photos) and, per photo, a small
shift of the person in the camera and a small rotation correction: of every bone with up to
four photos (`CORRECT_POSES_UP_TO`), of the root alone (the person's turn in the camera) with
more. Terms per photo,
projection-based (the body fit's robust silhouette costs, and visibility from our rasteriser
refreshed every few steps, so a step costs tens of milliseconds on the CPU):
vertices outside the mask, mask the mesh does not reach, the depth of the vertices the
photo sees against its front depth map, and of those facing away on the far side against its
back depth map, which counts as much (as in fusion, `canonicalise`); with one or two photos
each depth is weighed by how far off the network expects it to be. From three photos on
(and always at the high preset) a soft rasteriser's silhouette is added, compared with the
mask pixel by pixel: outlines matched to a pixel, for about three times the refinement's time
(benchmarks/soft_raster.py).
Shared: the offsets' Laplacian (smooth corrections, even triangles), normal consistency of
adjacent faces, and the pose corrections held near zero.

Why this helps several photos: each photo keeps a pose of its own (the fit only pulls the
photos' joints towards agreement), and a few degrees off in one photo blur the fused
surface; with up to four photos the corrections let them agree on one canonical shape (and
put back limbs the fit left off with the detector's keypoints), from five the photos'
outlines hold the limbs and only how the whole person turns in each camera is corrected,
and the silhouettes of all photos carve the shape like a visual hull.

Runs on CUDA when torch has it (`Settings.device`), else on the CPU, where 80 steps for 20k
triangles cost about 4.5 s with one photo and 7 s with four (benchmarks/presets.py). The CPU
keeps its faster paths: the sparse products in scipy, the coverage term's nearest-vertex
search in a k-d tree; on a GPU both are torch's. Visibility is rasterised on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import cv2
import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
import trimesh

from . import skinning
from .avatar import BodyFit, DepthMaps, Perception, Settings
from .body_model import BodyModel, Posed, Rest
from .camera import Camera, project_camera_points
from .canonicalise import spread_confidence
from .devices import torch_device
from .fit_losses import (
    REFERENCE_SIDE,
    SilhouetteTarget,
    geman_mcclure,
    silhouette_loss,
    silhouette_target,
)
from .fuse import FusedMesh, transfer_weights
from .progress import Progress
from .raster import rasterize
from .soft_raster import soft_silhouette

log = logging.getLogger(__name__)

WEIGHTS = {
    "inside": 1.0,
    "coverage": 1.0,
    "depth": 0.3,
    "laplacian": 4e6,
    "normals": 30.0,
    "pose": 300.0,
    "shift": 3e4,
    "soft_silhouette": 1e3,
}
"""Loss weights: image terms in reference pixels² (the soft silhouette in fractions of the
mask's area), Laplacian in metres², pose in radians², shift in metres². The soft silhouette
at 1e4 out-pulled the depth: at 1e3 the outlines still land (4 photos IoU 0.976 both) and
benchmarks/spine.py from 4 photos, with the detector's keypoints, falls 1.42 -> 1.32 cm
(7 of 8 people lower; benchmarks/fusion.py, with the true keypoints, median 0.850 -> 0.821,
4 of 10 lower, a skirt 1.07 -> 0.87; 2026-12-05)."""
SILHOUETTE_SIGMA = 10.0
"""Reference pixels beyond which a silhouette residual counts as an outlier."""
DEPTH_SIGMA = 6.0
"""Reference pixels (depth residual seen at the vertex's distance) for the depth term."""
VISIBILITY_REFRESH = 10
"""Steps between re-rasterisations that decide which vertices each photo sees."""
VISIBILITY_SCALE = 0.5
"""Visibility is decided on a depth render at this fraction of the working crop's size."""
MIN_FACING = 0.3
"""Cosine between a vertex's normal and the view ray below which its depth is not compared."""
VISIBLE_SLACK = 0.01
"""Metres a vertex may lie behind the rendered front surface and still count as seen."""
SPREAD_STEPS = 6
"""Rings of neighbours each raw offset is spread over (see `refine.smoothed`)."""
SOFT_RESOLUTION = 256
"""Pixels on the working crop's longer side the soft silhouette is drawn at (128 lost 0.05
of IoU in benchmarks/soft_raster.py)."""
SOFT_FROM_PHOTOS = 3
"""Photos from which `Settings.soft_silhouette` None draws the soft silhouette: with one or
two, the projected terms alone reach silhouette IoU 0.98; with four they stop at 0.94
(benchmarks/soft_raster.py, 5 people). At 1e4 the soft term gained no Chamfer from two
photos; at 1e3 it gains 0.04 cm of median there for 3.8 s more (2026-12-05), not yet
weighed against the fusion benchmark's steps."""
CORRECT_POSES_UP_TO = 4
"""Photos up to which every bone of each photo's pose is corrected; with more, only the root
(how the whole person turns in its camera). With the detector's keypoints the fit leaves
limbs off in some photos, and the corrections put them back: the spine from 4 photos, 8 people,
median Chamfer 1.71 -> 1.42 cm (4 lower by 0.19-0.51, a skirt 1.71 -> 1.20; 4 higher by
0.02-0.05).
With perception from the truth the fitted limbs are already right and the corrections a wash
(benchmarks/fusion.py from 4 photos: median 0.862 -> 0.850, 5 of 10 people lower; 2026-12-05).
From 8 photos, 45 degrees apart, the photos' outlines pin the shape and corrected limbs
follow each photo's errors too: with the true keypoints 3 of 4 people lower with the limbs
held (1.49 -> 1.36 cm), with the detector's 2 of 4 (a loose top 2.38 -> 1.39; a skirt 1.04
-> 1.30 the other way); 10 of 10 lower with the root turned than held (1.43 -> 1.18)."""
DOUBT_DEPTH_UP_TO = 2
"""Photos up to which each depth counts in proportion to how far off the network expects
it to be (its weight `canonicalise.spread_confidence` squared, as in fusion).
With one or two photos the depth maps shape everything between the outlines, and the
network's doubtful depths pulled the surface off: lower Chamfer for 7 of 10 people from
one photo, 9 of 10 from two (0.97 -> 0.92 cm, a skirt). From three the outlines of the
other photos hold those parts, and doubting the depth raised 8 of 10 from four photos
(by 0.01-0.03 cm; benchmarks/fusion.py's people, 2026-12-05)."""
LEARNING_RATES = {"offsets": 1.5e-3, "pose": 4e-3, "shift": 1e-3}


@dataclass(frozen=True)
class Refined:
    """The refined canonical mesh and the corrected fit.

    mesh: the fused mesh with its vertices moved and its weights re-derived for the final
    surface; fit: the input fit with each photo's pose and camera corrected.
    """

    mesh: FusedMesh
    fit: BodyFit
    loss_before: float
    loss_after: float


def refine(
    fused: FusedMesh,
    body: BodyModel,
    fit: BodyFit,
    rest: Rest,
    canonical: Posed,
    perceptions: list[Perception],
    depths: list[DepthMaps],
    settings: Settings,
    progress: Progress | None = None,
) -> Refined:
    """Forward-skinning refinement of the fused canonical mesh against every photo.

    rest: the fitted body at rest (`fit.phenotype`); canonical: that body in the canonical
    pose (A or T) the fused mesh stands in; perceptions and depths: one per photo, in the
    working crops that `fit.cameras` see.
    """
    progress = progress or Progress()
    steps = settings.refine_iterations
    device = torch_device(settings.device)
    rest_frames = rest.bone_matrices.detach().to(device)
    canonical_frames = canonical.bone_matrices.detach().to(device)
    poses = torch.as_tensor(fit.poses, dtype=torch.float32, device=device)
    count = len(perceptions)

    vertices = torch.as_tensor(fused.vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(fused.faces, dtype=torch.long, device=device)
    weights = torch.as_tensor(fused.weights, device=device)  # ≤ max_influences per row, sum 1
    laplacian, spread = (_Operator.on(m, device) for m in
                         _mesh_operators(fused.faces, len(fused.vertices)))  # fmt: skip
    mesh = trimesh.Trimesh(fused.vertices, fused.faces, process=False)
    pairs = torch.as_tensor(np.array(mesh.face_adjacency), dtype=torch.long, device=device)
    soft = draws_soft_silhouette(settings, count)
    doubt = count <= DOUBT_DEPTH_UP_TO
    photos = [_PhotoTerms.build(p, d, fit.cameras[i], i, device, soft, doubt)
              for i, (p, d) in enumerate(zip(perceptions, depths, strict=True))]  # fmt: skip

    raw = torch.zeros_like(vertices, requires_grad=True)
    turns = torch.zeros(count, len(body.parents), 3, device=device, requires_grad=True)
    free = torch.ones(len(body.parents), 1, device=device)
    if count > CORRECT_POSES_UP_TO:
        free[1:] = 0.0
    shifts = torch.zeros(count, 3, device=device, requires_grad=True)
    optimiser = torch.optim.Adam(
        [
            {"params": [raw], "lr": LEARNING_RATES["offsets"]},
            {"params": [turns], "lr": LEARNING_RATES["pose"]},
            {"params": [shifts], "lr": LEARNING_RATES["shift"]},
        ]
    )

    def smoothed() -> torch.Tensor:
        """(V, 3) the offsets: the raw unknowns spread over a few rings of neighbours, so
        that no step can pull out a single vertex (a spike) however a term pulls on it."""
        return spread(raw, SPREAD_STEPS)

    def posed_in_photos(offsets: torch.Tensor) -> torch.Tensor:
        """(N, V, 3) the corrected mesh in every photo's camera space."""
        corrected = poses @ skinning.axis_angle_to_matrix(turns * free)
        frames = skinning.forward_kinematics(rest_frames.expand(count, -1, -1, -1),
                                             body.parents, corrected)  # fmt: skip
        transforms = skinning.skinning_transforms(frames, canonical_frames.expand_as(frames))
        blended = (weights @ transforms.flatten(2)).unflatten(2, (4, 4))
        points = vertices + offsets
        world = (blended[..., :3, :3] @ points[None, ..., None])[..., 0] + blended[..., :3, 3]
        return torch.stack([ph.to_camera(world[i]) + shifts[i] for i, ph in enumerate(photos)])

    first = last = 0.0
    for step in range(steps):
        if step % VISIBILITY_REFRESH == 0:
            progress.step("refining against the photos", step / max(steps, 1))
            with torch.no_grad():
                cam = posed_in_photos(smoothed())
            visible = [ph.visible(cam[i], fused.faces) for i, ph in enumerate(photos)]
        optimiser.zero_grad()
        offsets = smoothed()
        cam = posed_in_photos(offsets)
        image = (
            sum(
                (ph.loss(cam[i], visible[i], faces) for i, ph in enumerate(photos)),
                torch.zeros((), device=device),
            )
            / count
        )
        points = vertices + offsets
        smooth = (laplacian(offsets) ** 2).sum(1).mean()
        normals = _face_normals(points, faces)
        folds = (1 - (normals[pairs[:, 0]] * normals[pairs[:, 1]]).sum(1)).mean()
        loss = (
            image
            + WEIGHTS["laplacian"] * smooth
            + WEIGHTS["normals"] * folds
            + WEIGHTS["pose"] * ((turns * free) ** 2).sum(-1).mean()
            + WEIGHTS["shift"] * (shifts**2).sum(-1).mean()
        )
        loss.backward()
        optimiser.step()
        if step == 0:
            first = float(image.detach())
        last = float(image.detach())
    progress.step("refining against the photos", 1.0)
    log.info("refinement: image loss %.2f -> %.2f in %d steps", first, last, steps)

    with torch.no_grad():
        moved = (vertices + smoothed()).cpu().numpy()
    log.info("refinement moved vertices by %.1f mm at most", 1e3 * float(
        np.linalg.norm(moved - fused.vertices, axis=1).max()))  # fmt: skip
    body_canonical = canonical.vertices[0].detach().numpy()
    weights = transfer_weights(moved, fused.faces, body_canonical,
                               body.skin_weights.numpy(), settings.max_influences)  # fmt: skip
    corrected = (poses @ skinning.axis_angle_to_matrix(turns * free)).detach().cpu().numpy()
    moves = shifts.detach().cpu().numpy()
    cameras = [
        replace(c, translation=(c.translation + moves[i]).astype(np.float32))
        for i, c in enumerate(fit.cameras)
    ]
    return Refined(
        FusedMesh(moved.astype(np.float32), fused.faces, weights),
        replace(fit, poses=corrected.astype(np.float32), cameras=cameras),
        first,
        last,
    )


def draws_soft_silhouette(settings: Settings, photos: int) -> bool:
    """Whether the refinement of `photos` photos adds the soft silhouette term."""
    if settings.soft_silhouette is None:
        return photos >= SOFT_FROM_PHOTOS
    return settings.soft_silhouette


@dataclass
class _PhotoTerms:
    """One photo's targets: camera, silhouette, front and back depth, in reference pixels."""

    rotation: torch.Tensor
    translation: torch.Tensor
    camera: Camera
    scale: float
    silhouette: SilhouetteTarget
    layers: tuple[torch.Tensor, torch.Tensor]
    """Front and back: (1, 2, H, W) depth in metres, 0 where the photo has none, and each
    depth's weight in [0, 1] (see `DOUBT_DEPTH_UP_TO`)."""
    soft_mask: torch.Tensor | None
    """(h, w) the mask at SOFT_RESOLUTION for the soft silhouette term; None: projected terms."""

    @staticmethod
    def build(
        perception: Perception,
        depth: DepthMaps,
        camera: Camera,
        index: int,
        device: torch.device,
        soft: bool = False,
        doubt: bool = False,
    ) -> _PhotoTerms:
        scale = REFERENCE_SIDE / max(camera.height, camera.width)
        layers = []
        for z, spread in ((depth.front, depth.spread_front), (depth.back, depth.spread_back)):
            known = np.isfinite(z) & depth.mask
            trust = np.ones(z.shape, np.float32)
            if doubt and spread is not None:
                trust = spread_confidence(spread) ** 2
            stacked = np.stack([np.where(known, z, 0.0), trust])
            layers.append(torch.as_tensor(stacked, dtype=torch.float32, device=device)[None])
        target = _to_mask_edge(silhouette_target(perception.mask, scale, seed=index))
        return _PhotoTerms(
            torch.as_tensor(camera.rotation, dtype=torch.float32, device=device),
            torch.as_tensor(camera.translation, dtype=torch.float32, device=device),
            camera,
            scale,
            replace(target, outside=target.outside.to(device), samples=target.samples.to(device)),
            (layers[0], layers[1]),
            _soft_mask(perception.mask, camera, device) if soft else None,
        )

    def to_camera(self, world: torch.Tensor) -> torch.Tensor:
        return world @ self.rotation.T + self.translation

    def visible(self, cam: torch.Tensor, faces: np.ndarray) -> torch.Tensor:
        """(2, V) bool: vertices this photo sees squarely (on the rendered front surface,
        facing the camera), and those its back depth speaks for (on the rendered farthest
        surface, facing away): at grazing angles the depth maps' steep rims say little.
        Decided on the CPU, where our rasteriser runs; returned on `cam`'s device."""
        device, cam, faces_t = cam.device, cam.cpu(), torch.as_tensor(faces)
        small = self.camera.scaled(VISIBILITY_SCALE)
        screen = project_camera_points(cam, small)
        u = screen[:, 0].round().long().clamp(0, small.width - 1)
        v = screen[:, 1].round().long().clamp(0, small.height - 1)
        normals = _vertex_normals(cam, faces_t)
        facing = -(normals * F.normalize(cam, dim=-1)).sum(-1)
        nearest, farthest = (
            rasterize(screen, faces_t, small.height, small.width, far).depth[v, u]
            for far in (False, True)
        )
        front = (cam[:, 2] <= nearest + VISIBLE_SLACK) & (facing > MIN_FACING)
        back = (cam[:, 2] >= farthest - VISIBLE_SLACK) & (facing < -MIN_FACING)
        return torch.stack([front, back]).to(device)

    def loss(self, cam: torch.Tensor, visible: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        screen = project_camera_points(cam, self.camera)
        return self.silhouette_cost(screen, faces) + WEIGHTS["depth"] * sum(
            self.depth_cost(cam, screen, seen, layer)
            for seen, layer in zip(visible, self.layers, strict=True)
        )

    def silhouette_cost(self, screen: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """From the projected vertices alone, vertices outside the mask and mask the vertices
        do not reach (they pull from afar); with `soft_mask`, plus the soft silhouette against
        the mask pixel by pixel (squared difference over the mask's area: exact outlines)."""
        inside, coverage = silhouette_loss(screen[:, :2] * self.scale, self.silhouette,
                                           SILHOUETTE_SIGMA)  # fmt: skip
        cost = WEIGHTS["inside"] * inside + WEIGHTS["coverage"] * coverage
        if self.soft_mask is None:
            return cost
        height, width = self.soft_mask.shape
        factor = width / self.camera.width
        drawn = soft_silhouette((screen[:, :2] + 0.5) * factor - 0.5, faces, height, width)
        area = self.soft_mask.sum().clamp(min=1.0)
        return cost + WEIGHTS["soft_silhouette"] * ((drawn - self.soft_mask) ** 2).sum() / area

    def depth_cost(
        self, cam: torch.Tensor, screen: torch.Tensor, visible: torch.Tensor, layer: torch.Tensor
    ) -> torch.Tensor | float:
        """The depth of the vertices a layer speaks for against that depth map."""
        height, width = layer.shape[-2:]
        size = torch.tensor([width - 1, height - 1], dtype=cam.dtype, device=cam.device)
        grid = (2 * screen[visible, :2] / size - 1)[None, None]
        target, trust = F.grid_sample(layer, grid, mode="nearest", align_corners=True)[0, :, 0]
        known = target > 0
        z = cam[visible, 2][known]
        residual = (z - target[known]) * self.camera.fx * self.scale / z
        cost = geman_mcclure(residual**2, DEPTH_SIGMA) * trust[known]
        return cost.mean() if known.any() else 0.0


def _soft_mask(mask: np.ndarray, camera: Camera, device: torch.device) -> torch.Tensor:
    """The photo's mask at SOFT_RESOLUTION pixels on its longer side, each pixel the fraction
    of it the person covers."""
    factor = SOFT_RESOLUTION / max(camera.height, camera.width)
    size = (round(camera.width * factor), round(camera.height * factor))
    small = cv2.resize((mask > 0.5).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return torch.as_tensor(small, device=device)


def _to_mask_edge(target: SilhouetteTarget) -> SilhouetteTarget:
    """The target with distances to the mask's edge, half a pixel beyond the centres of its
    outermost pixels: measured to the centres, the inside term would shrink the silhouette
    by about a pixel all round (a few points of IoU)."""
    edge = (target.outside - 0.5 * target.scale).clamp(min=0.0)
    return replace(target, outside=edge)


def _mesh_operators(
    faces: np.ndarray, count: int
) -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix]:
    """(V, V) sparse uniform Laplacian (each vertex minus the mean of its neighbours) and
    spreading operator (the mean over a vertex and its neighbours)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    both = np.concatenate([edges, edges[:, ::-1]])
    adjacency = scipy.sparse.coo_matrix(
        (np.ones(len(both)), (both[:, 0], both[:, 1])), shape=(count, count)
    ).tocsr()
    degree = np.asarray(adjacency.sum(1)).ravel()
    eye = scipy.sparse.eye(count)
    laplacian = eye - scipy.sparse.diags(1.0 / np.maximum(degree, 1)) @ adjacency
    spread = scipy.sparse.diags(1.0 / (degree + 1)) @ (adjacency + eye)
    return laplacian.astype(np.float32).tocsr(), spread.astype(np.float32).tocsr()


@dataclass(frozen=True)
class _Operator:
    """A fixed sparse (V, V) matrix applied to (V, 3) tensors: through scipy on the CPU (see
    `_SparseProduct`), through `gpu`, the same matrix as a torch tensor, elsewhere."""

    matrix: scipy.sparse.csr_matrix
    gpu: torch.Tensor | None = None

    @staticmethod
    def on(matrix: scipy.sparse.csr_matrix, device: torch.device) -> _Operator:
        return _Operator(matrix, None if device.type == "cpu" else _torch_sparse(matrix, device))

    def __call__(self, x: torch.Tensor, times: int = 1) -> torch.Tensor:
        """matrix^times @ x, differentiable in x."""
        if self.gpu is None:
            return _SparseProduct.apply(x, self.matrix, times)
        for _ in range(times):
            x = torch.sparse.mm(self.gpu, x)
        return x


def _torch_sparse(matrix: scipy.sparse.spmatrix, device: torch.device) -> torch.Tensor:
    coo = matrix.tocoo()
    indices = torch.as_tensor(np.stack([coo.row, coo.col]), dtype=torch.long)
    values = torch.as_tensor(coo.data, dtype=torch.float32)
    sparse = torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=True)
    return sparse.coalesce().to(device)


class _SparseProduct(torch.autograd.Function):
    """matrix^times @ x for a fixed scipy sparse matrix, differentiable in x: scipy's
    sparse products are several times faster on the CPU than torch's, backward included
    (they were most of a refinement step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: scipy.sparse.csr_matrix, times: int) -> torch.Tensor:
        ctx.matrix, ctx.times = matrix, times
        return _power_product(matrix, x, times)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _power_product(ctx.matrix.T, grad, ctx.times), None, None


def _power_product(matrix: scipy.sparse.spmatrix, x: torch.Tensor, times: int) -> torch.Tensor:
    y = x.detach().numpy()
    for _ in range(times):
        y = matrix @ y
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def _vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V, 3) unit area-weighted vertex normals."""
    tri = vertices[faces]
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = torch.zeros_like(vertices).index_add_(
        0, faces.reshape(-1), area.repeat_interleave(3, 0)
    )
    return F.normalize(normals, dim=-1)


def _face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) unit face normals."""
    tri = vertices[faces]
    return F.normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dim=-1)
