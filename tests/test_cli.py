"""The command line: clear one-line errors, exit codes, and no partial output on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trimesh

from photo_avatar.core import pipeline
from photo_avatar.core.cli import main


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "sample.png"
    assert main(["sample", str(path)]) == 0
    return path


def test_not_an_image_is_named_in_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo")
    out = tmp_path / "avatar.glb"
    assert main(["generate", str(bad), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "notes.jpg" in err[0] and "not an image" in err[0]
    assert not out.exists()


def test_missing_photo_is_named(tmp_path, capsys):
    out = tmp_path / "avatar.glb"
    assert main(["generate", str(tmp_path / "nobody.png"), "-o", str(out), "--quiet"]) == 2
    assert "nobody.png" in capsys.readouterr().err
    assert not out.exists()


def test_unwritable_output_fails_before_any_work(sample, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through permissions: /proc refuses even root
        folder = Path("/proc")
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
    assert main(["generate", str(sample), "-o", str(folder / "a.glb"), "--quiet"]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not [p for p in folder.iterdir() if p.name.startswith(("a.glb", ".photo_avatar"))]


def test_output_in_missing_folder_fails_before_any_work(sample, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "folder" / "a.glb"
    assert main(["generate", str(sample), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a.glb" in err and "cannot write" in err
    assert not out.parent.exists()


def test_output_that_is_a_folder_fails(sample, tmp_path, capsys):
    assert main(["generate", str(sample), "-o", str(tmp_path), "--quiet"]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_unknown_preset_is_refused(sample, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(sample), "-o", str(tmp_path / "a.glb"), "--preset", "ultra"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("flags", "chosen"),
    [([], None), (["--soft-silhouette"], True), (["--no-soft-silhouette"], False)],
)
def test_soft_silhouette_flag_reaches_the_settings(sample, tmp_path, monkeypatch, flags, chosen):
    seen = []

    class Stop(Exception):
        pass

    def stop(photos, settings, progress):
        seen.append(settings)
        raise Stop

    monkeypatch.setattr(pipeline, "generate", stop)
    with pytest.raises(Stop):
        main(["generate", str(sample), "-o", str(tmp_path / "a.glb"), *flags])
    assert seen[0].soft_silhouette is chosen


@pytest.mark.slow
def test_generate_writes_a_skinned_glb_and_a_report(sample, tmp_path, capsys):
    out = tmp_path / "avatar.glb"
    report = tmp_path / "report"
    code = main(
        ["generate", str(sample), "-o", str(out), "--preset", "fast", "--report", str(report)]
    )
    assert code == 0, capsys.readouterr().err
    scene = trimesh.load(out, force="scene")
    mesh = next(iter(scene.geometry.values()))
    assert len(mesh.faces) > 4_000
    assert (report / "contact_sheet.png").stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
