"""The image pipeline: from a record's image entry to the RGB picture the model sees.

`load_image(src, root=..., config=...)` takes a path relative to the dataset root, encoded bytes, a
`data:image/...;base64,` URI or (only when `config.allow_urls`) an http(s) URL, and returns an RGB
`PIL.Image` resized by Qwen3-VL's rules. Every failure is a `BadImage` that names the image (and the
record, when given), so a build can skip the record and say why.

Steps, in order:
1. Resolve: paths are confined to the dataset root (after resolving `..` and symlinks); URLs refused
   unless allowed.
2. Open with PIL. The size is read from the header first: images over `max_source_pixels` are refused
   before any pixel is decoded (decompression-bomb guard; PIL's own guard at ~179 MP also applies).
3. First frame of animated images; EXIF orientation applied.
4. Convert to RGB: alpha (RGBA, LA, P with transparency) flattened on white; CMYK, L, 1 converted;
   16-bit and 32-bit integer (I;16, I) scaled to 8 bits; float (F) images clipped to [0, 1] or [0, 255].
5. Resize with `qwen_vl_utils.smart_resize`: both sides multiples of `factor` (patch 16 x merge 2 = 32
   for Qwen3-VL), pixel count within [min_pixels, max_pixels]; tiny images (1x1) are upscaled to the
   minimum. Aspect ratios over 200 are refused (Qwen's limit).

`prepare_image` gives the bytes to store: the source itself when it already is the image the model sees
(saves a PNG re-encode), else a new PNG. The image then costs `image_tokens(h, w) = (h/32) * (w/32)`
tokens in the prompt. Give the trainer's
processor the same min/max pixels, so it does not resize again.
"""
from __future__ import annotations

import base64
import io
import urllib.request
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

QWEN3_VL_FACTOR = 32
"""Qwen3-VL: 16-pixel patches merged 2x2, so one image token per 32x32 pixels."""
MAX_URL_BYTES = 64 * 2**20
"""Largest download accepted for one image URL (when URLs are allowed at all)."""


class BadImage(ValueError):
    """An image that cannot be used; the message names the image and, when known, the record."""


@dataclass(frozen=True)
class ImageConfig:
    min_pixels: int = 4 * 32 * 32
    """Smallest image after resizing, in pixels (qwen-vl-utils' default: 4 tokens, 64x64)."""
    max_pixels: int = 1024 * 32 * 32
    """Largest image after resizing, in pixels (1024 image tokens; raise it for dense charts)."""
    factor: int = QWEN3_VL_FACTOR
    """Both sides are rounded to multiples of this (patch size x spatial merge)."""
    max_source_pixels: int = 64_000_000
    """Decompression-bomb guard: refuse a source image with more pixels than this (e.g. 20000x20000)."""
    allow_urls: bool = False
    """Fetch http(s) images; off by default so a build never reaches the network by surprise."""
    url_timeout_s: float = 10.0
    """Timeout for one URL fetch when `allow_urls` is on."""


def _name(src: object, record: str | None) -> str:
    if isinstance(src, (bytes, bytearray)):
        what = f"<{len(src)} bytes>"
    else:
        what = str(src)
        what = what if len(what) <= 120 else what[:117] + "..."
    return f"{what} (record {record})" if record else what


def resolve_path(path: str | Path, root: str | Path | None, *, record: str | None = None) -> Path:
    """The real file `path` names under `root`; `BadImage` when it escapes the root or no root is given."""
    if root is None:
        raise BadImage(f"{_name(path, record)}: image path given but no dataset root to resolve it against")
    root_real = Path(root).resolve()
    p = Path(path)
    candidate = p if p.is_absolute() else root_real / p
    real = candidate.resolve()  # follows symlinks and `..`
    if real != root_real and root_real not in real.parents:
        raise BadImage(f"{_name(path, record)}: path escapes the dataset root {root_real}")
    if not real.is_file():
        raise BadImage(f"{_name(path, record)}: no such file under {root_real}")
    return real


