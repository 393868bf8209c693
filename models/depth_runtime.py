"""Network 1 at inference: the body prior's depth maps refined by the shipped ONNX model.

The network sees the working crop at `depth_net.SIDE` pixels and predicts the clothed front
and back depth; its correction of the prior (prediction minus prior) is upsampled to the
crop's size and added to the full-resolution prior, so the body's own detail survives.
Runs through onnxruntime, on CUDA when that provider is present, else on the CPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from ..core.avatar import DepthMaps, Perception, Photo
from .depth_net import DEPTH_SCALE, SIDE, network_inputs
from .runtime import LbsCodec, cached_session

ONNX_PATH = Path(__file__).parent / "weights" / "depth_net.onnx"
TORCH_PATH = ONNX_PATH.with_suffix(".pt")
MIN_HALF_THICKNESS = 0.002
"""Metres: the refined back stays this far behind half the front-back gap, at least."""
RIM = 0.03
"""Width of the band along the outline, as a fraction of the crop side, over which the
network's correction fades in from zero (the prior's own rim) to full."""
SHIFT = 0.03
"""Metres the network may move the prior's mid-depth (where the person is along the view
ray); its thickness correction is free. The unposing puts every point where the fitted
skeleton is, so a surface moved far from the fit (legs 10 cm off on a real photo taken
from above) tears in the canonical pose."""
CONTAIN = 0.02
"""Metres the refined front may lie behind the prior's front, and the back before its
back: the prior is the fitted body grown to the silhouette, and clothes lie on the body
(a little slack for a fit that is a little too thick)."""
SKINNING = False
"""Whether the refined maps take their skinning from the network's latents (decoded by
the LBS autoencoder) instead of the prior's; set by the held-out measurement in
models/DEPTH_NET.md."""


def refine_depth(
    photo: Photo,
    perception: Perception,
    prior: DepthMaps,
    device: str = "auto",
    path: Path = ONNX_PATH,
    skinning: bool = SKINNING,
    rig: str = "mixamo",
    rim: float = RIM,
    shift: float = SHIFT,
    contain: float | None = CONTAIN,
) -> DepthMaps:
    """The clothed person's front and back depth in `prior`'s camera and mask.

    photo, perception: the square working crop the prior was made on (same H, W);
    prior: `body_prior.body_prior_depth` of that crop. Skinning weights stay the prior's
    unless `skinning` and the model has latents, when those are decoded by `rig`'s LBS
    autoencoder. The person moves along the view ray (the mid-depth) by `shift` metres at
    most; the thickness is the network's, down to the prior's less `contain` metres
    (None: no limit).
    """
    inside = prior.mask & np.isfinite(prior.front) & np.isfinite(prior.back)
    if not inside.any():
        return prior
    x, _ = network_inputs(photo.image, perception.mask, prior.front, prior.back)
    session = cached_session(Path(path).resolve(), device)
    results = session.run(None, {session.get_inputs()[0].name: x[None]})
    out = results[0][0]
    height, width = prior.mask.shape
    small = cv2.resize(inside.astype(np.float32), (SIDE, SIDE), interpolation=cv2.INTER_AREA) > 0.5
    correction = _upsample(out[:2] - x[4:6], small, (height, width)) * DEPTH_SCALE
    spreads = (
        _upsample(results[1][0], small, (height, width)) * DEPTH_SCALE
        if len(results) > 1
        else (None, None)
    )
    if rim > 0:
        # The truth's rims are steep (the surface turns away); meshed, a steep rim reads as an
        # occlusion edge and is cut off, so the correction fades out towards the outline.
        correction *= np.clip(ndimage.distance_transform_edt(inside) / (rim * height), 0, 1)
    prior_front = np.where(inside, prior.front, 0.0)
    prior_back = np.where(inside, prior.back, 0.0)
    half = np.maximum(0.5 * (prior_back - prior_front + correction[1] - correction[0]),
                      MIN_HALF_THICKNESS)  # fmt: skip
    move = np.clip(0.5 * (correction[0] + correction[1]), -shift, shift)
    mid = 0.5 * (prior_front + prior_back) + move
    front, back = mid - half, mid + half
    if contain is not None:
        # The coarse grid blurs a hand held in front of a skirt into the skirt (10 cm behind
        # its true depth in a side view, where carving then cut the hand off): the refined
        # surface may not sink into the prior by more than `contain`, after the person's
        # overall move along the ray.
        overall = float(np.median(move[inside]))
        front = np.minimum(front, prior_front + overall + contain)
        back = np.maximum(back, prior_back + overall - contain)
    front = np.where(inside, front, np.inf).astype(np.float32)
    back = np.where(inside, back, np.inf).astype(np.float32)
    refined = replace(
        prior, front=front, back=back, mask=inside,
        spread_front=spreads[0], spread_back=spreads[1],
    )  # fmt: skip
    if not skinning or out.shape[0] == 2:  # a depth-only model has no latents
        return refined
    codec = LbsCodec(rig, device=device)
    if codec.bones != prior.weights_front.shape[-1]:
        return refined
    latents = np.clip(_upsample(out[2:], small, (height, width)), 0.0, 1.0)
    size = codec.latent_size
    weights = []
    for latent in (latents[:size], latents[size:]):
        decoded = np.zeros((height, width, codec.bones), np.float32)
        decoded[inside] = codec.decode(latent.transpose(1, 2, 0)[inside])
        weights.append(decoded)
    return replace(refined, weights_front=weights[0], weights_back=weights[1])


def _upsample(maps: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, S, S) maps -> (C, H, W), bilinear, after filling the pixels outside `valid`
    (S, S) bool with their nearest valid value so nothing from outside the person leaks in."""
    if valid.any() and not valid.all():
        _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
        maps = maps[:, rows, cols]
    height, width = size
    return np.stack(
        [cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps]
    ).astype(np.float32)
