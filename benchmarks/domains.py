"""Build advisor's demo image domains: real images from Debian packages, as small PNG folders.

Nine domains of real images made by nobody on this team (counts at 32 px, after dedupe):

    emoji_people       source   528  Noto Color Emoji, Smileys & Emotion + People & Body
    emoji_things       source   787  emoji, Objects + Travel & Places + Activities + Symbols
    clipart_icons      source  1491  openclipart computer/icons/**
    clipart_flags      source   491  openclipart signs_and_symbols/flags/**
    latin_glyphs       source  1302  DejaVu, 21 styles x [0-9A-Za-z], black on white
    tuxpaint_photo     source   547  Tux Paint stamps except symbols/ (GPL-2+: build, never commit)
    emoji_nature_food  target   285  Noto Color Emoji, Animals & Nature + Food & Drink
    cjk_glyphs         target  1000  Noto CJK, 178 kana + 822 ideographs (seed 0), 4 styles cycling
    clipart_animals    target   281  openclipart animals/** (held out: not bundled, measured after
                                     advisor rank's default was chosen)

Emoji are the fully-qualified entries of emoji-test.txt's groups, without skin tones, rendered
with raqm layout so that ZWJ sequences become one glyph (a render wider than 160 px fell apart
and is rejected). Files skip symlinks (repeats). Every image goes through one conversion:

    file or rendered glyph -> RGBA -> composite onto white -> crop to the non-white bounding box
    -> centred white square with a 6% margin -> LANCZOS resize straight to each size -> PNG

and exact duplicates (equal 32x32 pixels) are dropped, keeping the first in candidate order
(emoji-test.txt order, sorted paths, code points). Output: ``OUT/<size>/<domain>/<name>.png``,
RGB uint8, square, stable names. A build is deterministic: the same packages, Pillow and
FreeType give byte-identical files.

    python benchmarks/domains.py [--out DIR] [--size 32 64] [--domains NAME ...] [--jobs N]

Needs (build time only): the Debian packages named in ``APT_INSTALL``, and fontTools for the CJK
domain's character table.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import shutil
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from advisor.errors import AdvisorError

#: A pixel is content when any of its channels is below this value (after compositing on white).
WHITE_BELOW = 245
#: White margin on each side of the content, as a fraction of the content's longer side.
MARGIN = 0.06
#: Duplicates are exact matches at this size, whatever sizes are written.
HASH_SIZE = 32
DEFAULT_OUT = Path(__file__).resolve().parent / ".work" / "domains"
DEFAULT_SIZES = (32, 64)

PACKAGES = (
    "fonts-noto-color-emoji unicode-data openclipart-png fonts-dejavu-core fonts-dejavu-extra "
    "fonts-noto-cjk tuxpaint-stamps-default libfribidi0"
)
APT_INSTALL = f"apt-get update && apt-get install -y --no-install-recommends {PACKAGES}"

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
#: The only size Noto Color Emoji's bitmaps render at (136x128 px glyphs).
EMOJI_FONT_SIZE = 109
#: A render wider than this is a sequence that fell apart into several glyphs (no ligature).
EMOJI_MAX_WIDTH = 160
SKIN_TONES = range(0x1F3FB, 0x1F3FF + 1)
OPENCLIPART = Path("/usr/share/openclipart/png")
TUXPAINT = Path("/usr/share/tuxpaint/stamps")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
DEJAVU_CORE = ("Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif", "Serif-Bold")
DEJAVU_EXTRA = (
    "Sans-BoldOblique", "Sans-ExtraLight", "Sans-Oblique", "SansCondensed",
    "SansCondensed-Bold", "SansCondensed-BoldOblique", "SansCondensed-Oblique",
    "SansMono-BoldOblique", "SansMono-Oblique", "Serif-BoldItalic", "Serif-Italic",
    "SerifCondensed", "SerifCondensed-Bold", "SerifCondensed-BoldItalic", "SerifCondensed-Italic",
)  # fmt: skip
LATIN_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NOTO_CJK = Path("/usr/share/fonts/opentype/noto")
#: Face 0 of each collection is the Japanese one, which suits the kana.
CJK_STYLES = (
    ("sans-regular", "NotoSansCJK-Regular.ttc"),
    ("sans-bold", "NotoSansCJK-Bold.ttc"),
    ("serif-regular", "NotoSerifCJK-Regular.ttc"),
    ("serif-bold", "NotoSerifCJK-Bold.ttc"),
)
CJK_IDEOGRAPHS = 822
CJK_SEED = 0
#: Glyphs are rendered this large before cropping, well above the largest output size.
GLYPH_FONT_SIZE = 128


@dataclass(frozen=True)
class FileSource:
    """An image file on disk (any mode Pillow can convert to RGBA)."""

    path: Path


@dataclass(frozen=True)
class GlyphSource:
    """Text rendered with a font: colour bitmaps when ``color``, else black on transparent."""

    font: Path
    index: int
    size: int
    text: str
    color: bool = False
    max_width: int | None = None


@dataclass(frozen=True)
class Candidate:
    """One image a domain may contain; ``name`` is its stable file stem."""

    name: str
    source: FileSource | GlyphSource


@dataclass(frozen=True)
class Domain:
    """A named image domain and where its images come from.

    ``requires`` pairs a path with the Debian package that provides it; ``expected`` is the
    count DATA.md reports, printed beside the built count for comparison. A domain that is not
    ``redistributable`` (GPL) is built locally and never committed.
    """

    name: str
    role: str
    expected: int
    requires: tuple[tuple[Path, str], ...]
    candidates: Callable[[], list[Candidate]]
    redistributable: bool = True


@dataclass(frozen=True)
class BuildCounts:
    """What happened to a domain's candidates; ``written`` = the rest after the three skips."""

    candidates: int
    rejected: int
    blank: int
    duplicates: int
    written: int


