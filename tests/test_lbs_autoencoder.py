"""The shipped LBS autoencoders: ONNX files load and run, decoded weights are valid skinning,
ONNX agrees with torch, and the body's own weights survive the round trip."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from photo_avatar.core import skinning
from photo_avatar.core.body_model import RIGS, load_body_model
from photo_avatar.models import runtime
from photo_avatar.models.lbs_autoencoder import WEIGHTS_DIR, LbsAutoencoder, load_lbs_autoencoder
from photo_avatar.models.runtime import LbsCodec
from photo_avatar.models.train_lbs_autoencoder import random_phenotypes, sample_points

SHIPPED = [rig for rig in RIGS if (WEIGHTS_DIR / f"lbs_decoder_{rig}.onnx").exists()]
ROUND_TRIP_L1 = 0.05
"""Bound on the mean over points of sum_j |decoded - true|: the shipped mixamo model
measures about 0.02 (models/MODEL_CARD.md); an untrained model about 1.9."""
REPOSE_MM = 2.0
"""Bound on the mean vertex distance (mm) between a body posed with decoded and with true
weights: the issue's target (the shipped mixamo model measures about 0.25 mm, and under
0.5 mm with latent errors of std 0.05)."""
TEST_SEED = 777
"""Phenotypes and points no training run used (training: 0; its held-out set: 10 000)."""


@pytest.fixture(scope="module", params=SHIPPED)
def rig(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def codec(rig) -> LbsCodec:
    return LbsCodec(rig, device="cpu", threads=1)


@pytest.fixture(scope="module")
def weights(rig) -> np.ndarray:
    """(V, J) the rig's own per-vertex weights."""
    return load_body_model(rig).skin_weights.numpy()


@pytest.fixture(scope="module")
def random_latent(codec) -> np.ndarray:
    """Latents a little outside the unit cube too, as network 1 may predict them."""
    rng = np.random.default_rng(0)
    return rng.uniform(-0.2, 1.2, (4096, codec.latent_size)).astype(np.float32)


def test_the_default_rig_is_shipped():
    assert "mixamo" in SHIPPED


def test_shipped_files_are_small(rig):
    for name in (f"lbs_encoder_{rig}.onnx", f"lbs_decoder_{rig}.onnx", f"lbs_autoencoder_{rig}.pt"):
        assert 0 < (WEIGHTS_DIR / name).stat().st_size < 20_000_000, name


def test_encoder_maps_weights_into_the_unit_cube(codec, weights):
    latent = codec.encode(weights)
    assert latent.shape == (len(weights), codec.latent_size)
    assert 2 <= codec.latent_size <= 8
    assert latent.min() >= 0.0 and latent.max() <= 1.0


def test_decoded_weights_sum_to_one_and_are_non_negative(codec, random_latent, weights):
    decoded = codec.decode(random_latent)
    assert decoded.shape == (len(random_latent), weights.shape[1])
    assert decoded.min() >= 0.0
    np.testing.assert_allclose(decoded.sum(1), 1.0, atol=1e-5)


def test_onnx_and_torch_agree(rig, codec, random_latent, weights):
    model = load_lbs_autoencoder(rig)
    some = weights[::7]
    with torch.no_grad():
        latent = model.encode(torch.as_tensor(some)).numpy()
        decoded = model.decode(torch.as_tensor(random_latent)).numpy()
    assert np.abs(codec.encode(some) - latent).max() <= 1e-5
    assert np.abs(codec.decode(random_latent) - decoded).max() <= 1e-5


def test_body_weights_survive_the_round_trip(codec, weights):
    decoded = codec.decode(codec.encode(weights))
    assert np.abs(decoded - weights).sum(1).mean() < ROUND_TRIP_L1
    # The bone that dominates a vertex still dominates after decoding, almost everywhere.
    assert (decoded.argmax(1) == weights.argmax(1)).mean() > 0.97


def test_held_out_phenotype_survives_the_round_trip(rig, codec):
    body = load_body_model(rig)
    points = sample_points(body, random_phenotypes(1, TEST_SEED), 4000, TEST_SEED)
    truth = points.weights(body.skin_weights).numpy()
    decoded = codec.decode(codec.encode(truth))
    assert np.abs(decoded - truth).sum(1).mean() < ROUND_TRIP_L1


