"""Loading photos: any pixel format to upright RGB, huge files downscaled, bad files named."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photo_avatar.core.avatar import Settings
from photo_avatar.core.photos import BACKGROUND, MIN_SIDE, load_photo, load_photos
from photo_avatar.core.progress import PhotoError, Progress


def _gradient(width: int = 120, height: int = 80) -> np.ndarray:
    """(H, W, 3) uint8 with distinct rows and columns, so flips and rotations show."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([x, y, x / 2], -1).astype(np.uint8)


def _chunk(tag: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, tag, data, CRC."""
    crc = struct.pack(">I", zlib.crc32(tag + data))
    return struct.pack(">I", len(data)) + tag + data + crc


def _flat_png(path: Path, side: int, grey: int) -> None:
    """A side × side 8-bit grey PNG written row by row: tiny on disk, never in memory."""
    deflate = zlib.compressobj(9)
    row = b"\x00" + bytes([grey]) * side  # filter byte 0 (None), then the pixels
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
    path.write_bytes(png + _chunk(b"IEND", b""))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_any_pixel_format_loads_as_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"photo_{mode.replace(';', '')}.png"
    if mode == "CMYK":
        path = path.with_suffix(".jpg")
    image = Image.fromarray(_gradient())
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    else:
        image = image.convert(mode)
    image.save(path)
    photo = load_photo(path)
    assert photo.image.shape == (80, 120, 3)
    assert photo.image.dtype == np.uint8
    assert photo.name == path.name
    # The horizontal gradient survives every conversion: dark on the left, light on the
    # right (16-bit values are rescaled, not clipped to white).
    red = photo.image[..., 0].astype(float).mean(axis=0)
    assert red[-5:].mean() - red[:5].mean() > 40


def test_transparent_pixels_become_neutral_grey(tmp_path: Path) -> None:
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[20:60, 20:60] = (200, 30, 30, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    image = load_photo(tmp_path / "cutout.png").image
    assert tuple(image[5, 5]) == BACKGROUND
    assert tuple(image[40, 40]) == (200, 30, 30)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = _gradient(120, 80)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = load_photo(tmp_path / "rotated.jpg").image
    assert image.shape == (120, 80, 3)
    # Rotating clockwise brings the stored left column (red 0) to the top row.
    assert image[2, :, 0].mean() < 40
    assert image[-3, :, 0].mean() > 215


def test_focal_length_from_exif(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 50  # FocalLengthIn35mmFilm, mm
    Image.fromarray(_gradient(240, 160)).save(tmp_path / "lens.jpg", exif=exif)
    Image.fromarray(_gradient(240, 160)).save(tmp_path / "plain.jpg")
    assert load_photo(tmp_path / "lens.jpg", max_side=120).focal_px == pytest.approx(50 / 36 * 120)
    assert load_photo(tmp_path / "plain.jpg").focal_px is None


def test_large_photo_is_downscaled_to_max_side(tmp_path: Path) -> None:
    Image.fromarray(_gradient(1600, 900)).save(tmp_path / "wide.jpg")
    photos = load_photos([tmp_path / "wide.jpg"], Settings(max_side=800))
    assert photos[0].image.shape == (450, 800, 3)


def test_twenty_thousand_pixel_png_is_downscaled_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    _flat_png(path, 20_000, grey=90)
    assert path.stat().st_size < 2_000_000
    limit = Image.MAX_IMAGE_PIXELS
    image = load_photo(path, max_side=512).image
    assert image.shape == (512, 512, 3)
    assert np.all(image == 90)
    assert limit == Image.MAX_IMAGE_PIXELS  # Pillow's guard is restored for everyone else


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    # Only the header claims 100k × 100k pixels: decoding it would need 40 GB.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
    (tmp_path / "bomb.png").write_bytes(png + _chunk(b"IEND", b""))
    with pytest.raises(PhotoError, match=r"bomb\.png: too large to decode \(100000×100000 px"):
        load_photo(tmp_path / "bomb.png")


def test_progress_reaches_the_end(tmp_path: Path) -> None:
    Image.fromarray(_gradient()).save(tmp_path / "a.png")
    seen: list[float] = []
    load_photos([tmp_path / "a.png"] * 2, Settings(), Progress(lambda _, f: seen.append(f)))
    assert seen[0] == 0.0
    assert seen[-1] == 1.0


def _text_as_jpeg(path: Path) -> None:
    path.write_text("this is not a photo\n")


def _truncated_jpeg(path: Path) -> None:
    Image.fromarray(_gradient(400, 300)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _one_pixel(path: Path) -> None:
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_text_as_jpeg, "not an image"),
        (_truncated_jpeg, "truncated"),
        (_empty, "empty"),
        (_one_pixel, f"at least {MIN_SIDE} px"),
        (None, "not found"),
    ],
)
def test_bad_photo_names_the_file_and_the_reason(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "photo.jpg"
    if make is not None:
        make(path)
    with pytest.raises(PhotoError) as raised:
        load_photos([path], Settings())
    message = str(raised.value)
    assert "photo.jpg" in message
    assert reason in message
    assert "\n" not in message
