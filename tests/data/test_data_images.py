"""The image pipeline on real files: every mode converted right, every bad file refused with a named
error, paths confined to the dataset root, sizes resized by Qwen's rules."""
from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
from PIL import Image

from sapo_vl.data.images import BadImage, ImageConfig, image_tokens, load_image, prepare_image, resized_size

WHITE, RED, BLUE, GRAY = (255, 255, 255), (255, 0, 0), (0, 0, 255), (128, 128, 128)

# case -> (size (w, h) after the pipeline, {pixel (x, y): expected RGB}) ; JPEG pixels compared within 8 levels.
GOOD = {
    "rgb.png": ((96, 64), {(0, 0): RED}),  # 100x60 -> nearest multiples of 32
    "rgba.png": ((64, 64), {(5, 5): RED, (60, 5): WHITE}),  # transparent half flattened on white
    "p_transparent.png": ((64, 64), {(5, 5): RED, (60, 5): WHITE}),  # palette transparency -> white
    "l.png": ((64, 64), {(5, 5): GRAY}),
    "la.png": ((64, 64), {(5, 5): WHITE}),  # transparent black -> white
    "cmyk.jpg": ((64, 64), {(32, 32): RED}),
    "i16.png": ((64, 64), {(5, 5): GRAY}),  # 16-bit 128*257 -> 128
    "i32.tif": ((64, 64), {(5, 5): GRAY}),  # 32-bit integer, same scaling
    "float.tif": ((64, 64), {(5, 5): GRAY}),  # float 0.5 -> 128
    "animated.gif": ((64, 64), {(5, 5): RED}),  # first frame (red), not the second (blue)
    "tiny_1x1.png": ((64, 64), {(0, 0): BLUE, (63, 63): BLUE}),  # upscaled to min_pixels = 64x64
    "exif_rot6.jpg": ((64, 96), {(32, 10): RED, (32, 85): BLUE}),  # 40x20 rotated by EXIF: left half -> top
}

