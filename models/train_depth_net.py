"""Train network 1 on the CPU from shards made by `models.depth_data`, and export it to ONNX.

    python -m photo_avatar.models.train_depth_net --data DIR --checkpoints DIR --steps 900
    python -m photo_avatar.models.train_depth_net --data DIR --checkpoints DIR --export
    python -m photo_avatar.models.train_depth_net --data NEW --checkpoints DIR2 --spread
    python -m photo_avatar.models.train_depth_net --checkpoints DIR2 --export

`--spread` trains the error head alone on top of the shipped weights (`TORCH_PATH`), frozen:
on people the depth head never saw (`NEW`, other seeds), so that it learns the error the
network makes on new people, not the smaller one it makes on its training set.

Seeded and resumable: every batch is drawn from (seed, step), and `last.pt` in the checkpoint
folder (written every `--every-minutes`) holds the model, the optimiser and the step, so a
killed run started again with the same arguments carries on where it stopped. The last 5 %
of the people are kept aside to report validation error next to the body prior's.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .depth_data import load_shards
from .depth_net import (
    CHANNELS,
    DEPTH_SCALE,
    INPUTS,
    SIDE,
    STEM,
    DepthNet,
    error_by_doubt,
    network_inputs,
)

log = logging.getLogger(__name__)

ONNX_PATH = Path(__file__).parent / "weights" / "depth_net.onnx"
TORCH_PATH = ONNX_PATH.with_suffix(".pt")
"""The trained weights alone (no optimiser), for refinement and the ONNX-vs-torch test."""
LATENT_LOSS = 0.5
"""Weight of the L1 latent loss next to the depth loss (normalised depth units)."""


def prepare(data: dict[str, np.ndarray], latent_seeds_from: int = 0) -> dict[str, torch.Tensor]:
    """Network inputs, targets and the pixels each loss counts, for every sample.

    inputs (N, 6, S, S); depth (N, 2, S, S) normalised true front/back; prior (N, 2, S, S)
    normalised prior; valid (N, 1, S, S) inside both the true silhouette and the prior;
    latents (N, 2L, S, S); latent_valid (N, 1, 1, 1) people with seeds from
    `latent_seeds_from` (whose latents the current autoencoder encoded); references (N,) metres.
    """
    inputs, depth, references = [], [], []
    for i in range(len(data["image"])):
        x, reference = network_inputs(
            data["image"][i], data["mask"][i], data["prior_front"][i], data["prior_back"][i]
        )
        inputs.append(x)
        references.append(reference)
        truth = np.stack([data["front"][i], data["back"][i]])
        depth.append(np.where(np.isfinite(truth), (truth - reference) / DEPTH_SCALE, 0.0))
    valid = data["true_mask"] & np.isfinite(data["prior_front"])
    latents = np.concatenate([data["latent_front"], data["latent_back"]], -1)
    x = torch.as_tensor(np.stack(inputs))
    return {
        "inputs": x,
        "depth": torch.as_tensor(np.stack(depth), dtype=torch.float32),
        "prior": x[:, 4:6].clone(),
        "valid": torch.as_tensor(valid[:, None]),
        "latents": torch.as_tensor(latents.transpose(0, 3, 1, 2).astype(np.float32)),
        "latent_valid": torch.as_tensor(data["seed"] >= latent_seeds_from).view(-1, 1, 1, 1),
        "references": torch.as_tensor(references),
    }


def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Colour augmentation of the RGB channels of a batch (B, 6, S, S): per-channel gain and
    offset, sometimes swapped channels or grey, and sensor noise; depth and mask untouched.
    (No mirroring: it would swap left and right bones in the skinning latents.)"""
    x = x.clone()
    b = x.shape[0]
    rgb = x[:, :3]
    for i in range(b):
        if rng.random() < 0.3:
            rgb[i] = rgb[i, torch.as_tensor(rng.permutation(3))]
        if rng.random() < 0.1:
            rgb[i] = rgb[i].mean(0, keepdim=True).expand(3, -1, -1)
    gain = torch.as_tensor(rng.uniform(0.75, 1.25, (b, 3, 1, 1)), dtype=torch.float32)
    offset = torch.as_tensor(rng.uniform(-0.2, 0.2, (b, 1, 1, 1)), dtype=torch.float32)
    noise = torch.as_tensor(rng.uniform(0, 0.05, (b, 1, 1, 1)), dtype=torch.float32)
    x[:, :3] = ((rgb + 1) * gain - 1 + offset + noise * torch.randn_like(rgb)).clamp(-1, 1)
    return x


