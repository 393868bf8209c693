"""The LBS autoencoder (network 2 of CanonicalFusion): per-point skinning weights over the
rig's J bones <-> a latent of a few numbers in [0, 1].

Network 1 predicts the latent per pixel instead of J weights, and the decoder turns it back
into weights that are non-negative and sum to one (softmax), so any latent a network predicts
decodes to valid skinning. The encoder is only needed to make training targets.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""Where the shipped weights live: `lbs_autoencoder_<rig>.pt` (torch) and
`lbs_encoder_<rig>.onnx`, `lbs_decoder_<rig>.onnx`."""

HIDDEN = (128, 256, 128, 64)
"""Encoder widths from the input side; the decoder mirrors them (the reference's MLP)."""
DEFAULT_LATENT = 4
"""Latent size of the shipped models (chosen by the sweep in MODEL_CARD.md)."""


def _mlp(sizes: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            # Smooth activations keep the decoder smooth in the latent, so the small errors
            # of a predicted latent give small errors in the weights.
            layers.append(nn.SiLU())
    return layers


class LbsAutoencoder(nn.Module):
    """Skinning weights (N, J) -> latent (N, L) in [0, 1] -> weights (N, J).

    `encoder` and `decoder` are plain `nn.Sequential`s (sigmoid and softmax included), so
    each exports to ONNX on its own.
    """

    def __init__(
        self, bones: int, latent: int = DEFAULT_LATENT, hidden: tuple[int, ...] = HIDDEN
    ) -> None:
        super().__init__()
        self.bones = bones
        self.latent = latent
        self.hidden = tuple(hidden)
        self.encoder = nn.Sequential(*_mlp([bones, *hidden, latent]), nn.Sigmoid())
        self.decoder = nn.Sequential(*_mlp([latent, *reversed(hidden), bones]), nn.Softmax(dim=-1))

    def encode(self, weights: torch.Tensor) -> torch.Tensor:
        """(..., J) weights, rows summing to one -> (..., L) latent in [0, 1]."""
        return self.encoder(weights)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., L) latent -> (..., J) weights, non-negative, rows summing to one."""
        return self.decoder(latent)

    def forward(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, J) weights -> ((N, L) latent, (N, J) decoder log-probabilities)."""
        latent = self.encode(weights)
        logits = self.decoder[:-1](latent)
        return latent, torch.log_softmax(logits, dim=-1)


def load_lbs_autoencoder(rig: str = "mixamo", weights_dir: Path = WEIGHTS_DIR) -> LbsAutoencoder:
    """The trained torch autoencoder of `rig` (eval mode, CPU), for training and refinement."""
    saved = torch.load(Path(weights_dir) / f"lbs_autoencoder_{rig}.pt", weights_only=True)
    model = LbsAutoencoder(saved["bones"], saved["latent"], tuple(saved["hidden"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()
