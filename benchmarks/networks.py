"""The networks benchmark, on held-out synthetic data the networks never trained on.

    python benchmarks/networks.py            # full figures: under a minute
    python benchmarks/networks.py --quick    # fewer bodies and points: seconds

Autoencoder (network 2), through the shipped ONNX encoder and decoder:
- `ae_weight_mae`: held-out points (phenotypes and a seed no training run used; points on and
  between vertices and clothing-like points) encoded and decoded; per point the sum over
  bones of |decoded - true| (0 = exact, 2 = disjoint weights), averaged over points.
  `ae_vertex_mae`: the same for the body's own vertex weights; `ae_weight_mae_<kind>`: per
  kind of point.
- `ae_repose_mm`: the mean vertex distance (mm) when bodies of held-out phenotypes are posed
  in 20 varied poses with the decoded instead of the true weights of their own vertices;
  `ae_points_repose_mm`: the same for the held-out points; `ae_repose_mm_latent_noise_<σ>`:
  with Gaussian noise of std σ added to the latent first (network 1 never predicts it exactly).
- baselines with the same number of numbers per point: PCA of the weights (clamped at zero,
  renormalised) and keeping the top-k bones (k bone indices and k - 1 weights).
- `ms_per_1k_points`: decoder time per 1000 points (a 512 x 512 latent map), CPU provider.

Network 1 (`benchmarks/depth_net.py`, held-out synthetic people): `depth_err_ratio`, its front
and back depth error over the body prior's inside the true silhouette; `lbs_err`, its
per-pixel skinning error; `ms_per_photo`.
Last line: `networks: ae_repose_mm=… depth_err_ratio=… lbs_err=… ms_per_photo=…`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from depth_net import depth_figures

from photo_avatar.core import skinning
from photo_avatar.core.body_model import BodyModel, load_body_model
from photo_avatar.models.lbs_autoencoder import WEIGHTS_DIR
from photo_avatar.models.runtime import LbsCodec
from photo_avatar.models.train_lbs_autoencoder import (
    KINDS,
    heldout_points,
    random_phenotypes,
    sample_points,
)

BENCHMARK_SEED = 20_000
"""Phenotypes and poses of the benchmark: a seed no training run uses."""
POSE_SIGMA = 0.35
"""Std of each axis-angle component of a random bone rotation, radians (about 35° a bone)."""
LATENT_NOISE = (0.02, 0.05)
"""Std of the Gaussian errors added to the latent to mimic network 1's prediction errors."""

Codec = Callable[[torch.Tensor], torch.Tensor]
"""(N, J) weights -> (N, J) weights after a round trip through some compact code."""


def random_poses(body: BodyModel, count: int, seed: int) -> torch.Tensor:
    """(count, J, 3, 3) varied poses: every bone but the root turned by a random rotation
    (axis-angle components ~ N(0, POSE_SIGMA²)), fingers and face included."""
    g = torch.Generator().manual_seed(seed)
    axis_angle = POSE_SIGMA * torch.randn(count, len(body.bone_names), 3, generator=g)
    axis_angle[:, [j for j, p in enumerate(body.parents) if p < 0]] = 0.0
    return skinning.axis_angle_to_matrix(axis_angle)


