"""Tests for advisor.images: listing, the decoding rule, bad files, batching and workers."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from advisor.errors import AdvisorError
from advisor.images import (
    IMAGE_EXTENSIONS,
    DecodeError,
    ImageSet,
    LoadReport,
    Skipped,
    decode_image,
    iter_batches,
    load_images,
    open_image_set,
    resize_hwc,
    resize_uint8,
)

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ADVISOR_CACHE", str(tmp_path_factory.mktemp("cache")))


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def random_rgb(h: int = 12, w: int = 10) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def pil_rgb(data: bytes) -> np.ndarray:
    """What plain PIL gives: open, convert to RGB."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def png_rgb16(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (PIL cannot save one)."""
    h, w, _ = values.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_folder(root: Path, count: int = 5, size: tuple[int, int] = (12, 10)) -> list[np.ndarray]:
    """``count`` random PNGs, some in a subfolder, created out of name order."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"sub/img{i}.png" if i % 2 else f"img{i}.png" for i in range(count)]
    arrays = {}
    for name in reversed(names):
        arrays[name] = random_rgb(*size)
        (root / name).parent.mkdir(exist_ok=True)
        Image.fromarray(arrays[name]).save(root / name)
    return [arrays[name] for name in sorted(names)]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        os.path.join(folder, name): (
            os.lstat(os.path.join(folder, name)).st_mtime_ns,
            os.lstat(os.path.join(folder, name)).st_size,
        )
        for folder, dirs, files in os.walk(root)
        for name in files + dirs
    }


def load_folder_with(tmp_path: Path, bad_name: str, bad: bytes | None = None):
    """A folder with one good PNG and ``bad_name`` (written with ``bad`` if given)."""
    root = tmp_path / "set"
    root.mkdir()
    Image.fromarray(random_rgb()).save(root / "good.png")
    if bad is not None:
        (root / bad_name).write_bytes(bad)
    image_set = open_image_set(root)
    report = LoadReport()
    batches = list(iter_batches(image_set, size=None, workers=0, report=report))
    return image_set, batches, report


# --- decoding: formats and the conversion rule ------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_format_decodes_like_pil(fmt):
    data = encode(Image.fromarray(random_rgb()), fmt)
    out = decode_image(data)
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, pil_rgb(data))


@pytest.mark.parametrize(
    "fmt,kwargs", [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})]
)
def test_lossless_formats_give_the_exact_pixels(fmt, kwargs):
    pixels = random_rgb()
    np.testing.assert_array_equal(
        decode_image(encode(Image.fromarray(pixels), fmt, **kwargs)), pixels
    )


def test_extensions_cover_the_formats():
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_alpha_is_composited_onto_white(fmt):
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 100, 200, 128]]], np.uint8)
    out = decode_image(
        encode(Image.fromarray(rgba, "RGBA"), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    )
    expected = (rgba[..., :3].astype(int) * 128 + 127 * 255 + 127) // 255
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [10, 20, 30])
    np.testing.assert_array_equal(out[0, 2], expected[0, 2])


def test_gray_alpha_is_composited_onto_white_and_replicated():
    la = np.array([[[50, 0], [50, 128], [50, 255]]], np.uint8)
    out = decode_image(encode(Image.fromarray(la, "LA"), "PNG"))
    np.testing.assert_array_equal(out[0, :, 0], [255, (50 * 128 + 127 * 255 + 127) // 255, 50])
    assert (out == out[..., :1]).all()


def test_palette_transparency_is_white_and_other_entries_keep_their_colour():
    image = Image.new("P", (3, 1))
    image.putpalette([10, 20, 30, 40, 50, 60])
    image.putpixel((1, 0), 1)
    out = decode_image(encode(image, "PNG", transparency=0))
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [40, 50, 60], [255, 255, 255]])
    gif = decode_image(encode(image, "GIF", transparency=0))
    np.testing.assert_array_equal(gif[0], [[255, 255, 255], [40, 50, 60], [255, 255, 255]])


def test_palette_without_transparency_gives_palette_colours():
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 40, 50, 60])
    image.putpixel((1, 0), 1)
    np.testing.assert_array_equal(
        decode_image(encode(image, "PNG"))[0], [[10, 20, 30], [40, 50, 60]]
    )


def test_rgb_and_gray_transparency_keys_become_white():
    rgb = Image.fromarray(np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8))
    out = decode_image(encode(rgb, "PNG", transparency=(1, 2, 3)))
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [4, 5, 6]])
    gray = Image.fromarray(np.array([[7, 9]], np.uint8))
    np.testing.assert_array_equal(
        decode_image(encode(gray, "PNG", transparency=7))[0], [[255] * 3, [9] * 3]
    )


def test_grayscale_and_bilevel_are_replicated():
    gray = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    out = decode_image(encode(Image.fromarray(gray), "PNG"))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    bits = Image.fromarray(gray > 127).convert("1")
    np.testing.assert_array_equal(
        decode_image(encode(bits, "PNG"))[..., 1], np.where(gray > 127, 255, 0)
    )


def test_16_bit_gray_is_shifted_to_8_bit():
    values = np.array([[0, 255, 256, 4660, 65535]], np.uint16)
    out = decode_image(encode(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(out[0, :, 0], values[0] >> 8)
    gray_with_key = decode_image(encode(Image.fromarray(values), "PNG", transparency=4660))
    np.testing.assert_array_equal(gray_with_key[0, :, 2], [0, 0, 1, 255, 255])


def test_16_bit_rgb_keeps_the_high_byte():
    values = RNG.integers(0, 65536, (3, 4, 3)).astype(np.uint16)
    np.testing.assert_array_equal(decode_image(png_rgb16(values)), values >> 8)


def test_32_bit_integer_and_float_gray():
    ints = np.array([[0, 255, 256, 65535, 70000, -5]], np.int32)
    out = decode_image(encode(Image.fromarray(ints), "TIFF"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 255, 255, 0])
    floats = np.array([[0.4, 0.6, 100.0, 300.0, -3.0, np.nan]], np.float32)
    out = decode_image(encode(Image.fromarray(floats), "TIFF"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 100, 255, 0, 0])


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk_becomes_rgb(fmt):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255], [0, 255, 255, 0]]], np.uint8)
    out = decode_image(
        encode(Image.fromarray(cmyk, "CMYK"), fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    )
    expected = [[255, 255, 255], [0, 255, 255], [0, 0, 0], [255, 0, 0]]
    np.testing.assert_allclose(out[0].astype(int), expected, atol=0 if fmt == "TIFF" else 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_imageops(orientation):
    exif = Image.Exif()
    exif[274] = orientation
    data = encode(Image.fromarray(random_rgb(8, 14)), "JPEG", exif=exif, quality=95)
    out = decode_image(data)
    np.testing.assert_array_equal(
        out, np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    )
    assert out.shape == ((14, 8, 3) if orientation >= 5 else (8, 14, 3))


def test_exif_rotation_turns_the_pixels():
    pixels = random_rgb(4, 6)
    exif = Image.Exif()
    exif[274] = 6  # stored rotated 90 degrees counter-clockwise; display turns it clockwise
    out = decode_image(encode(Image.fromarray(pixels), "PNG", exif=exif))
    np.testing.assert_array_equal(out, np.rot90(pixels, k=-1))


def test_gif_gives_its_first_frame():
    frames = [
        Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    ]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert (decode_image(data) == [255, 0, 0]).all()


# --- decoding: bad bytes ---------------------------------------------------------------------


def test_decode_error_reasons():
    png = encode(Image.fromarray(random_rgb(64, 64)), "PNG")
    jpeg = encode(Image.fromarray(random_rgb(64, 64)), "JPEG")
    cases = {
        b"": "zero bytes",
        b"hello, I am text\n": "not an image",
        png[: len(png) // 2]: "truncated",
        jpeg[: len(jpeg) // 2]: "truncated",
    }
    for data, reason in cases.items():
        with pytest.raises(DecodeError) as caught:
            decode_image(data)
        assert caught.value.reason == reason


def test_decompression_bomb_is_refused_before_decoding():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(DecodeError, match=r"decompression bomb \(10000 px > 9999\)"):
        decode_image(data, max_pixels=9999)
    assert decode_image(data, max_pixels=10000).shape == (100, 100, 3)


def test_formats_outside_the_list_are_not_images():
    with pytest.raises(DecodeError, match="not an image"):
        decode_image(encode(Image.fromarray(random_rgb()), "PPM"))


# --- listing -----------------------------------------------------------------------------------


def test_folder_is_recursive_sorted_and_ignores_hidden_and_other_files(tmp_path):
    arrays = make_folder(tmp_path / "set", count=4)
    root = tmp_path / "set"
    (root / "notes.txt").write_text("not listed")
    (root / ".hidden.png").write_bytes(b"")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(b"")
    Image.fromarray(random_rgb()).save(root / "UPPER.JPG")
    image_set = open_image_set(root)
    assert image_set.names == ("UPPER.JPG", "img0.png", "img2.png", "sub/img1.png", "sub/img3.png")
    assert image_set.skipped == ()
    images, report = load_images(root, size=None)
    assert report.skipped == [] and report.loaded == 5
    np.testing.assert_array_equal(images[1:], np.stack(arrays).transpose(0, 3, 1, 2))


def test_zip_lists_and_decodes_like_the_folder(tmp_path):
    root = tmp_path / "set"
    make_folder(root, count=5)
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("no image")
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*"), reverse=True):
            zf.write(path, path.relative_to(root).as_posix())
        zf.writestr("__MACOSX/._img0.png", b"resource fork")
        zf.writestr(".DS_Store/x.png", b"junk")
    from_folder, folder_report = load_images(root, size=8)
    from_zip, zip_report = load_images(archive, size=8)
    assert open_image_set(archive).names == open_image_set(root).names
    np.testing.assert_array_equal(from_zip, from_folder)
    assert zip_report.skipped == folder_report.skipped
    assert zip_report.skipped == [
        Skipped("empty.png", "zero bytes"),
        Skipped("text.png", "not an image"),
    ]


def test_list_keeps_the_given_order_and_a_missing_item_is_an_error(tmp_path):
    arrays = make_folder(tmp_path, count=3)
    paths = [tmp_path / "sub/img1.png", str(tmp_path / "img0.png")]
    images, _ = load_images(paths, size=None)
    np.testing.assert_array_equal(images, np.stack([arrays[2], arrays[0]]).transpose(0, 3, 1, 2))
    assert open_image_set(paths).names == (str(paths[0]), paths[1])
    with pytest.raises(AdvisorError, match="missing.png .*does not exist"):
        open_image_set([*paths, tmp_path / "missing.png"])
    with pytest.raises(AdvisorError, match="empty"):
        open_image_set([])


def test_bad_sources_are_one_line_errors(tmp_path):
    (tmp_path / "single.png").write_bytes(encode(Image.fromarray(random_rgb()), "PNG"))
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    for source, message in [
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "single.png", "neither a folder nor a .zip"),
        (tmp_path / "broken.zip", "neither a folder nor a .zip"),
    ]:
        with pytest.raises(AdvisorError, match=message) as caught:
            open_image_set(source)
        assert "\n" not in str(caught.value)


# --- bad files: skipped and reported -----------------------------------------------------------


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("zero.png", b"", "zero bytes"),
        ("text.png", b"plain text, not pixels", "not an image"),
        ("cut.png", encode(Image.fromarray(random_rgb(64, 64)), "PNG")[:3000], "truncated"),
        ("cut.jpg", encode(Image.fromarray(random_rgb(64, 64)), "JPEG")[:1000], "truncated"),
    ],
)
def test_bad_file_is_skipped_and_reported(tmp_path, name, data, reason):
    image_set, batches, report = load_folder_with(tmp_path, name, data)
    assert report.skipped == [Skipped(name, reason)] and report.loaded == 1
    assert [image_set.names[i] for i in torch.cat([b.indices for b in batches])] == ["good.png"]


def test_decompression_bomb_file_is_skipped(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    Image.new("RGB", (10, 10)).save(root / "small.png")
    Image.new("RGB", (40, 40)).save(root / "bomb.png")
    report = LoadReport()
    list(iter_batches(open_image_set(root), size=None, max_pixels=1000, report=report))
    assert report.skipped == [Skipped("bomb.png", "decompression bomb (1600 px > 1000)")]


def test_broken_symlink_is_skipped(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "dangling.png").symlink_to(tmp_path / "gone.png")
    Image.fromarray(random_rgb()).save(root / "good.png")
    assert open_image_set(root).skipped == (Skipped("dangling.png", "broken symlink"),)


def test_symlink_loop_is_skipped(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "a.png").symlink_to(root / "b.png")
    (root / "b.png").symlink_to(root / "a.png")
    Image.fromarray(random_rgb()).save(root / "good.png")
    image_set = open_image_set(root)
    assert image_set.names == ("good.png",)
    assert image_set.skipped == (Skipped("a.png", "symlink loop"), Skipped("b.png", "symlink loop"))


def test_symlinked_files_and_folders_are_followed_without_looping(tmp_path):
    arrays = make_folder(tmp_path / "real", count=2)
    root = tmp_path / "set"
    root.mkdir()
    (root / "linked.png").symlink_to(tmp_path / "real" / "img0.png")
    (root / "dir").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "back").symlink_to(root)  # real/back -> set, set/dir -> real: a cycle
    images, _ = load_images(root, size=None)
    assert open_image_set(root).names == ("dir/img0.png", "dir/sub/img1.png", "linked.png")
    np.testing.assert_array_equal(images[2], arrays[0].transpose(2, 0, 1))


def test_directory_named_like_an_image_is_skipped(tmp_path):
    root = tmp_path / "set"
    (root / "folder.png").mkdir(parents=True)
    Image.fromarray(random_rgb()).save(root / "folder.png" / "inside.png")
    Image.fromarray(random_rgb()).save(root / "good.png")
    image_set = open_image_set(root)
    assert image_set.names == ("good.png",)
    assert image_set.skipped == (Skipped("folder.png", "is a directory"),)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    Image.fromarray(random_rgb()).save(root / "good.png")
    Image.fromarray(random_rgb()).save(root / "locked.png")
    (root / "locked.png").chmod(0)
    assert open_image_set(root).skipped == (Skipped("locked.png", "unreadable: permission denied"),)


def test_unreadable_file_is_skipped_simulated(tmp_path, monkeypatch):
    # Root reads everything, so deny access to one file the way a non-root user would see it.
    root = tmp_path / "set"
    root.mkdir()
    Image.fromarray(random_rgb()).save(root / "good.png")
    Image.fromarray(random_rgb()).save(root / "locked.png")
    real_access = os.access

    def access(path, mode, **kwargs):
        return not str(path).endswith("locked.png") and real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    assert open_image_set(root).skipped == (Skipped("locked.png", "unreadable: permission denied"),)


def test_file_gone_at_decode_time_is_skipped(tmp_path):
    root = tmp_path / "set"
    make_folder(root, count=2)
    image_set = open_image_set(root)
    (root / "img0.png").unlink()  # gone between listing and decoding
    report = LoadReport()
    list(iter_batches(image_set, size=None, report=report))
    assert report.skipped == [Skipped("img0.png", "unreadable: no such file or directory")]


def test_socket_named_like_an_image_is_not_a_regular_file(tmp_path):
    import socket

    root = tmp_path / "s"
    root.mkdir()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "sock.png"))
        assert open_image_set(root).skipped == (Skipped("sock.png", "not a regular file"),)
    finally:
        server.close()


def test_strict_mode_raises_at_the_first_skip(tmp_path):
    root = tmp_path / "set"
    make_folder(root, count=2)
    (root / "text.png").write_text("nope")
    with pytest.raises(AdvisorError, match=r"text.png: not an image \(strict mode"):
        list(iter_batches(open_image_set(root), size=None, strict=True))
    (root / "zero.jpg").write_bytes(b"")
    with pytest.raises(AdvisorError, match="zero.jpg: zero bytes"):
        next(iter_batches(open_image_set(root), size=None, strict=True))


def test_no_usable_image_is_a_one_line_error(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    with pytest.raises(AdvisorError, match="no usable image in .*: no image files found"):
        list(iter_batches(open_image_set(root), size=None))
    for i in range(7):
        (root / f"bad{i}.png").write_text(f"not\nan image {i}")
    with pytest.raises(AdvisorError) as caught:
        list(iter_batches(open_image_set(root), size=None))
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith(
        "skipped 7 of 7 files: bad0.png (not an image), bad1.png (not an image), "
        "bad2.png (not an image), bad3.png (not an image), bad4.png (not an image), and 2 more"
    )


def test_summary_escapes_odd_names():
    report = LoadReport([Skipped("a\nb.png", "zero bytes")], loaded=2)
    assert report.summary() == "skipped 1 of 3 files: a\\nb.png (zero bytes)"
    assert LoadReport(loaded=4).summary() == "loaded 4 files, none skipped"


# --- batching, sizes, workers -------------------------------------------------------------------


def test_plain_rgb_png_set_is_exactly_what_pil_gives(tmp_path):
    make_folder(tmp_path / "set", count=3)
    image_set = open_image_set(tmp_path / "set")
    (batch,) = iter_batches(image_set, size=None)
    assert batch.images.dtype == torch.uint8 and batch.images.is_contiguous()
    for i, name in enumerate(image_set.names):
        pil = np.asarray(Image.open(tmp_path / "set" / name).convert("RGB"))
        np.testing.assert_array_equal(batch.images[i].numpy(), pil.transpose(2, 0, 1))


def test_size_resizes_with_the_protocol_resize(tmp_path):
    arrays = make_folder(tmp_path / "set", count=3, size=(20, 14))
    images, _ = load_images(tmp_path / "set", size=9)
    assert images.shape == (3, 3, 9, 9)
    np.testing.assert_array_equal(images[0], resize_hwc(arrays[0], 9).transpose(2, 0, 1))


def test_native_sizes_must_agree_without_a_size(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    Image.fromarray(random_rgb(8, 8)).save(root / "a.png")
    Image.fromarray(random_rgb(8, 9)).save(root / "b.png")
    with pytest.raises(AdvisorError, match="b.png is 9x8 but earlier images are 8x8: give a size"):
        load_images(root, size=None)


def test_batch_size_never_changes_a_pixel(tmp_path):
    make_folder(tmp_path / "set", count=10)
    (tmp_path / "set" / "c_text.png").write_text("nope")
    image_set = open_image_set(tmp_path / "set")
    one = list(iter_batches(image_set, size=8, batch_size=1))
    seven = list(iter_batches(image_set, size=8, batch_size=7))
    assert [len(b.indices) for b in seven] == [7, 3]
    np.testing.assert_array_equal(
        torch.cat([b.images for b in one]), torch.cat([b.images for b in seven])
    )
    assert torch.cat([b.indices for b in seven]).tolist() == [i for i in range(11) if i != 0]


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_worker_processes_give_the_in_process_result(tmp_path, kind):
    root = tmp_path / "set"
    make_folder(root, count=9)
    (root / "zero.png").write_bytes(b"")
    (root / "text.png").write_text("nope")
    source = root
    if kind == "zip":
        source = tmp_path / "set.zip"
        with zipfile.ZipFile(source, "w") as zf:
            for path in root.rglob("*.png"):
                zf.write(path, path.relative_to(root).as_posix())
    image_set = open_image_set(source)
    image_set.read_bytes(0)  # the parent holds an open zip handle when workers fork
    before = snapshot(root)
    in_process = LoadReport()
    workers = LoadReport()
    a = list(iter_batches(image_set, size=8, batch_size=4, workers=0, report=in_process))
    b = list(iter_batches(image_set, size=8, batch_size=4, workers=2, report=workers))
    assert [x.indices.tolist() for x in a] == [x.indices.tolist() for x in b]
    np.testing.assert_array_equal(
        torch.cat([x.images for x in a]), torch.cat([x.images for x in b])
    )
    assert in_process == workers and len(workers.skipped) == 2
    assert snapshot(root) == before


def test_nothing_is_written_into_the_users_folder(tmp_path):
    root = tmp_path / "set"
    make_folder(root, count=4)
    (root / "bad.png").write_text("nope")
    before = snapshot(root)
    image_set = open_image_set(root)
    image_set.content_hash()
    load_images(image_set, size=8, workers=2)
    load_images(root, size=None)
    assert snapshot(root) == before


# --- content hash and pickling -----------------------------------------------------------------


def test_content_hash_is_stable_and_follows_bytes_and_order(tmp_path):
    make_folder(tmp_path / "set", count=3)
    files = sorted(str(p) for p in (tmp_path / "set").rglob("*.png"))
    first = open_image_set(files).content_hash()
    assert len(first) == 64 and first == open_image_set(tmp_path / "set").content_hash()
    assert open_image_set(files).content_hash() == first
    assert open_image_set(files[::-1]).content_hash() != first
    assert open_image_set(files[:2]).content_hash() != first
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(Path(files[2]).read_bytes())
    assert open_image_set([*files[:2], renamed]).content_hash() == first
    data = bytearray(Path(files[1]).read_bytes())
    data[-20] ^= 1
    Path(files[1]).write_bytes(bytes(data))
    assert open_image_set(files).content_hash() != first


def test_content_hash_of_zip_matches_the_folder_and_set_pickles(tmp_path):
    root = tmp_path / "set"
    make_folder(root, count=3)
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in root.rglob("*.png"):
            zf.write(path, path.relative_to(root).as_posix())
    from_zip = open_image_set(archive)
    assert from_zip.content_hash() == open_image_set(root).content_hash()
    copy = pickle.loads(pickle.dumps(from_zip))
    assert isinstance(copy, ImageSet) and copy.names == from_zip.names
    assert copy.read_bytes(2) == (root / from_zip.names[2]).read_bytes()


# --- the protocol resize --------------------------------------------------------------------------


def test_resize_uint8_matches_pil_per_image_for_numpy_and_torch():
    batch = RNG.integers(0, 256, (2, 3, 11, 7), dtype=np.uint8)
    expected = np.stack(
        [
            np.asarray(
                Image.fromarray(img.transpose(1, 2, 0)).resize((5, 5), Image.Resampling.BICUBIC)
            )
            for img in batch
        ]
    ).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(resize_uint8(batch, 5), expected)
    np.testing.assert_array_equal(resize_uint8(torch.from_numpy(batch), 5).numpy(), expected)
    square = batch[:, :, :7, :]
    assert resize_uint8(square, 7) is square
    with pytest.raises(ValueError):
        resize_uint8(batch.astype(np.float32), 5)
