"""Decoding image bytes to uint8 HWC RGB by the package's one rule, and the protocol's resize.

The decoding rule (``DECODE_POLICY``) is spelled out in the package docstring
(``advisor.images``).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import ExifTags, Image, UnidentifiedImageError

#: Name recorded in every feature protocol for the resize below.
RESIZE_POLICY = "pil-bicubic-antialias"
#: Name of the decoding rule in the package docstring; part of cache keys built on decoded pixels.
DECODE_POLICY = "frame0-exif-16to8shift-alpha-on-white-v1"
#: Decompression-bomb limit in pixels (width * height), PIL's default warning threshold. PIL's
#: own check still runs too, so a larger ``max_pixels`` cannot lift PIL's global limit.
DEFAULT_MAX_PIXELS: int = 89_478_485

# Formats Image.open may try: those of the listed suffixes (``IMAGE_EXTENSIONS``; PIL opens
# multi-picture JPEGs as JPEG). Restricting them keeps PIL from running plugins such as EPS
# (Ghostscript) on renamed files.
_PIL_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class DecodeError(Exception):
    """Raised by ``decode_image`` for bytes that give no image; ``reason`` is short."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to uint8 HWC RGB (C-contiguous, writable) by the package's one rule.

    Raises ``DecodeError`` with a short reason: "zero bytes", "not an image", "truncated",
    "decompression bomb (N px > limit)", "corrupt (...)", "unsupported mode ...". The pixel
    count is checked from the header, before any pixel data is decoded.
    """
    if not data:
        raise DecodeError("zero bytes")
    try:
        with warnings.catch_warnings():
            # PIL's own bomb warning is an error here; its other warnings (odd EXIF, palette
            # transparency notes) concern files we still decode.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as image:
                pixels = image.width * image.height
                if pixels > max_pixels:
                    raise DecodeError(f"decompression bomb ({pixels} px > {max_pixels})")
                image.load()
                return _to_rgb(_apply_orientation(image))
    except DecodeError:
        raise
    except UnidentifiedImageError as err:
        raise DecodeError("not an image") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DecodeError(f"decompression bomb (over PIL's limit: {err})") from err
    except EOFError as err:
        raise DecodeError("truncated") from err
    except OSError as err:
        raise DecodeError("truncated" if "truncated" in str(err) else f"corrupt ({err})") from err
    except Exception as err:  # PIL plugins raise many types on malformed files
        raise DecodeError(f"corrupt ({type(err).__name__}: {err})") from err


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag as ``ImageOps.exif_transpose`` does; bad EXIF is ignored."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block must not cost the image
        return image
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(image).astype(np.int32)
        gray = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        key = image.info.get("transparency")
        if isinstance(key, int):
            gray[values == key] = 255
        return _gray_to_rgb(gray)
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32))
        return _gray_to_rgb(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("RGBA")).astype(np.uint16)
        color, alpha = rgba[..., :3], rgba[..., 3:]
        # Max 255*255 + 127 < 2**16, so uint16 holds the sum; alpha 0 gives exactly 255.
        return ((color * alpha + (255 - alpha) * 255 + 127) // 255).astype(np.uint8)
    if mode in ("1", "L"):
        return _gray_to_rgb(np.asarray(image.convert("L")))
    if mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as err:
            raise DecodeError(f"unsupported mode {mode}") from err
    return np.array(image, dtype=np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def resize_uint8(images: torch.Tensor | np.ndarray, size: int) -> torch.Tensor | np.ndarray:
    """Resize a uint8 NCHW RGB batch to ``size`` x ``size`` with PIL's antialiased bicubic filter.

    This is the single resize of advisor's feature protocol (clean-fid's "clean" choice: PIL
    bicubic, whose kernel widens when downsampling, so it antialiases). It is used both for
    images decoded from disk and for generator samples, so the two meet the same protocol.
    Returns the same type as given (torch tensor or numpy array), uint8 NCHW; a batch already
    at ``size`` is returned unchanged.
    """
    if images.dtype not in (torch.uint8, np.uint8) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"expected uint8 NCHW RGB images, got {images.dtype} {tuple(images.shape)}"
        )
    n, _, h, w = images.shape
    if h == size and w == size:
        return images
    is_torch = isinstance(images, torch.Tensor)
    array = images.cpu().numpy() if is_torch else images
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    for i in range(n):
        out[i] = resize_hwc(np.ascontiguousarray(array[i].transpose(1, 2, 0)), size).transpose(
            2, 0, 1
        )
    return torch.from_numpy(out) if is_torch else out


def resize_hwc(image: np.ndarray, size: int) -> np.ndarray:
    """Resize one uint8 HWC RGB image to ``size`` x ``size`` (PIL bicubic, antialiased)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None))
