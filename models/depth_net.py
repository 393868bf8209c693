"""Network 1: the clothed person's front and back depth and skinning latents, per photo.

A small U-Net (after CanonicalFusion's attention U-Net, without the attention gates, which
did not fit the CPU budget). Input: the working crop resized to `SIDE` pixels — RGB, the
person mask and the body prior's front and back depth, as depth relative to a reference
(the median of the prior's mid-depth) over `DEPTH_SCALE`. Output: a correction of the
prior's mid-depth and half-thickness, so front ≤ back holds by construction, and the front
and back LBS latents (sigmoid, the autoencoder's [0, 1] range). A small second head, trained
after the rest on people the rest never saw, predicts how far off each depth is likely to be
(`spread`), so that fusion can believe a photo where the network knows it is good.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SIDE = 128
"""Network input side, pixels (chosen by measurement, see models/DEPTH_NET.md)."""
DEPTH_SCALE = 0.25
"""Metres per unit of the normalised depth channels."""
MIN_HALF_THICKNESS = 0.002 / DEPTH_SCALE
"""Normalised: the back stays at least 4 mm behind the front."""
STEM = 16
"""Feature channels of the one full-resolution layer (the silhouette's edges)."""
CHANNELS = (24, 48, 96, 128)
"""Feature channels per level, at SIDE / 2 down to the bottleneck at SIDE / 16."""
INPUTS = 6
"""RGB, mask, prior front, prior back."""
MIN_SPREAD = 0.002 / DEPTH_SCALE
"""Normalised: the predicted error never falls below 2 mm."""


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DepthNet(nn.Module):
    """(B, 6, S, S) normalised inputs (`network_inputs`) -> (B, 2 + 2L (+ 2), S, S):
    normalised front and back depth (front ≤ back), then the front and back latents (L each,
    in [0, 1]; none when `latent_size` is 0, a depth-only model), then, with `spread`, the
    expected absolute error of the front and back depth (normalised, the scale of a Laplace
    distribution)."""

    def __init__(
        self,
        latent_size: int = 4,
        channels: tuple[int, ...] = CHANNELS,
        stem: int = STEM,
        spread: bool = False,
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.config = {
            "latent_size": latent_size,
            "channels": tuple(channels),
            "stem": stem,
            "spread": spread,
        }
        """What `DepthNet(**config)` needs to rebuild this model (kept with its weights)."""
        self.stem = nn.Sequential(
            nn.Conv2d(INPUTS, stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        self.down = nn.ModuleList()
        cin = stem
        for c in channels:
            self.down.append(_block(cin, c))
            cin = c
        self.up = nn.ModuleList(
            _block(channels[i + 1] + channels[i], channels[i]) for i in range(len(channels) - 1)
        )
        self.top = _block(channels[0] + stem, stem)
        self.head = nn.Conv2d(stem, 2 + 2 * latent_size, 1)
        # Start as the identity on depth: the prior is a good first answer.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        # Reads the last features and the size of the correction made from them.
        self.spread = (
            nn.Sequential(
                nn.Conv2d(stem + 2, stem, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(stem, 2, 1),
            )
            if spread
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        skips = []
        h = stem
        for block in self.down:
            h = block(F.max_pool2d(h, 2))
            skips.append(h)
        for i in reversed(range(len(self.up))):
            h = self.up[i](torch.cat([_upsample(h), skips[i]], 1))
        features = self.top(torch.cat([_upsample(h), stem], 1))
        out = self.head(features)
        prior_front, prior_back = x[:, 4:5], x[:, 5:6]
        mid = 0.5 * (prior_front + prior_back) + out[:, 0:1]
        half = F.relu(0.5 * (prior_back - prior_front) + out[:, 1:2] - MIN_HALF_THICKNESS)
        half = half + MIN_HALF_THICKNESS
        parts = [mid - half, mid + half]
        if self.latent_size:
            parts.append(torch.sigmoid(out[:, 2:]))
        if self.spread is not None:
            scale = self.spread(torch.cat([features, out[:, :2].abs()], 1))
            parts.append(F.softplus(scale) + MIN_SPREAD)
        return torch.cat(parts, 1)


def error_by_doubt(error: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Mean `error` of the fifth of the pixels with the least `expected` error and of the
    fifth with the most: how well the error head ranks where the depth can be believed."""
    low, high = np.quantile(expected, [0.2, 0.8])
    return float(error[expected <= low].mean()), float(error[expected >= high].mean())


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def network_inputs(
    image: np.ndarray,
    mask: np.ndarray,
    prior_front: np.ndarray,
    prior_back: np.ndarray,
    side: int = SIDE,
) -> tuple[np.ndarray, float]:
    """The (6, side, side) float32 network input of one crop, and the reference depth
    (metres) its depth channels are relative to.

    image (H, W, 3) uint8; mask (H, W) float in [0, 1]; prior_front/back (H, W) float32
    metres, inf outside `mask > 0.5`. Square crops of any size are area-resized to `side`;
    depth is averaged over the prior's own pixels only, so the silhouette does not bleed.
    """
    inside = np.isfinite(prior_front) & np.isfinite(prior_back)
    if not inside.any():
        raise ValueError("the body prior covers no pixel")
    reference = float(np.median(0.5 * (prior_front[inside] + prior_back[inside])))
    size = (side, side)
    area = cv2.INTER_AREA
    rgb = cv2.resize(image.astype(np.float32), size, interpolation=area) / 127.5 - 1.0
    person = cv2.resize(mask.astype(np.float32), size, interpolation=area)
    cover = cv2.resize(inside.astype(np.float32), size, interpolation=area)
    depths = []
    for depth in (prior_front, prior_back):
        relative = np.where(inside, (depth - reference) / DEPTH_SCALE, 0.0).astype(np.float32)
        total = cv2.resize(relative, size, interpolation=area)
        depths.append(np.where(cover > 0.5, total / np.maximum(cover, 1e-6), 0.0))
    channels = [rgb.transpose(2, 0, 1), person[None], np.stack(depths)]
    return np.concatenate(channels).astype(np.float32), reference
