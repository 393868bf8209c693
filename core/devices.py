"""Which torch device the work that gains from a GPU (the refinement) runs on."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def torch_device(setting: str = "auto") -> torch.device:
    """'cpu' -> the CPU; 'auto' or 'cuda' -> the first CUDA device when torch has one, else
    the CPU. Asking for 'cuda' without one falls back with a warning rather than failing, as
    onnxruntime does for the networks: an avatar made slowly beats no avatar."""
    if setting not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {setting!r}")
    if setting != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    if setting == "cuda":
        log.warning("CUDA was asked for but torch has none here: running on the CPU")
    return torch.device("cpu")