def losses(model: DepthNet, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(depth L1, latent L1) over the valid pixels, depth in normalised units."""
    out = model(batch["inputs"])
    valid = batch["valid"].float()
    count = valid.sum().clamp(min=1)
    depth = ((out[:, :2] - batch["depth"]).abs() * valid).sum() / (2 * count)
    if model.latent_size == 0:
        return depth, torch.zeros(())
    valid = valid * batch["latent_valid"]
    count = valid.sum().clamp(min=1)
    latent = ((out[:, 2:] - batch["latents"]).abs() * valid).sum() / (out.shape[1] - 2) / count
    return depth, latent


def spread_loss(model: DepthNet, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Negative log-likelihood of the depth errors under the predicted Laplace scales (up to
    a constant), over the valid pixels: the head learns the expected absolute error."""
    out = model(batch["inputs"])
    error = (out[:, :2] - batch["depth"]).abs().detach()
    scale = out[:, -2:]
    valid = batch["valid"].float()
    return (_laplace_nll(error, scale) * valid).sum() / (2 * valid.sum().clamp(min=1))


def _laplace_nll(error: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Per pixel, -log of the Laplace density of `error` with scale `scale`, less log 2."""
    return error / scale + scale.log()


@torch.no_grad()
def validate_spread(model: DepthNet, tensors: dict[str, torch.Tensor]) -> tuple[float, ...]:
    """Mean depth error (cm) of the pixels whose predicted error is in the lowest and the
    highest fifth, the mean predicted and the mean true error (cm), and the loss: the head
    is useful when the first two differ and the third is near the fourth."""
    model.eval()
    out = torch.cat(
        [model(tensors["inputs"][i : i + 32]) for i in range(0, len(tensors["inputs"]), 32)]
    )
    valid = tensors["valid"].expand(-1, 2, -1, -1)
    error = (out[:, :2] - tensors["depth"]).abs()[valid]
    scale = out[:, -2:][valid]
    cm = 100 * DEPTH_SCALE
    nll = _laplace_nll(error, scale).mean().item()
    least, most = error_by_doubt(error.numpy(), scale.numpy())
    return (
        least * cm,
        most * cm,
        scale.mean().item() * cm,
        error.mean().item() * cm,
        nll,
    )


def train_spread(args: argparse.Namespace) -> None:
    """Train only the error head of the shipped network (see the module's docstring)."""
    torch.manual_seed(args.seed)
    tensors = prepare(load_shards(args.data))
    n = len(tensors["inputs"])
    held = max(1, n // args.views // 10) * args.views
    train_index, val = np.arange(n - held), _subset(tensors, np.arange(n - held, n))
    shipped = torch.load(TORCH_PATH, weights_only=True)
    model = DepthNet(**{**shipped["config"], "spread": True})
    missing, _ = model.load_state_dict(shipped["model"], strict=False)
    assert all(name.startswith("spread.") for name in missing), missing
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("spread.")
    optimiser = torch.optim.AdamW(model.spread.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=args.lr, total_steps=args.steps, pct_start=0.05
    )
    model.eval()  # the frozen layers keep their batch-norm statistics
    running = []
    for step in range(1, args.steps + 1):
        rng = np.random.default_rng([args.seed, step])
        batch = _subset(tensors, rng.choice(train_index, args.batch, replace=False))
        batch["inputs"] = augment(batch["inputs"], rng)
        loss = spread_loss(model, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running.append(loss.item())
        if step % 50 == 0 or step == args.steps:
            log.info("step %d: loss %.3f", step, np.mean(running))
            running.clear()
        if step % 500 == 0 or step == args.steps:
            log.info(
                "val: error %.2f cm where the head expects least, %.2f cm where most; "
                "expected %.2f cm, true %.2f cm; loss %.3f",
                *validate_spread(model, val),
            )
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": model.config, "step": args.steps},
               args.checkpoints / "last.pt")  # fmt: skip


def _subset(tensors: dict[str, torch.Tensor], index: np.ndarray) -> dict[str, torch.Tensor]:
    return {k: v[torch.as_tensor(index)] for k, v in tensors.items()}


@torch.no_grad()
def validate(model: DepthNet, tensors: dict[str, torch.Tensor]) -> tuple[float, float, float]:
    """Mean front/back depth error in cm of the network and of the prior, and latent L1."""
    model.eval()
    out = torch.cat(
        [model(tensors["inputs"][i : i + 32]) for i in range(0, len(tensors["inputs"]), 32)]
    )
    model.train()
    valid = tensors["valid"].expand(-1, 2, -1, -1)
    cm = 100 * DEPTH_SCALE
    net = (out[:, :2] - tensors["depth"]).abs()[valid].mean().item() * cm
    prior = (tensors["prior"] - tensors["depth"]).abs()[valid].mean().item() * cm
    if model.latent_size == 0:
        return net, prior, float("nan")
    counted = tensors["valid"] & tensors["latent_valid"]
    lat = (out[:, 2:] - tensors["latents"]).abs()[counted.expand_as(out[:, 2:])]
    return net, prior, lat.mean().item()


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    data = load_shards(args.data)
    tensors = prepare(data, args.latent_seeds_from)
    n = len(tensors["inputs"])
    people = n // args.views
    held = max(1, people // 20) * args.views
    train_index, val_index = np.arange(n - held), np.arange(n - held, n)
    val = _subset(tensors, val_index)
    log.info("%d training samples, %d validation", len(train_index), held)
    model = DepthNet(
        latent_size=tensors["latents"].shape[1] // 2 if args.latents else 0,
        channels=tuple(args.channels),
        stem=args.stem,
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=args.lr, total_steps=args.steps, pct_start=0.05
    )
    args.checkpoints.mkdir(parents=True, exist_ok=True)
    last = args.checkpoints / "last.pt"
    step = 0
    if last.exists():
        state = torch.load(last, weights_only=True)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        log.info("resumed at step %d", step)

    def save() -> None:
        state = {
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "step": step,
            "config": model.config,
        }
        torch.save(state, last.with_suffix(".tmp"))
        last.with_suffix(".tmp").rename(last)
        net, prior, lat = validate(model, val)
        log.info(
            "step %d: val depth %.2f cm (prior %.2f cm), latent L1 %.4f", step, net, prior, lat
        )

    saved = time.monotonic()
    running = []
    while step < args.steps:
        rng = np.random.default_rng([args.seed, step])
        batch = _subset(tensors, rng.choice(train_index, args.batch, replace=False))
        batch["inputs"] = augment(batch["inputs"], rng)
        depth, latent = losses(model, batch)
        loss = depth + LATENT_LOSS * latent
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        step += 1
        running.append((depth.item(), latent.item()))
        if step % 25 == 0:
            d, lt = np.mean(running, 0)
            log.info("step %d: depth %.2f cm, latent %.4f", step, d * 100 * DEPTH_SCALE, lt)
            running.clear()
        if time.monotonic() - saved > 60 * args.every_minutes:
            save()
            saved = time.monotonic()
    save()


def export(checkpoints: Path, path: Path = ONNX_PATH) -> None:
    """Write the model of `checkpoints/last.pt` to ONNX (batch axis dynamic; with an error
    head, its two channels as a second output, "spread") and its weights to `TORCH_PATH`."""
    state = torch.load(checkpoints / "last.pt", weights_only=True)
    model = DepthNet(**state["config"])
    model.load_state_dict(state["model"])
    model.eval()
    torch.save({"model": state["model"], "config": state["config"]}, TORCH_PATH)
    example = torch.zeros(1, INPUTS, SIDE, SIDE)
    names = ["outputs", "spread"] if model.spread is not None else ["outputs"]
    torch.onnx.export(
        _Outputs(model),
        (example,),
        str(path),
        input_names=["inputs"],
        output_names=names,
        dynamic_axes={"inputs": {0: "batch"}, **{name: {0: "batch"} for name in names}},
        opset_version=17,
        dynamo=False,
    )
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)


class _Outputs(torch.nn.Module):
    """The network with its error channels split off as an output of their own, so that
    readers of the first output see the same channels with or without the head."""

    def __init__(self, model: DepthNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return (out[:, :-2], out[:, -2:]) if self.model.spread is not None else (out,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/net1_data/train"))
    parser.add_argument("--checkpoints", type=Path, default=Path("/work/net1_ckpt"))
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--views", type=int, default=4, help="samples per person in the shards")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, nargs="+", default=list(CHANNELS))
    parser.add_argument("--stem", type=int, default=STEM)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every-minutes", type=float, default=4.0)
    parser.add_argument(
        "--latents",
        action="store_true",
        help="also learn the skinning latents (needs shards encoded by the shipped autoencoder)",
    )
    parser.add_argument(
        "--latent-seeds-from",
        type=int,
        default=0,
        help="learn latents only from people with seeds from here (shards made after the "
        "autoencoder last changed)",
    )
    parser.add_argument(
        "--spread", action="store_true", help="train the error head of the shipped network"
    )
    parser.add_argument("--export", action="store_true", help="only export last.pt to ONNX")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.export:
        export(args.checkpoints)
    elif args.spread:
        train_spread(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