def read_source(src: str | Path | bytes, root: str | Path | None = None, config: ImageConfig = ImageConfig(),
                *, record: str | None = None) -> bytes:
    """The encoded bytes of an image entry (bytes, data URI, path under `root`, or allowed URL)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    s = str(src)
    if s.startswith(("http://", "https://")):
        if not config.allow_urls:
            raise BadImage(f"{_name(s, record)}: URLs are refused (set allow_urls to fetch them)")
        try:
            with urllib.request.urlopen(s, timeout=config.url_timeout_s) as resp:  # noqa: S310 (opt-in)
                data = resp.read(MAX_URL_BYTES + 1)
        except Exception as e:  # network errors of every kind
            raise BadImage(f"{_name(s, record)}: fetch failed: {e}") from e
        if len(data) > MAX_URL_BYTES:
            raise BadImage(f"{_name(s, record)}: more than {MAX_URL_BYTES:,} bytes")
        return data
    if s.startswith("data:image"):
        try:
            return base64.b64decode(s.split("base64,", 1)[1], validate=True)
        except Exception as e:
            raise BadImage(f"{_name(s, record)}: bad base64 data URI: {e}") from e
    if s.startswith("file://"):
        s = s[len("file://"):]
    path = resolve_path(s, root, record=record)
    try:
        return path.read_bytes()
    except OSError as e:
        raise BadImage(f"{_name(s, record)}: cannot read: {e}") from e


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: alpha flattened on white, high bit depths scaled to 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode == "F" and a.size and np.nanmax(a) <= 1.0:
            a = a * 255.0
        elif mode != "F" and a.size and a.max() > 255:
            a = a / 257.0  # 16-bit range 0..65535 onto 0..255
        a = np.nan_to_num(a, nan=0.0).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, ...


@lru_cache(maxsize=1)
def _smart_resize():
    from qwen_vl_utils import smart_resize  # imports torch: done once, on first use

    return smart_resize


def resized_size(height: int, width: int, config: ImageConfig = ImageConfig()) -> tuple[int, int]:
    """(height, width) after Qwen's resize rules; ValueError for aspect ratios over 200."""
    return _smart_resize()(height, width, factor=config.factor,
                           min_pixels=config.min_pixels, max_pixels=config.max_pixels)


def image_tokens(height: int, width: int, factor: int = QWEN3_VL_FACTOR) -> int:
    """Image tokens in the prompt for an already resized image: (h/32) * (w/32) for Qwen3-VL."""
    return (height // factor) * (width // factor)


def decode(data: bytes, config: ImageConfig = ImageConfig(), *, name: str = "<bytes>") -> Image.Image:
    """Decode encoded bytes to an RGB image, unresized, with every guard of the pipeline."""
    return _decode(data, config, name)[0]


def _decode(data: bytes, config: ImageConfig, name: str) -> tuple[Image.Image, bool]:
    """(RGB image, whether `data` already is that image: a one-frame RGB PNG/JPEG without EXIF rotation)."""
    if not data:
        raise BadImage(f"{name}: empty (zero-byte) image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > config.max_source_pixels:
                raise BadImage(f"{name}: {w}x{h} = {w * h:,} pixels exceeds max_source_pixels "
                               f"{config.max_source_pixels:,} (decompression-bomb guard)")
            if w < 1 or h < 1:
                raise BadImage(f"{name}: empty image size {w}x{h}")
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                img.seek(0)  # animated: the first frame
            img.load()
            as_is = (img.format in ("PNG", "JPEG") and img.mode == "RGB" and frames == 1
                     and img.getexif().get(0x0112, 1) == 1)
            img = ImageOps.exif_transpose(img)
            return to_rgb(img), as_is
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage(f"{name}: decompression-bomb guard: {e}") from e
    except UnidentifiedImageError as e:
        raise BadImage(f"{name}: not a recognised image format") from e
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:  # truncated, corrupt, odd modes
        raise BadImage(f"{name}: cannot decode: {e}") from e


def load_image(src: str | Path | bytes, root: str | Path | None = None, config: ImageConfig = ImageConfig(),
               *, record: str | None = None) -> Image.Image:
    """The RGB image the model sees, resized by Qwen's rules; `BadImage` naming `src`/`record` on failure."""
    return _load(src, root, config, record)[0]


def _load(src: str | Path | bytes, root: str | Path | None, config: ImageConfig,
          record: str | None) -> tuple[Image.Image, bytes | None]:
    """(image the model sees, the source bytes when they already encode exactly that image, else None)."""
    name = _name(src, record)
    data = read_source(src, root, config, record=record)
    img, as_is = _decode(data, config, name)
    w, h = img.size
    try:
        nh, nw = resized_size(h, w, config)
    except ValueError as e:  # aspect ratio over 200
        raise BadImage(f"{name}: {w}x{h}: {e}") from e
    if (nw, nh) != (w, h):
        img, as_is = img.resize((nw, nh), Image.Resampling.BICUBIC), False
    return img, data if as_is else None


def prepare_image(src: str | Path | bytes, root: str | Path | None = None, config: ImageConfig = ImageConfig(),
                  *, record: str | None = None) -> tuple[bytes, int, int]:
    """(encoded bytes, height, width) of the image the model sees, for storing: the source bytes when they
    already are that image (an RGB PNG/JPEG at a valid size, no EXIF rotation), else a new PNG."""
    img, data = _load(src, root, config, record)
    return (data if data is not None else encode_png(img)), img.height, img.width


def encode_png(img: Image.Image, compress_level: int = 1) -> bytes:
    """PNG bytes of `img` (lossless; low compression level for build speed)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
