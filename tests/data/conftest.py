"""Fixtures for the data tests: a folder of real image files, good and bad, written by PIL (and by hand
for the 20000x20000 decompression bomb, a valid 1-bit PNG of ~60 KB)."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def bomb_png(w: int = 20000, h: int = 20000) -> bytes:
    """A valid all-black 1-bit PNG of w x h pixels, compressed row by row (never allocated in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, row = zlib.compressobj(9), b"\x00" * (1 + (w + 7) // 8)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_images(root: Path) -> dict[str, Path]:
    """Write every image case under root/imgs; returns case name -> path."""
    d = root / "imgs"
    d.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    files["rgb.png"] = _save(Image.new("RGB", (100, 60), RED), "PNG")
    rgba = Image.new("RGBA", (64, 64), (0, 0, 255, 0))  # fully transparent blue -> white
    rgba.paste((255, 0, 0, 255), (0, 0, 32, 64))  # opaque red left half
    files["rgba.png"] = _save(rgba, "PNG")
    p = Image.new("P", (64, 64), 1)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.paste(0, (0, 0, 32, 64))  # left half index 0 (red); right half index 1 (blue), transparent -> white
    files["p_transparent.png"] = _save(p, "PNG", transparency=1)
    files["l.png"] = _save(Image.new("L", (64, 64), 128), "PNG")
    files["la.png"] = _save(Image.new("LA", (64, 64), (0, 0)), "PNG")  # transparent black -> white
    files["cmyk.jpg"] = _save(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95)  # red
    files["i16.png"] = _save(Image.fromarray(np.full((64, 64), 128 * 257, dtype=np.uint16)), "PNG")  # 16-bit mid gray
    files["i32.tif"] = _save(Image.fromarray(np.full((64, 64), 32768 * 257 // 256, dtype=np.int32)), "TIFF")
    files["float.tif"] = _save(Image.fromarray(np.full((64, 64), 0.5, dtype=np.float32)), "TIFF")
    frames = [Image.new("RGB", (64, 64), RED), Image.new("RGB", (64, 64), BLUE)]
    files["animated.gif"] = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["tiny_1x1.png"] = _save(Image.new("RGB", (1, 1), BLUE), "PNG")
    rot = Image.new("RGB", (40, 20), BLUE)  # stored 40 wide: left half red, shown rotated 90 degrees clockwise
    rot.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    files["exif_rot6.jpg"] = _save(rot, "JPEG", exif=exif, quality=95)
    files["bomb_20000.png"] = bomb_png()
    good = _save(Image.new("RGB", (64, 64), RED), "PNG")
    files["truncated.png"] = good[: len(good) // 2]
    files["corrupt.png"] = b"\x89PNG\r\n\x1a\n" + b"not really an image" * 20
    files["zero.png"] = b""
    files["text.png"] = b"hello, I am text, not an image\n"
    files["thin_1x300.png"] = _save(Image.new("RGB", (300, 1), RED), "PNG")  # aspect ratio 300 > 200
    paths = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        paths[name] = d / name
    return paths


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """(dataset root, case name -> path) with every image case written once per session."""
    root = tmp_path_factory.mktemp("dataset")
    return root, write_images(root)
