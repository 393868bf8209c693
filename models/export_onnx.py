"""Export our torch networks to ONNX (opset 17) for onnxruntime.

    python -m photo_avatar.models.export_onnx --rig mixamo --weights models/weights/

re-exports the LBS autoencoder of `rig` from its torch weights (`lbs_autoencoder_<rig>.pt`).
The training scripts call the same functions when they finish.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .lbs_autoencoder import LbsAutoencoder, load_lbs_autoencoder

log = logging.getLogger(__name__)

OPSET = 17
MAX_BYTES = 20_000_000
"""Every shipped ONNX file stays under 20 MB (a repository and extension-size limit)."""


def export_module(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """Write `module` (eval mode, CPU, float32) to `path` as one self-contained ONNX file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter needs no onnxscript and writes the weights inside the file.
    torch.onnx.export(
        module.eval(),
        example,
        str(path),
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_axes=dynamic_axes,
        opset_version=OPSET,
        dynamo=False,
    )
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{path} is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit")
    return path


def export_lbs_autoencoder(
    model: LbsAutoencoder, rig: str, out: Path, info: dict | None = None
) -> list[Path]:
    """Save the torch weights and export the encoder and decoder of `rig`'s autoencoder.

    Writes `lbs_autoencoder_<rig>.pt` (with `info`: how it was trained),
    `lbs_encoder_<rig>.onnx` (input `weights` (N, J) -> `latent` (N, L)) and
    `lbs_decoder_<rig>.onnx` (`latent` (N, L) -> `weights` (N, J)), N dynamic.
    Returns the paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    pt = out / f"lbs_autoencoder_{rig}.pt"
    torch.save(
        {"bones": model.bones, "latent": model.latent, "hidden": model.hidden,
         "info": info or {}, "state_dict": model.state_dict()},
        pt,
    )  # fmt: skip
    weights = torch.full((2, model.bones), 1.0 / model.bones)
    encoder = export_module(
        model.encoder,
        (weights,),
        out / f"lbs_encoder_{rig}.onnx",
        ["weights"],
        ["latent"],
        {"weights": {0: "points"}, "latent": {0: "points"}},
    )
    decoder = export_module(
        model.decoder,
        (torch.full((2, model.latent), 0.5),),
        out / f"lbs_decoder_{rig}.onnx",
        ["latent"],
        ["weights"],
        {"latent": {0: "points"}, "weights": {0: "points"}},
    )
    return [pt, encoder, decoder]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rig", default="mixamo")
    parser.add_argument("--weights", type=Path, default=Path(__file__).parent / "weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    model = load_lbs_autoencoder(args.rig, args.weights)
    info = torch.load(args.weights / f"lbs_autoencoder_{args.rig}.pt", weights_only=True)["info"]
    for path in export_lbs_autoencoder(model, args.rig, args.weights, info):
        log.info("wrote %s", path)


if __name__ == "__main__":
    main()