def repose_error_mm(
    body: BodyModel,
    phenotypes: torch.Tensor,
    poses: torch.Tensor,
    points: Callable[[torch.Tensor], torch.Tensor] | None,
    true_weights: torch.Tensor,
    decoded_weights: torch.Tensor,
) -> float:
    """Mean distance (mm) between points posed with the true and with the decoded weights.

    phenotypes (B, P); poses (T, J, 3, 3); points: the points as a function of the rest
    vertices ((V, 3) -> (N, 3)), or None for the vertices themselves; weights (N, J).
    """
    errors = []
    with torch.no_grad():
        rest = body.rest(phenotypes)
        for b in range(phenotypes.shape[0]):
            matrices = rest.bone_matrices[b : b + 1].expand(poses.shape[0], -1, -1, -1)
            posed = skinning.forward_kinematics(matrices, body.parents, poses)
            transforms = skinning.skinning_transforms(posed, matrices)
            x = rest.vertices[b] if points is None else points(rest.vertices[b])
            truth = skinning.forward_skin(x, true_weights, transforms)
            decoded = skinning.forward_skin(x, decoded_weights, transforms)
            errors.append((decoded - truth).norm(dim=-1).mean())
    return 1000.0 * float(torch.stack(errors).mean())


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) per-point sum over bones of |a - b|."""
    return (a - b).abs().sum(-1)


def pca_codec(train_weights: torch.Tensor, size: int) -> Codec:
    """Baseline: the `size` principal components of `train_weights` (N, J); decoded weights
    are clamped at zero and renormalised so they are valid skinning."""
    mean = train_weights.mean(0)
    _, _, vt = torch.linalg.svd(train_weights - mean, full_matrices=False)
    basis = vt[:size]

    def round_trip(w: torch.Tensor) -> torch.Tensor:
        decoded = ((w - mean) @ basis.T @ basis + mean).clamp(min=0)
        return decoded / decoded.sum(-1, keepdim=True).clamp(min=1e-8)

    return round_trip


def top_k_codec(size: int) -> Codec:
    """Baseline: keep the k heaviest bones, k = (size + 1) // 2 (k indices and k - 1
    weights make at most `size` numbers), renormalised."""
    k = (size + 1) // 2

    def round_trip(w: torch.Tensor) -> torch.Tensor:
        values, index = w.topk(k, dim=-1)
        kept = torch.zeros_like(w).scatter_(-1, index, values)
        return kept / kept.sum(-1, keepdim=True)

    return round_trip


def autoencoder_figures(
    quick: bool, rig: str = "mixamo", weights_dir: Path = WEIGHTS_DIR
) -> dict[str, float]:
    """The autoencoder's figures and its baselines' on held-out data (module docstring)."""
    body = load_body_model(rig)
    codec = LbsCodec(rig, weights_dir, device="cpu")
    table = body.skin_weights
    size = codec.latent_size
    figures: dict[str, float] = {"latent": size}
    phenotypes = random_phenotypes(3 if quick else 10, BENCHMARK_SEED)
    poses = random_poses(body, 20, BENCHMARK_SEED)
    # Not the held-out set the training logs either: nothing was chosen by looking at these.
    held = heldout_points(body, count=20_000 if quick else 100_000, seed=BENCHMARK_SEED)
    truth = held.weights(table)
    some = slice(0, 10_000)
    # PCA is fitted on the training distribution (seed 0, as the shipped network).
    train = sample_points(body, random_phenotypes(32, 0), 200_000, 0).weights(table)

    def network(w: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(codec.decode(codec.encode(w.numpy())))

    codecs = {"ae": network, "pca": pca_codec(train, size), "topk": top_k_codec(size)}
    for name, round_trip in codecs.items():
        vertices = round_trip(table)
        figures[f"{name}_repose_mm"] = repose_error_mm(
            body, phenotypes, poses, None, table, vertices
        )
        figures[f"{name}_vertex_mae"] = float(_l1(vertices, table).mean())
        decoded = round_trip(truth)
        error = _l1(decoded, truth)
        figures[f"{name}_weight_mae"] = float(error.mean())
        for k, kind in enumerate(KINDS):
            figures[f"{name}_weight_mae_{kind}"] = float(error[held.kind == k].mean())
        figures[f"{name}_points_repose_mm"] = repose_error_mm(
            body,
            phenotypes[:2],
            poses,
            lambda v: held.positions(v)[some],
            truth[some],
            decoded[some],
        )

    # Network 1 predicts the latent with some error: what does a small error cost?
    latent = codec.encode(table.numpy())
    rng = np.random.default_rng(BENCHMARK_SEED)
    for sigma in LATENT_NOISE:
        noisy = latent + rng.normal(0, sigma, latent.shape).astype(np.float32)
        figures[f"ae_repose_mm_latent_noise_{sigma}"] = repose_error_mm(
            body, phenotypes[:2], poses, None, table, torch.as_tensor(codec.decode(noisy))
        )

    grid = np.random.default_rng(0).uniform(0, 1, (512 * 512, size)).astype(np.float32)
    codec.decode(grid[:1024])
    runs = 1 if quick else 3
    start = time.perf_counter()
    for _ in range(runs):
        codec.decode(grid)
    figures["ms_per_1k_points"] = 1000 * (time.perf_counter() - start) / runs / (len(grid) / 1000)
    return figures


LAST_LINE = ("ae_repose_mm", "depth_err_ratio", "lbs_err", "ms_per_photo")
"""The headline figures, printed last (the issue's format); missing ones print as n/a."""


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer bodies and points")
    parser.add_argument("--rig", default="mixamo")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="ONNX folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    # One function per network, quick -> {name: value}.
    sections: list[Callable[[bool], dict[str, float]]] = [
        functools.partial(autoencoder_figures, rig=args.rig, weights_dir=args.weights),
        depth_figures,
    ]
    figures: dict[str, float] = {}
    for section in sections:
        figures |= section(args.quick)
    for key, value in figures.items():
        print(f"{key}={value:.4g}")
    print("networks: " + " ".join(f"{key}={_format(figures.get(key))}" for key in LAST_LINE))


if __name__ == "__main__":
    main()
