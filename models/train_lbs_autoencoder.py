"""Train the LBS autoencoder for one rig on the body model's weights, then export it.

    python -m photo_avatar.models.train_lbs_autoencoder --rig mixamo --out models/weights/

Data: anny's weights are per vertex and the same for every phenotype, so variety comes from
points *between* vertices, made on the rest bodies of many phenotypes: random points on
triangles (barycentric mixtures of three vertices' weights), mixtures of nearby vertices,
and clothing-like points off the surface (inverse-distance mixtures of the k nearest body
vertices, as garment weights taken from the body are). Every point is stored as a mixture
of at most `SLOTS` vertices, so the weights of any rig follow from the same samples.
Held-out data: other phenotypes and another seed (`heldout_points`). Seeded and
deterministic on the CPU for a given thread count; about three minutes on one core.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..core.body_model import RIGS, BodyModel, load_body_model
from .export_onnx import export_lbs_autoencoder
from .lbs_autoencoder import DEFAULT_LATENT, WEIGHTS_DIR, LbsAutoencoder

log = logging.getLogger(__name__)

SLOTS = 8
"""Most vertices one sample mixes."""
KINDS = {"vertex": 0.1, "triangle": 0.35, "pair": 0.2, "cloth": 0.35}
"""Share of each kind of point in the data."""
HELDOUT_SEED_OFFSET = 10_000
"""Held-out points and phenotypes come from `seed + HELDOUT_SEED_OFFSET`."""
CHECKPOINT_EVERY = 1000
"""Steps between held-out evaluations and checkpoints."""


@dataclass(frozen=True)
class PointMixtures:
    """Points given as mixtures of body vertices.

    index: (N, SLOTS) int64 vertex indices; coef: (N, SLOTS) float32 mixing coefficients,
    rows summing to one (unused slots have 0); kind: (N,) int64 index into `KINDS`.
    """

    index: torch.Tensor
    coef: torch.Tensor
    kind: torch.Tensor

    def weights(
        self, vertex_weights: torch.Tensor, rows: slice | torch.Tensor = slice(None)
    ) -> torch.Tensor:
        """(V, J) per-vertex weights -> (n, J) weights of the points `rows`."""
        return torch.einsum("nk,nkj->nj", self.coef[rows], vertex_weights[self.index[rows]])

    def positions(self, vertices: torch.Tensor) -> torch.Tensor:
        """(V, 3) rest vertices -> (N, 3) the mixtures' positions (on or inside the body)."""
        return torch.einsum("nk,nkc->nc", self.coef, vertices[self.index])

    def __len__(self) -> int:
        return int(self.index.shape[0])


def random_phenotypes(count: int, seed: int, size: int = 6) -> torch.Tensor:
    """(count, size) phenotypes uniform in [0, 1]."""
    return torch.rand(count, size, generator=torch.Generator().manual_seed(seed))


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals."""
    v = vertices[faces]
    face_normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _pack(index: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) indices and coefficients -> padded to (n, SLOTS)."""
    pad = SLOTS - index.shape[1]
    return (
        np.pad(index, ((0, 0), (0, pad))),
        np.pad(coef / coef.sum(1, keepdims=True), ((0, 0), (0, pad))),
    )


