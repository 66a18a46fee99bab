"""Tests for benchmarks/domains.py (demo domains from Debian packages) and the committed examples.

The conversion steps are tested on synthetic images with known answers, so most tests need no
Debian package. Tests that render real fonts or read the package files skip when those are absent.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from advisor.errors import AdvisorError
from benchmarks import domains as D

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: DATA.md's counts for the two committed target domains.
EXAMPLE_COUNTS = {"emoji_nature_food": 285, "cjk_glyphs": 1000}


def _rgba(h: int, w: int, colour=(0, 0, 0, 0)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (h, w, 4)).copy()


def _black_box_on_transparent(canvas: tuple[int, int], top: int, left: int, h: int, w: int):
    array = _rgba(*canvas)
    array[top : top + h, left : left + w] = (0, 0, 0, 255)
    return Image.fromarray(array, mode="RGBA")


# ------------------------------------------------------------------------- conversion steps


def test_composite_on_white_matches_alpha_blend_formula():
    alphas = np.arange(0, 256, 15, dtype=np.uint8)
    array = _rgba(1, alphas.size, (40, 120, 250, 0))
    array[0, :, 3] = alphas
    out = D.composite_on_white(Image.fromarray(array, mode="RGBA"))
    a = alphas[:, None] / 255.0
    expected = np.array([40, 120, 250]) * a + 255 * (1 - a)
    assert out.dtype == np.uint8 and out.shape == (1, alphas.size, 3)
    assert np.abs(out[0].astype(float) - expected).max() <= 1.0
    assert (out[0, 0] == 255).all()  # fully transparent -> white
    assert (out[0, -1] == (40, 120, 250)).all()  # opaque -> unchanged


def test_composite_on_white_handles_la_and_palette_transparency():
    la = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), mode="LA")
    assert D.composite_on_white(la).tolist() == [[[255, 255, 255], [10, 10, 10]]]

    palette = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 200, 30, 60] + [0] * 762)
    palette.info["transparency"] = 0  # index 0 transparent (tRNS)
    assert D.composite_on_white(palette).tolist() == [[[255, 255, 255], [200, 30, 60]]]

    rgb = np.array([[[1, 2, 3], [250, 251, 252]]], dtype=np.uint8)
    assert (D.composite_on_white(Image.fromarray(rgb, mode="RGB")) == rgb).all()


def test_crop_to_content_uses_any_channel_below_threshold():
    rgb = np.full((20, 30, 3), 255, dtype=np.uint8)
    assert D.crop_to_content(rgb) is None
    rgb[3, 4] = (255, 245, 255)  # 245 counts as white
    assert D.crop_to_content(rgb) is None
    rgb[5, 7] = (255, 255, 244)  # one channel below 245 is content
    rgb[12, 20] = (0, 255, 255)
    crop = D.crop_to_content(rgb)
    assert crop.shape == (12 - 5 + 1, 20 - 7 + 1, 3)
    assert (crop[0, 0] == (255, 255, 244)).all() and (crop[-1, -1] == (0, 255, 255)).all()


@pytest.mark.parametrize(
    ("h", "w", "side", "top", "left"),
    [(50, 100, 112, 31, 6), (100, 50, 112, 6, 31), (17, 17, 19, 1, 1), (1, 1, 1, 0, 0)],
)
def test_pad_to_square_centres_with_six_percent_margin(h, w, side, top, left):
    content = np.zeros((h, w, 3), dtype=np.uint8)
    out = D.pad_to_square(content)
    assert out.shape == (side, side, 3) and out.dtype == np.uint8
    inside = np.zeros((side, side), dtype=bool)
    inside[top : top + h, left : left + w] = True
    assert (out[inside] == 0).all() and (out[~inside] == 255).all()


def test_resize_square_keeps_constant_images_and_grey():
    flat = np.full((100, 100, 3), (12, 200, 77), dtype=np.uint8)
    assert (D.resize_square(flat, 32) == (12, 200, 77)).all()
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (90, 90, 1), dtype=np.uint8), 3, 2)
    small = D.resize_square(grey, 32)
    assert small.shape == (32, 32, 3)
    assert (small[..., 0] == small[..., 1]).all() and (small[..., 1] == small[..., 2]).all()


def _lanczos3_downscale_1d(x: np.ndarray, size: int) -> np.ndarray:
    """Reference Lanczos-3 downscale along axis 0, rounded to uint8.

    Pixel centres aligned, kernel widened by the scale factor (so it antialiases), weights
    normalised to sum 1: the textbook filter, written independently of Pillow.
    """
    scale = x.shape[0] / size
    out = np.empty((size, *x.shape[1:]))
    for i in range(size):
        centre = (i + 0.5) * scale
        j = np.arange(
            max(int(centre - 3 * scale + 0.5), 0), min(int(centre + 3 * scale + 0.5), x.shape[0])
        )
        weights = np.sinc((j + 0.5 - centre) / scale) * np.sinc((j + 0.5 - centre) / scale / 3)
        out[i] = np.tensordot(weights / weights.sum(), x[j].astype(float), axes=1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def test_resize_square_is_lanczos3():
    rgb = np.random.default_rng(2).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    reference = _lanczos3_downscale_1d(
        _lanczos3_downscale_1d(rgb.transpose(1, 0, 2), 32).transpose(1, 0, 2), 32
    )
    assert np.abs(D.resize_square(rgb, 32).astype(int) - reference).max() <= 1


def test_convert_is_translation_invariant_centred_and_blank_aware():
    a = D.convert(_black_box_on_transparent((200, 120), 10, 5, 20, 40), (32, 64))
    b = D.convert(_black_box_on_transparent((90, 300), 60, 250, 20, 40), (32, 64))
    assert sorted(a) == [32, 64]
    for size in (32, 64):
        assert a[size].shape == (size, size, 3) and a[size].dtype == np.uint8
        assert (a[size] == b[size]).all()
        # A centred box gives a picture symmetric under both flips.
        assert np.abs(a[size].astype(int) - a[size][::-1, ::-1]).max() <= 1
    # Box 40 wide: margin round(2.4) = 2 px of 44 at each side, so the edge columns stay white.
    assert (a[32][:, 0] == 255).all() and (a[32][16, 2:-2] < 128).all()
    blank = Image.fromarray(_rgba(10, 10, (0, 0, 0, 0)), mode="RGBA")
    assert D.convert(blank, (32,)) is None


def test_pixel_hash_and_dedupe():
    x = np.zeros((1, 2, 3), dtype=np.uint8)
    assert D.pixel_hash(x) == D.pixel_hash(x.copy())
    assert D.pixel_hash(x) != D.pixel_hash(x.reshape(2, 1, 3))  # same bytes, other shape
    assert D.pixel_hash(x) != D.pixel_hash(x + 1)
    assert D.dedupe(["a", "b", "a", "c", "b"]) == [True, True, False, True, False]
    assert D.dedupe([]) == []


def test_png_bytes_is_lossless_and_deterministic():
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = D.png_bytes(rgb)
    assert data == D.png_bytes(rgb.copy())
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGB"
    assert (np.asarray(image) == rgb).all()


def test_seeded_sample_is_a_sorted_seeded_subset():
    pool = list(range(1000, 3000))
    a = D.seeded_sample(pool, 50, 0)
    assert a == D.seeded_sample(list(reversed(pool)), 50, 0)  # pool order does not matter
    assert len(set(a)) == 50 and set(a) <= set(pool) and a == sorted(a)
    assert a != D.seeded_sample(pool, 50, 1)
    assert set(D.seeded_sample(pool, 20, 0)) <= set(a)  # a prefix of the same ranking


# ------------------------------------------------------------------------- candidate lists


def test_emoji_sequences_keeps_groups_fully_qualified_without_skin_tones(tmp_path):
    text = """# emoji-test.txt (synthetic)