# ---------------------------------------------------------------- conversion (pure functions)


def composite_on_white(image: Image.Image) -> np.ndarray:
    """Alpha-composite any PIL image onto opaque white; returns uint8 HWC RGB.

    Converting to RGBA first handles every alpha convention (RGBA, LA, P with tRNS); images
    without alpha come out unchanged.
    """
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


def crop_to_content(rgb: np.ndarray, *, white_below: int = WHITE_BELOW) -> np.ndarray | None:
    """Crop uint8 HWC RGB to the bounding box of pixels with any channel < ``white_below``.

    Returns None when no pixel qualifies (a blank image).
    """
    content = (rgb < white_below).any(axis=2)
    rows = np.flatnonzero(content.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(content.any(axis=0))
    return rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def pad_to_square(rgb: np.ndarray, *, margin: float = MARGIN) -> np.ndarray:
    """Centre uint8 HWC RGB on a white square whose side is ``longer * (1 + 2 * margin)``.

    The side is rounded to whole pixels; when the leftover on an axis is odd, the extra
    pixel goes after the content (right or bottom).
    """
    h, w = rgb.shape[:2]
    side = max(h, w) + 2 * round(margin * max(h, w))
    out = np.full((side, side, 3), 255, dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = rgb
    return out


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """LANCZOS-resize a square uint8 HWC RGB image to ``size`` x ``size``."""
    image = Image.fromarray(rgb, mode="RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))


def convert(image: Image.Image, sizes: Iterable[int]) -> dict[int, np.ndarray] | None:
    """The domain conversion: composite on white, crop, pad, resize straight to each size.

    Returns ``{size: uint8 HWC RGB}``, or None when the image is blank.
    """
    content = crop_to_content(composite_on_white(image))
    if content is None:
        return None
    square = pad_to_square(content)
    return {size: resize_square(square, size) for size in sorted(set(sizes))}


def pixel_hash(rgb: np.ndarray) -> str:
    """Hex sha256 of an image's shape and pixel bytes (the duplicate key)."""
    return hashlib.sha256(
        repr(rgb.shape).encode() + np.ascontiguousarray(rgb).tobytes()
    ).hexdigest()


def dedupe(keys: Sequence[str]) -> list[bool]:
    """For each key in order, whether it is the first with its value (True) or a repeat."""
    seen: set[str] = set()
    first = []
    for key in keys:
        first.append(key not in seen)
        seen.add(key)
    return first


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode uint8 HWC RGB as an optimised PNG with no metadata (deterministic bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# ------------------------------------------------------------------------- loading and render


@functools.lru_cache(maxsize=32)
def _font(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=index)


def render(source: FileSource | GlyphSource) -> Image.Image | None:
    """Load a file (in its own mode) or render a glyph as RGBA; None if a glyph is too wide."""
    if isinstance(source, FileSource):
        with Image.open(source.path) as image:
            image.load()
            return image
    font = _font(source.font, source.index, source.size)
    mode = "RGBA" if source.color else "L"
    left, top, right, bottom = font.getbbox(source.text, mode=mode)
    if source.max_width is not None and right - left > source.max_width:
        return None
    pad = 4
    canvas = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text(
        (pad - left, pad - top),
        source.text,
        font=font,
        fill=(0, 0, 0, 255),
        embedded_color=source.color,
    )
    return canvas


def process(candidate: Candidate, sizes: tuple[int, ...]) -> tuple[str, dict[int, bytes]] | str:
    """Render and convert one candidate.

    Returns ``(hash of the 32x32 result, {size: PNG bytes})``, or the string "rejected" /
    "blank" saying why it was skipped.
    """
    image = render(candidate.source)
    if image is None:
        return "rejected"
    converted = convert(image, (*sizes, HASH_SIZE))
    if converted is None:
        return "blank"
    return pixel_hash(converted[HASH_SIZE]), {size: png_bytes(converted[size]) for size in sizes}


def _process_all(
    candidates: Sequence[Candidate], sizes: tuple[int, ...], jobs: int
) -> list[tuple[str, dict[int, bytes]] | str]:
    if jobs <= 1:
        return [process(c, sizes) for c in candidates]
    with ProcessPoolExecutor(jobs, initializer=_allow_large_images) as pool:
        return list(pool.map(process, candidates, [sizes] * len(candidates), chunksize=8))


def _allow_large_images() -> None:
    # Trusted build input only (openclipart holds 20990x29700 drawings); advisor's own image
    # reader keeps Pillow's decompression-bomb limit.
    Image.MAX_IMAGE_PIXELS = None


# ---------------------------------------------------------------------------- candidate lists


def emoji_sequences(groups: Iterable[str], *, path: Path = EMOJI_TEST) -> list[tuple[int, ...]]:
    """Fully-qualified emoji of the given ``emoji-test.txt`` groups, without skin tones."""
    wanted, group, found = set(groups), None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and group in wanted:
            points, status = (part.strip() for part in line.split("#", 1)[0].split(";"))
            code = tuple(int(p, 16) for p in points.split())
            if status == "fully-qualified" and not any(p in SKIN_TONES for p in code):
                found.append(code)
    return found


def emoji_candidates(groups: Sequence[str]) -> list[Candidate]:
    """Noto Color Emoji renders of ``groups``, named ``emoji-<code points>``."""
    return [
        Candidate(
            "emoji-" + "-".join(f"{p:x}" for p in code),
            GlyphSource(
                EMOJI_FONT,
                0,
                EMOJI_FONT_SIZE,
                "".join(map(chr, code)),
                color=True,
                max_width=EMOJI_MAX_WIDTH,
            ),
        )
        for code in emoji_sequences(groups)
    ]


def file_candidates(root: Path, prefix: str, *, exclude: Sequence[str] = ()) -> list[Candidate]:
    """Every regular ``*.png`` under ``root`` (symlinks skipped), except folders in ``exclude``.

    Names are ``<prefix>-<path with / as __>``, other odd characters made ``_``.
    """
    candidates = []
    for path in sorted(root.rglob("*.png")):
        relative = path.relative_to(root)
        if path.is_symlink() or not path.is_file() or relative.parts[0] in exclude:
            continue
        stem = "__".join(relative.with_suffix("").parts)
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in stem)
        candidates.append(Candidate(f"{prefix}-{safe}", FileSource(path)))
    return candidates


def latin_candidates() -> list[Candidate]:
    """DejaVu's 21 styles x [0-9A-Za-z], black on white, named ``latin-<style>-<code>``."""
    return [
        Candidate(
            f"latin-{style.lower()}-{ord(char):04x}",
            GlyphSource(DEJAVU / f"DejaVu{style}.ttf", 0, GLYPH_FONT_SIZE, char),
        )
        for style in sorted(DEJAVU_CORE + DEJAVU_EXTRA)
        for char in LATIN_CHARS
    ]


def seeded_sample(pool: Sequence[int], count: int, seed: int) -> list[int]:
    """``count`` items of ``pool`` chosen by sha256 rank under ``seed``, returned sorted.

    A hash ranking rather than ``random``: the choice never changes with Python or NumPy.
    """
    rank = sorted(pool, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).digest())
    return sorted(rank[:count])


def cjk_candidates() -> list[Candidate]:
    """178 kana + 822 sampled CJK unified ideographs, styles cycling Sans/Serif x Regular/Bold.

    Kana are the letters (category Lo) of U+3040..U+30FF; ideographs come from U+4E00..U+9FFF.
    Both are limited to code points all four fonts map.
    """
    try:
        from fontTools.ttLib import TTCollection
    except ImportError as err:
        raise AdvisorError(
            "cjk_glyphs needs fontTools to read the fonts' character tables: pip install fonttools"
        ) from err
    mapped = None
    for _, file in CJK_STYLES:
        cmap = set(TTCollection(str(NOTO_CJK / file), lazy=True).fonts[0].getBestCmap())
        mapped = cmap if mapped is None else mapped & cmap
    kana = [
        p for p in range(0x3040, 0x3100) if p in mapped and unicodedata.category(chr(p)) == "Lo"
    ]
    ideographs = [p for p in range(0x4E00, 0xA000) if p in mapped]
    chosen = kana + seeded_sample(ideographs, CJK_IDEOGRAPHS, CJK_SEED)
    candidates = []
    for i, point in enumerate(chosen):
        style, file = CJK_STYLES[i % len(CJK_STYLES)]
        source = GlyphSource(NOTO_CJK / file, 0, GLYPH_FONT_SIZE, chr(point))
        candidates.append(Candidate(f"cjk-{point:04x}-{style}", source))
    return candidates


EMOJI_REQUIRES = ((EMOJI_FONT, "fonts-noto-color-emoji"), (EMOJI_TEST, "unicode-data"))
DEJAVU_REQUIRES = tuple(
    (DEJAVU / f"DejaVu{style}.ttf", package)
    for styles, package in (
        (DEJAVU_CORE, "fonts-dejavu-core"),
        (DEJAVU_EXTRA, "fonts-dejavu-extra"),
    )
    for style in styles
)
ICONS, FLAGS = OPENCLIPART / "computer/icons", OPENCLIPART / "signs_and_symbols/flags"
ANIMALS = OPENCLIPART / "animals"
CJK_REQUIRES = tuple((NOTO_CJK / file, "fonts-noto-cjk") for _, file in CJK_STYLES)

# Licences: emoji Apache-2.0 images + OFL-1.1 font; openclipart public-domain dedication;
# DejaVu Bitstream Vera licence; Noto CJK OFL-1.1; Tux Paint stamps GPL-2+ (never committed).
# fmt: off
DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain("emoji_people", "source", 528, EMOJI_REQUIRES,
           partial(emoji_candidates, ("Smileys & Emotion", "People & Body"))),
    Domain("emoji_things", "source", 787, EMOJI_REQUIRES,
           partial(emoji_candidates, ("Objects", "Travel & Places", "Activities", "Symbols"))),
    Domain("clipart_icons", "source", 1491, ((ICONS, "openclipart-png"),),
           lambda: file_candidates(ICONS, "clipart")),
    Domain("clipart_flags", "source", 491, ((FLAGS, "openclipart-png"),),
           lambda: file_candidates(FLAGS, "clipart")),
    Domain("latin_glyphs", "source", 1302, DEJAVU_REQUIRES, latin_candidates),
    Domain("tuxpaint_photo", "source", 547, ((TUXPAINT, "tuxpaint-stamps-default"),),
           lambda: file_candidates(TUXPAINT, "tuxpaint", exclude=("symbols",)),
           redistributable=False),
    Domain("emoji_nature_food", "target", 285, EMOJI_REQUIRES,
           partial(emoji_candidates, ("Animals & Nature", "Food & Drink"))),
    Domain("cjk_glyphs", "target", 1000, CJK_REQUIRES, cjk_candidates),
    # Held out: measured by the evidence benchmark after rank's default was chosen.
    Domain("clipart_animals", "target", 281, ((ANIMALS, "openclipart-png"),),
           lambda: file_candidates(ANIMALS, "clipart")),
)}
# fmt: on