# case -> words the BadImage message must contain (always the file name too)
BAD = {
    "bomb_20000.png": "decompression-bomb",
    "truncated.png": "truncated",
    "corrupt.png": "cannot decode",
    "zero.png": "zero-byte",
    "text.png": "not a recognised image",
    "thin_1x300.png": "aspect ratio",
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_images_become_rgb_at_qwen_sizes(image_dir, case):
    root, _ = image_dir
    img = load_image(f"imgs/{case}", root)
    size, pixels = GOOD[case]
    assert img.mode == "RGB" and img.size == size
    assert img.width % 32 == 0 and img.height % 32 == 0
    for xy, rgb in pixels.items():
        assert np.abs(np.array(img.getpixel(xy)) - rgb).max() <= 8, (case, xy, img.getpixel(xy))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_images_raise_badimage_naming_the_file(image_dir, case):
    root, _ = image_dir
    with pytest.raises(BadImage) as e:
        load_image(f"imgs/{case}", root, record="rec/7")
    assert BAD[case] in str(e.value) and case in str(e.value) and "rec/7" in str(e.value)


def test_bytes_and_data_uri_load_like_the_file(image_dir):
    root, paths = image_dir
    data = paths["rgba.png"].read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    ref = np.asarray(load_image("imgs/rgba.png", root))
    assert np.array_equal(np.asarray(load_image(data)), ref)
    assert np.array_equal(np.asarray(load_image(uri)), ref)


def test_max_source_pixels_is_configurable(image_dir):
    root, _ = image_dir
    with pytest.raises(BadImage, match="max_source_pixels"):
        load_image("imgs/rgb.png", root, ImageConfig(max_source_pixels=5000))  # 100x60 = 6000 pixels
    assert load_image("imgs/rgb.png", root, ImageConfig(max_source_pixels=6000)).size == (96, 64)


@pytest.mark.parametrize("h, w, min_px, max_px, expected", [
    (1, 1, 4 * 32 * 32, 1024 * 32 * 32, (64, 64)),  # tiny -> minimum
    (60, 100, 4 * 32 * 32, 1024 * 32 * 32, (64, 96)),  # rounded to multiples of 32
    (2000, 3000, 4 * 32 * 32, 256 * 32 * 32, (416, 608)),  # down to <= 256 tokens, aspect kept
    (512, 512, 4 * 32 * 32, 256 * 32 * 32, (512, 512)),  # exactly 256 tokens: unchanged
])
def test_resized_size_follows_qwen_rules(h, w, min_px, max_px, expected):
    got = resized_size(h, w, ImageConfig(min_pixels=min_px, max_pixels=max_px))
    assert got == expected
    assert min_px <= got[0] * got[1] <= max_px and got[0] % 32 == 0 and got[1] % 32 == 0


def test_image_tokens_count_32px_cells():
    assert image_tokens(64, 96) == 6 and image_tokens(416, 608) == 13 * 19


@pytest.fixture()
def confined(tmp_path):
    """root/ with root/sub/ok.png, a file outside the root, and symlinks in and out."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (64, 64), RED).save(root / "sub" / "ok.png")
    Image.new("RGB", (64, 64), BLUE).save(outside / "secret.png")
    os.symlink(outside / "secret.png", root / "link_out.png")
    os.symlink(outside, root / "dir_out")
    os.symlink(root / "sub" / "ok.png", root / "link_in.png")
    return root, outside


@pytest.mark.parametrize("src, error", [
    ("sub/ok.png", None),
    ("link_in.png", None),  # a symlink that stays inside the root is fine
    ("file://{root}/sub/ok.png", None),
    ("{root}/sub/ok.png", None),  # absolute, but inside
    ("../outside/secret.png", "escapes"),
    ("sub/../../outside/secret.png", "escapes"),
    ("link_out.png", "escapes"),  # symlink to a file outside
    ("dir_out/secret.png", "escapes"),  # through a symlinked folder
    ("{outside}/secret.png", "escapes"),  # absolute, outside
    ("file://{outside}/secret.png", "escapes"),
    ("sub/missing.png", "no such file"),
    ("sub", "no such file"),  # a folder is not an image
    ("https://example.com/cat.png", "URLs are refused"),
    ("http://localhost/cat.png", "URLs are refused"),
])
def test_paths_are_confined_to_the_root(confined, src, error):
    root, outside = confined
    src = src.format(root=root, outside=outside)
    if error is None:
        assert load_image(src, root).getpixel((0, 0)) == RED
    else:
        with pytest.raises(BadImage, match=error):
            load_image(src, root)


def test_a_path_without_a_root_is_refused(confined):
    root, _ = confined
    with pytest.raises(BadImage, match="no dataset root"):
        load_image(str(root / "sub" / "ok.png"))


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("make, kept, size", [
    (lambda: _encoded(Image.new("RGB", (64, 96), RED), "PNG"), True, (64, 96)),  # already what the model sees
    (lambda: _encoded(Image.new("RGB", (64, 96), RED), "JPEG"), True, (64, 96)),
    (lambda: _encoded(Image.new("RGB", (100, 60), RED), "PNG"), False, (96, 64)),  # needs a resize
    (lambda: _encoded(Image.new("RGBA", (64, 64), RED), "PNG"), False, (64, 64)),  # needs RGB
    (lambda: _encoded(Image.new("RGB", (64, 64), RED), "GIF"), False, (64, 64)),  # not PNG/JPEG
])
def test_prepare_image_keeps_source_bytes_only_when_they_are_the_final_image(make, kept, size):
    src = make()
    data, h, w = prepare_image(src)
    assert (data == src) is kept and (w, h) == size
    img = Image.open(io.BytesIO(data))
    assert img.size == size and img.mode == "RGB" and (kept or img.format == "PNG")


def test_prepare_image_reencodes_exif_rotated_jpeg(image_dir):
    root, paths = image_dir
    data, h, w = prepare_image("imgs/exif_rot6.jpg", root)
    assert data != paths["exif_rot6.jpg"].read_bytes() and (w, h) == (64, 96) and data[:4] == b"\x89PNG"


def test_urls_load_only_when_allowed(image_dir):
    """A server on localhost (no network needed) stands in for a remote host."""
    import functools
    import http.server
    import threading

    root, _ = image_dir
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/imgs/rgba.png"
        with pytest.raises(BadImage, match="URLs are refused"):
            load_image(url)
        img = load_image(url, config=ImageConfig(allow_urls=True))
        assert img.size == (64, 64) and img.getpixel((60, 5)) == WHITE
        with pytest.raises(BadImage, match="fetch failed"):
            load_image(url.replace("rgba.png", "absent.png"), config=ImageConfig(allow_urls=True))
    finally:
        server.shutdown()
        server.server_close()
