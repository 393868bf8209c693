"""onnxruntime sessions for all our networks, and the LBS codec built on them.

The CUDA provider is used when onnxruntime has it (the `onnxruntime-gpu` package on a machine
with CUDA), else the CPU provider. onnxruntime silently falls back to the CPU when the CUDA
libraries are missing, so every session is checked after creation and a fallback is logged.
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..core.devices import DEVICES
from .lbs_autoencoder import WEIGHTS_DIR

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def providers_for(device: str = "auto") -> list[str]:
    """The execution providers to ask for: 'cpu' -> CPU only; 'cuda' -> CUDA then CPU;
    'auto' -> CUDA then CPU when this onnxruntime build has CUDA, else CPU only."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cuda" or (device == "auto" and CUDA in ort.get_available_providers()):
        return [CUDA, CPU]
    return [CPU]


def create_session(
    path: Path | str, device: str = "auto", threads: int = 0
) -> ort.InferenceSession:
    """An inference session for the ONNX file at `path`.

    device: 'auto' | 'cpu' | 'cuda'; threads: intra-op threads of the CPU provider
    (0 = onnxruntime's default, one per core). Logs a warning when CUDA was asked for
    but the session runs on the CPU.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # our own warning below says it better than ort's
    wanted = providers_for(device)
    if CUDA in wanted and CUDA not in ort.get_available_providers():
        # Asking ort for a provider its build lacks only gives a generic warning.
        log.warning(
            "CUDA was requested for %s but this onnxruntime has no CUDA provider "
            "(install onnxruntime-gpu on a machine with CUDA); running on the CPU",
            Path(path).name,
        )
        wanted = [CPU]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Specified provider")
        session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    if CUDA in wanted and CUDA not in session.get_providers():
        log.warning(
            "CUDA was requested for %s but onnxruntime fell back to the CPU "
            "(CUDA or cuDNN libraries missing or mismatched); running on the CPU",
            Path(path).name,
        )
    return session


@functools.cache
def cached_session(path: Path, device: str = "auto", threads: int = 0) -> ort.InferenceSession:
    """`create_session`, once per (file, device, threads) in this process."""
    return create_session(path, device, threads)


class LbsCodec:
    """The shipped LBS autoencoder of one rig through onnxruntime.

    encode: (..., J) skinning weights -> (..., L) latent in [0, 1];
    decode: (..., L) latent -> (..., J) weights, non-negative, summing to one over J.
    Sessions are created on first use and shared by every codec in the process.
    """

    CHUNK = 131_072
    """Points per run, to bound the memory of the hidden layers."""

    def __init__(
        self,
        rig: str = "mixamo",
        weights_dir: Path = WEIGHTS_DIR,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        self.rig = rig
        self.encoder_path = Path(weights_dir) / f"lbs_encoder_{rig}.onnx"
        self.decoder_path = Path(weights_dir) / f"lbs_decoder_{rig}.onnx"
        self.device = device
        self.threads = threads

    def _session(self, path: Path) -> ort.InferenceSession:
        if not path.exists():
            raise FileNotFoundError(f"no LBS autoencoder for the {self.rig} rig: {path} is missing")
        return cached_session(path.resolve(), self.device, self.threads)

    @property
    def bones(self) -> int:
        """J, the rig's bone count."""
        return int(self._session(self.decoder_path).get_outputs()[0].shape[1])

    @property
    def latent_size(self) -> int:
        """L, the latent size."""
        return int(self._session(self.decoder_path).get_inputs()[0].shape[1])

    def _run(self, path: Path, x: np.ndarray, width: int) -> np.ndarray:
        session = self._session(path)
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 1 or x.shape[-1] != width:
            raise ValueError(f"expected an (..., {width}) array for {path.name}, got {x.shape}")
        flat = np.ascontiguousarray(x.reshape(-1, width))
        name = session.get_inputs()[0].name
        parts = [
            session.run(None, {name: flat[i : i + self.CHUNK]})[0]
            for i in range(0, max(len(flat), 1), self.CHUNK)
        ]
        out = np.concatenate(parts)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def encode(self, weights: np.ndarray) -> np.ndarray:
        """(..., J) float weights -> (..., L) float32 latent in [0, 1]."""
        return self._run(self.encoder_path, weights, self.bones)

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """(..., L) float latent (e.g. an (H, W, L) map from network 1) -> (..., J) float32
        weights, non-negative, summing to one."""
        return self._run(self.decoder_path, latent, self.latent_size)
