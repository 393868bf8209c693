"""Photo files -> upright, RGB, size-capped `Photo`s: the first stage of the pipeline.

Every failure becomes a one-line `PhotoError` naming the file, so the user learns which
photo to replace before any heavy work starts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .avatar import Photo, Settings
from .progress import PhotoError, Progress

log = logging.getLogger(__name__)

MIN_SIDE = 64
"""Shortest usable side in pixels; below this no detector finds a body."""
MAX_DECODED_PIXELS = 20_000 * 20_000
"""Largest image decoded at full size (Pillow holds RGB at 4 bytes a pixel: 1.6 GB here).
JPEGs are decoded at 1/2, 1/4 or 1/8 scale first, so this bounds PNG, TIFF and WebP."""
BACKGROUND = (128, 128, 128)
"""Neutral grey behind transparent pixels: black or white would merge with dark or light
clothes in the person's silhouette."""

_EXIF_IFD = 0x8769
_ORIENTATION = 0x0112
_FOCAL_35MM = 0xA405
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose)."""
_bomb_guard = threading.Lock()


def load_photos(
    paths: Sequence[Path | str], settings: Settings, progress: Progress | None = None
) -> list[Photo]:
    """Decode every photo, downscaled to `settings.max_side`; raises `PhotoError` on the
    first unusable file."""
    progress = progress or Progress()
    photos = []
    for i, path in enumerate(paths):
        progress.step("loading photos", i / len(paths))
        photos.append(load_photo(path, settings.max_side))
    progress.step("loading photos", 1.0)
    return photos


def load_photo(path: Path | str, max_side: int = 1024) -> Photo:
    """One photo file -> `Photo`: (H, W, 3) uint8 RGB, EXIF orientation applied, longest
    side at most `max_side` pixels, `focal_px` from EXIF's 35 mm-equivalent focal length."""
    path = Path(path)
    if not path.exists():
        raise PhotoError(f"{path}: file not found")
    if path.is_dir():
        raise PhotoError(f"{path}: is a folder, not a photo")
    if path.stat().st_size == 0:
        raise PhotoError(f"{path}: empty file (0 bytes)")
    try:
        with _open_unguarded(path) as image:
            full_size = image.size
            image, orientation, focal_35mm = _decode_reduced(image, max_side)
            image = _to_rgb(image)
    except PhotoError as error:
        raise PhotoError(f"{path}: {error}") from None
    except UnidentifiedImageError as error:
        raise PhotoError(f"{path}: not an image (could not be decoded)") from error
    except OSError as error:
        raise PhotoError(f"{path}: {_describe(error)}") from error
    except (ValueError, SyntaxError) as error:
        raise PhotoError(f"{path}: damaged image ({error})") from error
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    pixels = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        scaled = " after downscaling" if max(height, width) < max(full_size) else ""
        raise PhotoError(
            f"{path}: too small ({width}×{height} px{scaled}; "
            f"needs at least {MIN_SIDE} px on each side)"
        )
    focal_px = focal_35mm / 36.0 * max(height, width) if focal_35mm else None
    log.debug("loaded %s: %d×%d px, focal %s px", path, width, height, focal_px)
    return Photo(name=path.name, image=pixels, path=path, focal_px=focal_px)


@contextlib.contextmanager
def _open_unguarded(path: Path) -> Iterator[Image.Image]:
    """Open with Pillow's decompression-bomb guard lifted, under a lock, for the header
    read only: huge photos are legitimate here because `_decode_reduced` bounds the
    memory itself (`MAX_DECODED_PIXELS`)."""
    with _bomb_guard:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            image = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    with image:
        yield image


def _exif(image: Image.Image) -> tuple[int, float | None]:
    """EXIF orientation (1 = upright) and the 35 mm-equivalent focal length in mm, if any.
    EXIF is optional: a malformed block costs only the metadata, never the photo."""
    try:
        exif = image.getexif()
        focal = exif.get_ifd(_EXIF_IFD).get(_FOCAL_35MM) or exif.get(_FOCAL_35MM)
        return int(exif.get(_ORIENTATION, 1) or 1), float(focal) if focal else None
    except Exception as error:  # Pillow raises many types on odd EXIF
        log.warning("ignoring unreadable EXIF in %s: %s", image.filename, error)
        return 1, None


def _decode_reduced(image: Image.Image, max_side: int) -> tuple[Image.Image, int, float | None]:
    """Decode `image` so its longest side is at most `max_side`, never holding more than
    `MAX_DECODED_PIXELS` at once; also its EXIF orientation and 35 mm focal length.

    The image stays in its own mode where resizing supports it: converting a huge image
    first would multiply its memory.
    """
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.format == "JPEG":
        image.draft(None, target)  # the decoder itself skips detail: 1/2, 1/4 or 1/8 scale
    if image.size[0] * image.size[1] > MAX_DECODED_PIXELS:
        raise PhotoError(
            f"too large to decode ({width}×{height} px; "
            f"at most {MAX_DECODED_PIXELS // 1_000_000} megapixels)"
        )
    image.load()
    orientation, focal_35mm = _exif(image)  # after load: PNG may keep EXIF past the pixels
    if image.mode in ("1", "P", "PA"):
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else ("L" if image.mode == "1" else "RGB"))
    elif image.mode.startswith("I"):
        image = _sixteen_to_eight_bit(image)
    if image.size != target:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image, orientation, focal_35mm


def _sixteen_to_eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grey ('I;16', or 'I' holding 16-bit values) -> 'L'; Pillow's own conversion
    clips at 255 and would turn most of the photo white."""
    values = np.asarray(image).astype(np.uint32)
    return Image.fromarray((np.clip(values, 0, 65535) // 257).astype(np.uint8))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded pixel format -> 'RGB'; transparent pixels go onto `BACKGROUND`."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in ("L", "CMYK", "YCbCr", "RGBX", "HSV", "LAB"):
        return image.convert("RGB")
    raise PhotoError(f"unsupported pixel format {image.mode}")


def _describe(error: OSError) -> str:
    """Pillow's decoding errors in the user's words."""
    text = str(error)
    if "truncated" in text:
        return "truncated image (the file is incomplete)"
    if "not available" in text or "not supported" in text or "unsupported" in text.lower():
        return f"unsupported image ({text})"
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    return f"damaged image ({text})"