# ------------------------------------------------------------------------------------- build


def check_requirements(domains: Sequence[Domain]) -> None:
    """Raise one AdvisorError naming every missing package (and the apt-get line) up front."""
    missing: dict[str, set[str]] = {}
    for domain in domains:
        for path, package in domain.requires:
            if not path.exists():
                missing.setdefault(package, set()).add(domain.name)
            # Without raqm layout, ZWJ sequences silently split into several glyphs.
            elif path == EMOJI_FONT and not features.check("raqm"):
                missing.setdefault("libfribidi0", set()).add(domain.name)
    if missing:
        packages = " ".join(sorted(missing))
        needing = ", ".join(sorted(set().union(*missing.values())))
        raise AdvisorError(
            f"missing Debian package(s) {packages} (needed by {needing}): run "
            f"`apt-get update && apt-get install -y --no-install-recommends {packages}`"
        )


def build_domain(domain: Domain, out: Path, sizes: Sequence[int], *, jobs: int = 1) -> BuildCounts:
    """Build ``domain`` into ``out/<size>/<domain.name>/`` for each size, replacing old output.

    Each size's folder is written beside the destination and swapped in when complete, so an
    interrupted build never leaves a partial domain behind under the final name.
    """
    sizes = tuple(sorted(set(sizes)))
    candidates = domain.candidates()
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise AdvisorError(f"{domain.name}: two candidates share a file name; fix the naming rule")
    results = _process_all(candidates, sizes, jobs)
    kept = [(c, r) for c, r in zip(candidates, results, strict=True) if not isinstance(r, str)]
    first = dedupe([r[0] for _, r in kept])
    unique = [(c, r[1]) for (c, r), is_first in zip(kept, first, strict=True) if is_first]
    for size in sizes:
        final = out / str(size) / domain.name
        staging = final.with_name(f".{domain.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for candidate, pngs in unique:
            (staging / f"{candidate.name}.png").write_bytes(pngs[size])
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    return BuildCounts(
        candidates=len(candidates),
        rejected=results.count("rejected"),
        blank=results.count("blank"),
        duplicates=len(kept) - len(unique),
        written=len(unique),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, check packages, build each domain, print a count table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument("--size", type=int, nargs="+", default=list(DEFAULT_SIZES), metavar="PX")
    parser.add_argument(
        "--domains",
        nargs="+",
        choices=list(DOMAINS),
        default=list(DOMAINS),
        metavar="NAME",
        help=f"default: all of {', '.join(DOMAINS)}",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = parser.parse_args(argv)
    if any(size < 1 for size in args.size):
        parser.error("--size must be positive")
    domains = [DOMAINS[name] for name in dict.fromkeys(args.domains)]
    _allow_large_images()
    try:
        check_requirements(domains)
        print(f"{'domain':<18} {'role':<7} {'cands':>6} {'rej':>4} {'blank':>5} {'dups':>5} "
              f"{'images':>6} {'DATA.md':>7}")  # fmt: skip
        for domain in domains:
            c = build_domain(domain, args.out, args.size, jobs=args.jobs)
            print(f"{domain.name:<18} {domain.role:<7} {c.candidates:>6} {c.rejected:>4} "
                  f"{c.blank:>5} {c.duplicates:>5} {c.written:>6} {domain.expected:>7}",
                  flush=True)  # fmt: skip
    except AdvisorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(map(str, sorted(set(args.size))))} px domains under {args.out}")
    for domain in domains:
        if not domain.redistributable:
            print(f"note: {domain.name} is GPL-2+: use it locally, never commit it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
