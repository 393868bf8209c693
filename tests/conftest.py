"""Shared fixtures: the body model is built once per test session."""

from __future__ import annotations

import pytest

from photo_avatar.core.body_model import BodyModel, load_body_model


@pytest.fixture(scope="session")
def body() -> BodyModel:
    """The anny body with the default mixamo rig."""
    return load_body_model("mixamo")
