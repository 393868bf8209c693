"""Shared fixtures: the body model is built once per test session; Blender tests get a fresh
scene with the add-on registered."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import torch

from photo_avatar.core import skinning
from photo_avatar.core.body_model import BodyModel, load_body_model


@pytest.fixture(scope="session")
def body() -> BodyModel:
    """The anny body with the default mixamo rig."""
    return load_body_model("mixamo")


@pytest.fixture(scope="session")
def bent_pose(body: BodyModel) -> torch.Tensor:
    """(1, J, 3, 3) a mixamo pose with bent elbows and knees, a raised arm and a turned spine."""
    angles = torch.zeros(1, len(body.bone_names), 3)
    for name, rotation in {
        "LeftArm": (0.3, 0.0, 0.3),
        "LeftForeArm": (0.6, 0.0, 0.0),
        "RightForeArm": (0.6, 0.0, 0.0),
        "Spine1": (0.0, 0.3, 0.0),
        "LeftLeg": (-0.5, 0.0, 0.0),
        "RightUpLeg": (0.3, 0.0, 0.0),
    }.items():
        angles[0, body.bone_names.index(f"mixamorig:{name}")] = torch.tensor(rotation)
    return skinning.axis_angle_to_matrix(angles)


@pytest.fixture
def scene() -> Iterator[object]:
    """A fresh empty scene with the add-on registered; unregistered afterwards (bpy is
    imported here only, so the headless tests never need it)."""
    import bpy

    import photo_avatar

    bpy.ops.wm.read_factory_settings(use_empty=True)
    photo_avatar.register()
    yield bpy.context.scene
    photo_avatar.unregister()


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The bpy wheel (4.5) can deadlock at interpreter exit, in a C++ destructor waiting on
    its delayed-close thread (seen with gdb: the suite done, the process never ending). Once
    pytest has reported, leave without running those destructors."""
    if "bpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