def _repose_error_mm(body, weights: torch.Tensor) -> float:
    """Mean vertex distance (mm) of a held-out body in 4 random poses, `weights` (V, J)
    against the body's own."""
    rest = body.rest(random_phenotypes(1, TEST_SEED))
    g = torch.Generator().manual_seed(TEST_SEED)
    axis_angle = 0.35 * torch.randn(4, len(body.bone_names), 3, generator=g)
    matrices = rest.bone_matrices.expand(len(axis_angle), -1, -1, -1)
    posed = skinning.forward_kinematics(
        matrices, body.parents, skinning.axis_angle_to_matrix(axis_angle)
    )
    transforms = skinning.skinning_transforms(posed, matrices)
    truth = skinning.forward_skin(rest.vertices[0], body.skin_weights, transforms)
    moved = skinning.forward_skin(rest.vertices[0], weights, transforms)
    return 1000 * float((moved - truth).norm(dim=-1).mean())


def test_held_out_phenotype_reposes_within_two_mm(rig, codec):
    body = load_body_model(rig)
    decoded = codec.decode(codec.encode(body.skin_weights.numpy()))
    assert _repose_error_mm(body, torch.as_tensor(decoded)) < REPOSE_MM


def test_small_latent_errors_cost_little(rig, codec):
    # Network 1's latents are never exact: the decoder must be flat around its codes.
    body = load_body_model(rig)
    latent = codec.encode(body.skin_weights.numpy())
    noisy = latent + np.random.default_rng(TEST_SEED).normal(0, 0.03, latent.shape)
    assert _repose_error_mm(body, torch.as_tensor(codec.decode(noisy))) < REPOSE_MM


def test_untrained_model_fails_the_round_trip(body):
    torch.manual_seed(0)
    model = LbsAutoencoder(len(body.bone_names)).eval()
    with torch.no_grad():
        decoded = model.decode(model.encode(body.skin_weights))
    assert (decoded - body.skin_weights).abs().sum(1).mean() > ROUND_TRIP_L1


def test_codec_rejects_weights_of_another_rig():
    with pytest.raises(ValueError, match="expected an"):
        LbsCodec("mixamo", device="cpu").encode(np.full((3, 31), 1 / 31, np.float32))


def test_missing_rig_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LBS autoencoder for the cmu_mb rig"):
        LbsCodec("cmu_mb", tmp_path, device="cpu").decode(np.zeros((1, 4), np.float32))


def test_cuda_request_falls_back_to_cpu_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CPU])
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        session = runtime.create_session(WEIGHTS_DIR / "lbs_decoder_mixamo.onnx", "cuda")
    assert session.get_providers() == [runtime.CPU]
    assert "CUDA was requested" in caplog.text


@pytest.mark.skipif(
    runtime.CUDA in runtime.ort.get_available_providers(), reason="this onnxruntime has CUDA"
)
def test_session_that_loses_cuda_logs_a_warning(monkeypatch, caplog):
    # onnxruntime-gpu without working CUDA libraries: the provider is listed, the session
    # silently runs on the CPU. Here the CPU-only build plays that part.
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        session = runtime.create_session(WEIGHTS_DIR / "lbs_decoder_mixamo.onnx", "auto")
    assert session.get_providers() == [runtime.CPU]
    assert "fell back to the CPU" in caplog.text


def test_auto_device_uses_cuda_only_when_onnxruntime_has_it(monkeypatch):
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CPU])
    assert runtime.providers_for("auto") == [runtime.CPU]
    assert runtime.providers_for("cuda") == [runtime.CUDA, runtime.CPU]
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [runtime.CUDA, runtime.CPU])
    assert runtime.providers_for("auto") == [runtime.CUDA, runtime.CPU]
    assert runtime.providers_for("cpu") == [runtime.CPU]
    with pytest.raises(ValueError, match="device must be"):
        runtime.providers_for("gpu")


def test_decoder_takes_latent_maps(codec, random_latent):
    latent_map = random_latent[:64].reshape(8, 8, -1)
    decoded = codec.decode(latent_map)
    assert decoded.shape == (8, 8, codec.bones)
    np.testing.assert_allclose(decoded.reshape(64, -1), codec.decode(random_latent[:64]), atol=1e-6)