# group: Smileys & Emotion
# subgroup: face-smiling
1F600                                      ; fully-qualified     # 😀 E1.0 grinning face
263A FE0F                                  ; fully-qualified     # ☺️ E0.6 smiling face
263A                                       ; unqualified         # ☺ E0.6 smiling face

# group: People & Body
1F44B                                      ; fully-qualified     # 👋 E0.6 waving hand
1F44B 1F3FB                                ; fully-qualified     # 👋🏻 E1.0 waving hand: light
1F468 200D 1F469 200D 1F467                ; fully-qualified     # 👨‍👩‍👧 E2.0 family
1F9D1 1F3FF 200D 1F4BB                     ; fully-qualified     # E4.0 technologist: dark
1F441 FE0F 200D 1F5E8                      ; minimally-qualified # E2.0 eye in speech bubble
# People & Body subtotal:		5

# group: Animals & Nature
1F98A                                      ; fully-qualified     # 🦊 E3.0 fox
"""
    path = tmp_path / "emoji-test.txt"
    path.write_text(text, encoding="utf-8")
    found = D.emoji_sequences(["Smileys & Emotion", "People & Body"], path=path)
    family = (0x1F468, 0x200D, 0x1F469, 0x200D, 0x1F467)
    assert found == [(0x1F600,), (0x263A, 0xFE0F), (0x1F44B,), family]
    assert D.emoji_sequences(["Animals & Nature"], path=path) == [(0x1F98A,)]
    assert D.emoji_sequences(["Flags"], path=path) == []


def test_file_candidates_skips_symlinks_and_excluded_folders(tmp_path):
    for rel in ["b/z.png", "a/y+.png", "top.png", "symbols/s.png", "a/notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "a" / "link.png").symlink_to(tmp_path / "top.png")
    found = D.file_candidates(tmp_path, "pre", exclude=("symbols",))
    assert [c.name for c in found] == ["pre-a__y_", "pre-b__z", "pre-top"]
    paths = [tmp_path / "a/y+.png", tmp_path / "b/z.png", tmp_path / "top.png"]
    assert [c.source.path for c in found] == paths


def test_latin_candidates_cover_21_styles_of_62_characters():
    names = [c.name for c in D.latin_candidates()]
    assert len(names) == len(set(names)) == 21 * 62
    assert "latin-sans-bold-0041" in names and "latin-serifcondensed-italic-007a" in names


# ------------------------------------------------------------------------------- build + CLI


def _synthetic_domain(tmp_path: Path) -> D.Domain:
    """Six files: two translated copies of one box (a duplicate), one blank, three distinct."""
    src = tmp_path / "src"
    src.mkdir()
    images = {
        "a": _black_box_on_transparent((60, 60), 5, 5, 10, 20),
        "b": _black_box_on_transparent((80, 50), 40, 20, 10, 20),  # same as "a" once cropped
        "c": _black_box_on_transparent((60, 60), 5, 5, 20, 10),
        "d": Image.fromarray(_rgba(30, 30, (255, 0, 0, 0)), mode="RGBA"),  # transparent: blank
        "e": Image.fromarray(np.full((40, 40), 30, dtype=np.uint8), mode="L"),
        "f": Image.fromarray(_rgba(30, 40, (0, 90, 200, 128)), mode="RGBA"),
    }
    for name, image in images.items():
        image.save(src / f"{name}.png")
    return D.Domain(
        "synthetic", "source", 4, ((src, "some-package"),), lambda: D.file_candidates(src, "s")
    )


def test_build_domain_counts_names_and_is_deterministic(tmp_path):
    domain = _synthetic_domain(tmp_path)
    counts = D.build_domain(domain, tmp_path / "out1", [64, 32])
    assert counts == D.BuildCounts(candidates=6, rejected=0, blank=1, duplicates=1, written=4)
    for size in (32, 64):
        files = sorted((tmp_path / "out1" / str(size) / "synthetic").iterdir())
        assert [f.name for f in files] == ["s-a.png", "s-c.png", "s-e.png", "s-f.png"]
        for f in files:
            image = Image.open(f)
            assert image.mode == "RGB" and image.size == (size, size)
    # Rebuilding, in parallel, into a folder holding a stale file gives the same bytes and no more.
    (tmp_path / "out2" / "32" / "synthetic").mkdir(parents=True)
    (tmp_path / "out2" / "32" / "synthetic" / "stale.png").write_bytes(b"x")
    D.build_domain(domain, tmp_path / "out2", [32, 64], jobs=2)
    for size in ("32", "64"):
        one = {f.name: f.read_bytes() for f in (tmp_path / "out1" / size / "synthetic").iterdir()}
        two = {f.name: f.read_bytes() for f in (tmp_path / "out2" / size / "synthetic").iterdir()}
        assert one == two
    assert not list((tmp_path / "out2" / "32").glob(".*"))  # no staging folder left


def test_missing_package_is_one_line_naming_apt_get(tmp_path, monkeypatch, capsys):
    missing = D.Domain(
        "emoji_people",
        "source",
        1,
        ((tmp_path / "absent.ttf", "fonts-imaginary"),),
        lambda: pytest.fail("candidates listed before the package check"),
    )
    with pytest.raises(AdvisorError, match="fonts-imaginary") as err:
        D.check_requirements([missing])
    assert "\n" not in str(err.value) and "apt-get install" in str(err.value)

    monkeypatch.setitem(D.DOMAINS, "emoji_people", missing)
    assert D.main(["--out", str(tmp_path / "out"), "--domains", "emoji_people"]) == 1
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "apt-get install -y --no-install-recommends" in stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ committed examples


@pytest.mark.parametrize(("name", "count"), sorted(EXAMPLE_COUNTS.items()))
def test_examples_hold_expected_32px_rgb_pngs(name, count):
    folder = EXAMPLES / name
    files = sorted(folder.iterdir())
    assert len(files) == count
    hashes = set()
    for f in files:
        with Image.open(f) as image:
            assert f.suffix == ".png" and image.format == "PNG"
            assert image.mode == "RGB" and image.size == (32, 32)
            pixels = np.asarray(image)
        hashes.add(D.pixel_hash(pixels))
        # The 6% margin keeps the outermost pixels white (LANCZOS bleeds a few levels only).
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        assert (border >= D.WHITE_BELOW).all()
        if name == "cjk_glyphs":  # glyph domains are grey
            assert (pixels == pixels[..., :1]).all()
    assert len(hashes) == count  # no duplicates
    assert (EXAMPLES / "DATA_LICENSES").is_file()


# ----------------------------------------------------------------- with the Debian packages

needs_emoji = pytest.mark.skipif(
    not (D.EMOJI_FONT.exists() and D.EMOJI_TEST.exists() and features.check("raqm")),
    reason=f"needs fonts-noto-color-emoji, unicode-data and libfribidi0 ({D.APT_INSTALL})",
)
needs_cjk = pytest.mark.skipif(
    not all((D.NOTO_CJK / file).exists() for _, file in D.CJK_STYLES)
    or importlib.util.find_spec("fontTools") is None,
    reason=f"needs fonts-noto-cjk and fontTools ({D.APT_INSTALL}; pip install fonttools)",
)


@needs_emoji
def test_emoji_render_rejects_sequences_that_fall_apart():
    one = D.GlyphSource(D.EMOJI_FONT, 0, D.EMOJI_FONT_SIZE, "\U0001f98a", True, D.EMOJI_MAX_WIDTH)
    image = D.render(one)
    assert image.mode == "RGBA" and image.width <= D.EMOJI_MAX_WIDTH
    pixels = D.convert(image, (32,))[32]
    assert pixels.std(axis=2).max() > 20  # colour, not grey
    two = D.GlyphSource(D.EMOJI_FONT, 0, D.EMOJI_FONT_SIZE, "\U0001f98a\U0001f98a", True, 160)
    assert D.render(two) is None
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one glyph only with raqm layout
    assert D.render(D.GlyphSource(D.EMOJI_FONT, 0, 109, family, True, 160)) is not None


@needs_emoji
def test_emoji_nature_food_matches_the_committed_example(tmp_path):
    candidates = D.DOMAINS["emoji_nature_food"].candidates()
    assert sorted(c.name + ".png" for c in candidates) == sorted(
        f.name for f in (EXAMPLES / "emoji_nature_food").iterdir()
    )
    sample = D.Domain("sample", "target", 0, (), lambda: candidates[::15])
    D.build_domain(sample, tmp_path / "a", [32])
    D.build_domain(sample, tmp_path / "b", [32])
    for built in sorted((tmp_path / "a" / "32" / "sample").iterdir()):
        assert built.read_bytes() == (tmp_path / "b" / "32" / "sample" / built.name).read_bytes()
        # Pixels, not bytes: another FreeType may shift a few levels without being wrong.
        committed = np.asarray(Image.open(EXAMPLES / "emoji_nature_food" / built.name), dtype=int)
        assert np.abs(np.asarray(Image.open(built), dtype=int) - committed).mean() < 2.0


@needs_cjk
def test_cjk_candidates_match_the_committed_example():
    candidates = D.cjk_candidates()
    names = [c.name for c in candidates]
    assert sorted(n + ".png" for n in names) == sorted(
        f.name for f in (EXAMPLES / "cjk_glyphs").iterdir()
    )
    kana = [c for c in candidates if int(c.name.split("-")[1], 16) < 0x3100]
    assert len(kana) == 178 and len(candidates) == 1000
    styles = [c.name.split("-", 2)[2] for c in candidates[:8]]
    assert styles == [s for s, _ in D.CJK_STYLES] * 2


@pytest.mark.slow
def test_all_domains_build_to_data_md_counts(tmp_path):
    try:
        D.check_requirements(list(D.DOMAINS.values()))
    except AdvisorError as err:
        pytest.skip(str(err))
    for domain in D.DOMAINS.values():
        counts = D.build_domain(domain, tmp_path, [32], jobs=2)
        assert counts.written == domain.expected, domain.name