def _sample_one_body(
    vertices: np.ndarray, faces: np.ndarray, counts: dict[str, int], rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mixtures of each kind on one rest body (vertices (V, 3) metres)."""
    tree = cKDTree(vertices)
    v = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    normals = _vertex_normals(vertices, faces)

    def surface_points(n: int, by_area: bool) -> tuple[np.ndarray, np.ndarray]:
        p = area / area.sum() if by_area else None
        face = rng.choice(len(faces), size=n, p=p)
        bary = rng.dirichlet(np.ones(3), size=n)
        return faces[face], bary

    n = counts["vertex"]
    out = [_pack(rng.integers(0, len(vertices), (n, 1)), np.ones((n, 1)))]
    # Half uniform over triangles (the small, dense ones of hands and face), half over area.
    n = counts["triangle"]
    a = surface_points(n // 2, by_area=False)
    b = surface_points(n - n // 2, by_area=True)
    out.append(_pack(np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])))

    n = counts["pair"]
    first = rng.integers(0, len(vertices), n)
    _, near = tree.query(vertices[first], k=9)
    second = near[np.arange(n), rng.integers(1, 9, n)]
    t = rng.uniform(0, 1, (n, 1))
    out.append(_pack(np.stack([first, second], 1), np.concatenate([1 - t, t], 1)))

    # Garment-like points: up to 12 cm off the skin, weights from the k nearest vertices.
    n = counts["cloth"]
    tri, bary = surface_points(n, by_area=True)
    anchor = np.einsum("nk,nkc->nc", bary, vertices[tri])
    normal = np.einsum("nk,nkc->nc", bary, normals[tri])
    point = anchor + normal * rng.uniform(0, 0.12, (n, 1)) + rng.normal(0, 0.01, (n, 3))
    dist, near = tree.query(point, k=SLOTS)
    k = rng.integers(2, SLOTS + 1, n)
    power = rng.uniform(1.0, 4.0, (n, 1))
    coef = 1.0 / np.maximum(dist, 1e-4) ** power
    coef = coef / coef.max(1, keepdims=True)
    coef[np.arange(SLOTS)[None] >= k[:, None]] = 0.0
    out.append(_pack(near, coef))
    return out


def sample_points(
    body: BodyModel, phenotypes: torch.Tensor, count: int, seed: int
) -> PointMixtures:
    """`count` mixtures spread evenly over the rest bodies of `phenotypes` (B, P)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        rest = body.rest(phenotypes).vertices.numpy().astype(np.float64)
    per_body = count // len(phenotypes)
    counts = {k: round(per_body * share) for k, share in KINDS.items()}
    index, coef, kind = [], [], []
    for vertices in rest:
        for k, (i, c) in enumerate(_sample_one_body(vertices, body.faces, counts, rng)):
            index.append(i)
            coef.append(c)
            kind.append(np.full(len(i), k))
    return PointMixtures(
        torch.as_tensor(np.concatenate(index), dtype=torch.int64),
        torch.as_tensor(np.concatenate(coef), dtype=torch.float32),
        torch.as_tensor(np.concatenate(kind), dtype=torch.int64),
    )


def heldout_points(body: BodyModel, count: int = 40_000, seed: int = 0) -> PointMixtures:
    """Points the training never saw: other phenotypes, another seed."""
    seed = seed + HELDOUT_SEED_OFFSET
    return sample_points(body, random_phenotypes(8, seed), count, seed)


def lbs_loss(
    target: torch.Tensor, log_prob: torch.Tensor, kl_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 x10 on the weights plus the KL divergence of the decoded from the true weights.

    target: (N, J) true weights; log_prob: (N, J) decoder log-probabilities. The KL term
    pushes hard on mass leaking to bones a point has no weight on (softmax never gives an
    exact zero) — the reference's sparsity and KL terms in one.
    """
    l1 = (log_prob.exp() - target).abs().sum(-1).mean()
    kl = (torch.xlogy(target, target) - target * log_prob).sum(-1).mean()
    loss = 10.0 * l1 + kl_weight * kl
    return loss, {"l1": l1.item(), "kl": kl.item()}


def _checkpoint_path(args: argparse.Namespace) -> Path:
    """A temp file named by every setting, so a resumed run never mixes two recipes."""
    name = (
        f"lbs_autoencoder_{args.rig}_latent{args.latent}_steps{args.steps}_batch{args.batch}"
        f"_lr{args.lr}_noise{args.latent_noise}_seed{args.seed}.ckpt"
    )
    return Path(tempfile.gettempdir()) / name


def train(
    rig: str = "mixamo",
    latent: int = 4,
    steps: int = 15_000,
    batch: int = 1024,
    lr: float = 3e-3,
    points: int = 800_000,
    phenotypes: int = 32,
    latent_noise: float = 0.05,
    seed: int = 0,
    checkpoint: Path | None = None,
) -> tuple[LbsAutoencoder, dict]:
    """Train the autoencoder for `rig`; deterministic for a given seed and thread count.

    latent_noise: std of Gaussian noise added to the latent before decoding, so the decoder
    stays calm near the codes it was trained on (network 1's predictions are never exact).

    Every `CHECKPOINT_EVERY` steps the whole training state goes to `checkpoint`, and a run
    that finds one there resumes from it (the data is remade from the seed). Returns the
    model (eval mode) and what the training measured (`info`, saved beside the weights).
    """
    torch.manual_seed(seed)
    body = load_body_model(rig)
    table = body.skin_weights
    start = time.perf_counter()
    data = sample_points(body, random_phenotypes(phenotypes, seed), points, seed)
    held = heldout_points(body, seed=seed)
    held_weights = held.weights(table)
    log.info("%d training points in %.1f s", len(data), time.perf_counter() - start)
    model = LbsAutoencoder(table.shape[1], latent)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=steps, pct_start=0.05
    )
    generator = torch.Generator().manual_seed(seed)
    first, seconds = 0, 0.0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        first, seconds = state["step"], state["seconds"]
        log.info("resuming from %s at step %d", checkpoint, first)
    start = time.perf_counter() - seconds
    held_l1 = float("nan")
    for step in range(first, steps):
        rows = torch.randint(0, len(data), (batch,), generator=generator)
        target = data.weights(table, rows)
        z = model.encode(target)
        if latent_noise > 0:
            z = z + latent_noise * torch.randn(z.shape, generator=generator)
        log_prob = torch.log_softmax(model.decoder[:-1](z), dim=-1)
        loss, parts = lbs_loss(target, log_prob)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        done = step + 1
        if done % CHECKPOINT_EVERY == 0 or done == steps:
            with torch.no_grad():
                held_l1 = float(_l1(model.decode(model.encode(held_weights)), held_weights).mean())
            log.info(
                "step %d  l1 %.4f  kl %.4f  held-out l1 %.4f  %.0f s",
                done, parts["l1"], parts["kl"], held_l1, time.perf_counter() - start,
            )  # fmt: skip
            if checkpoint is not None:
                torch.save(
                    {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                     "schedule": schedule.state_dict(), "generator": generator.get_state(),
                     "step": done, "seconds": time.perf_counter() - start},
                    checkpoint,
                )  # fmt: skip
    info = {
        "rig": rig,
        "bone_names": list(body.bone_names),
        "latent": latent,
        "points": points,
        "phenotypes": phenotypes,
        "seed": seed,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "latent_noise": latent_noise,
        "train_seconds": round(time.perf_counter() - start, 1),
        "heldout_l1": held_l1,
    }
    return model.eval(), info


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) per-point sum over bones of |a - b| (0 = exact, 2 = disjoint)."""
    return (a - b).abs().sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rig", default="mixamo", choices=RIGS)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--latent", type=int, default=DEFAULT_LATENT, help="latent size")
    parser.add_argument("--steps", type=int, default=15_000)
    parser.add_argument("--batch", type=int, default=1024, help="points per step")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument(
        "--latent-noise", type=float, default=0.05, help="std of noise added to the latent"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--checkpoint", type=Path, help="resumable training state (default: in the temp folder)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or _checkpoint_path(args)
    model, info = train(
        args.rig,
        args.latent,
        args.steps,
        args.batch,
        args.lr,
        latent_noise=args.latent_noise,
        seed=args.seed,
        checkpoint=checkpoint,
    )
    log.info("trained in %.0f s; held-out l1 %.4f", info["train_seconds"], info["heldout_l1"])
    for path in export_lbs_autoencoder(model, args.rig, args.out, info):
        log.info("wrote %s (%.1f kB)", path, path.stat().st_size / 1e3)
    checkpoint.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
