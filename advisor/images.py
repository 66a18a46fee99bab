"""Image sets: folders, zips and file lists -> uint8 NCHW RGB batches.

Listing (``open_image_set``), read-only, deterministic:

- a folder is walked recursively and its files sorted by relative POSIX path; symlinked files and
  folders are followed (a folder link back to one of its own ancestors is not descended);
- a ``.zip`` lists its members, sorted by member name; ``__MACOSX/`` is ignored;
- a list of files keeps the order given; every item is a candidate whatever its suffix, and an
  item that does not exist is an error (an explicit list with a typo should stop before any work).

In folders and zips, names starting with ``.`` (hidden files and folders) and files whose suffix is
not in ``IMAGE_EXTENSIONS`` are ignored silently. Candidates that cannot be images (broken
symlinks, symlink loops, folders named like images, non-regular files, zero bytes, unreadable,
larger than ``MAX_FILE_BYTES``) are *skipped* and reported, never silently dropped.

Decoding (``decode_image``) follows one rule, named ``DECODE_POLICY`` for cache keys: the first
frame; EXIF orientation applied; 16-bit and 32-bit integer gray (PIL modes ``I;16*``, ``I``)
clipped to 0..65535 and shifted right by 8 (16-bit RGB(A) PNGs already arrive as 8-bit, high byte);
float gray (``F``) rounded and clipped to 0..255; CMYK, YCbCr and bilevel converted by PIL;
anything with alpha or a transparency key (RGBA, LA, PA, P/L/RGB + tRNS, GIF transparency)
composited onto opaque white, ``out = (a*c + (255 - a)*255 + 127) // 255``; gray replicated to
three channels. ICC profiles are ignored (pixel values are used as stored).

Nothing here ever writes to the user's files: sources are only opened for reading.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch
from PIL import ExifTags, Image, UnidentifiedImageError
from tqdm import tqdm

from advisor.errors import AdvisorError

#: Name recorded in every feature protocol for the resize below.
RESIZE_POLICY = "pil-bicubic-antialias"
#: Name of the decoding rule in the module docstring; part of cache keys built on decoded pixels.
DECODE_POLICY = "frame0-exif-16to8shift-alpha-on-white-v1"

#: Lower-case file suffixes (with the dot) listed from folders and zips.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
#: Decompression-bomb limit in pixels (width * height), PIL's default warning threshold. PIL's
#: own check still runs too, so a larger ``max_pixels`` cannot lift PIL's global limit.
DEFAULT_MAX_PIXELS: int = 89_478_485
#: Files (or zip members) larger than this are skipped at listing, before being read into memory.
MAX_FILE_BYTES: int = 1 << 30

# Formats Image.open may try: the ones named above (PIL opens multi-picture JPEGs as JPEG).
# Restricting them keeps PIL from running plugins such as EPS (Ghostscript) on renamed files.
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
# With workers=None, sets smaller than this decode in-process: starting worker processes costs
# more than decoding a few hundred images.
_IN_PROCESS_BELOW = 256


@dataclass(frozen=True)
class Skipped:
    """A file that gave no image: its display path and a short reason ("truncated", ...)."""

    path: str
    reason: str


class DecodeError(Exception):
    """Raised by ``decode_image`` for bytes that give no image; ``reason`` is short."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageSet:
    """An ordered, immutable list of candidate image files from one source.

    ``source`` is what the user gave (for messages), ``names`` the display paths of the usable
    candidates in their deterministic order (relative POSIX paths for folders, member names for
    zips, paths as given for lists) and ``skipped`` the problems found while listing. The object
    is picklable and safe to use from forked or spawned worker processes: a zip is reopened
    lazily in each process.
    """

    def __init__(
        self,
        *,
        source: str,
        names: Sequence[str],
        skipped: Sequence[Skipped],
        paths: Sequence[str] = (),
        zip_path: str | None = None,
        zip_members: Sequence[int] = (),
    ) -> None:
        self.source = source
        self.names: tuple[str, ...] = tuple(names)
        self.skipped: tuple[Skipped, ...] = tuple(skipped)
        self._paths = tuple(paths)
        self._zip_path = zip_path
        self._zip_members = tuple(zip_members)
        self._zip_file: zipfile.ZipFile | None = None
        self._zip_pid = -1
        self._hash: str | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ImageSet({self.source!r}: {len(self)} files, {len(self.skipped)} skipped)"

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_zip_file"], state["_zip_pid"] = None, -1
        return state

    def _open(self, i: int) -> BinaryIO:
        if self._zip_path is None:
            return open(self._paths[i], "rb")
        # A zip handle inherited through fork shares its file offset with the parent: reopen.
        if self._zip_file is None or self._zip_pid != os.getpid():
            self._zip_file = zipfile.ZipFile(self._zip_path)
            self._zip_pid = os.getpid()
        return self._zip_file.open(self._zip_file.infolist()[self._zip_members[i]])

    def read_bytes(self, i: int) -> bytes:
        """Raw bytes of entry ``i``; raises ``OSError`` (or ``zipfile.BadZipFile``) on failure."""
        with self._open(i) as f:
            return f.read()

    def content_hash(self) -> str:
        """sha256 hex over the bytes of all entries, in order, independent of names.

        It is the sha256 of a version marker, the entry count and each entry's own sha256, so
        reordering entries or changing any byte changes it. Files are read in 1 MiB chunks and
        never decoded. An entry that cannot be read hashes as a fixed marker (decoding will skip
        it too). Computed once per object.
        """
        if self._hash is None:
            digest = hashlib.sha256(b"advisor-image-set-v1\0")
            digest.update(struct.pack("<Q", len(self)))
            for i in range(len(self)):
                digest.update(self._entry_digest(i))
            self._hash = digest.hexdigest()
        return self._hash

    def _entry_digest(self, i: int) -> bytes:
        entry = hashlib.sha256()
        try:
            with self._open(i) as f:
                while chunk := f.read(1 << 20):
                    entry.update(chunk)
        except (OSError, zipfile.BadZipFile):
            return hashlib.sha256(b"unreadable").digest()
        return entry.digest()


def open_image_set(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> ImageSet:
    """List a folder (recursive), a ``.zip`` or a list of files; see the module docstring.

    Reads no image data. Raises ``AdvisorError`` (one line) when the source does not exist, is
    neither a folder nor a zip, is an unreadable zip, or is a list that is empty or names a path
    that does not exist.
    """
    if not isinstance(source, (str, os.PathLike)):
        return _list_files([os.fspath(item) for item in source])
    path = Path(source)
    shown = _printable(os.fspath(source))
    if path.is_dir():
        return _list_folder(path, shown)
    if path.is_file() and zipfile.is_zipfile(path):
        return _list_zip(path, shown)
    if not path.exists():
        raise AdvisorError(
            f"{shown} does not exist: give a folder of images, a .zip of images or a list of files"
        )
    raise AdvisorError(f"{shown} is neither a folder nor a .zip archive: give the image folder")


def _list_folder(root: Path, shown: str) -> ImageSet:
    found: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    root_stat = os.stat(root)
    stack = [(os.path.abspath(root), "", ((root_stat.st_dev, root_stat.st_ino),))]
    while stack:
        folder, prefix, ancestors = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as err:
            skipped.append(Skipped(prefix or "./", f"unreadable folder: {_os_reason(err)}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            if PurePosixPath(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                problem = _file_problem(entry.path)
                if problem is None:
                    found.append((name, entry.path))
                else:
                    skipped.append(Skipped(name, problem))
            elif entry.is_dir():
                key = _dir_key(entry.path)
                if key is not None and key not in ancestors:
                    stack.append((entry.path, name + "/", (*ancestors, key)))
    found.sort()
    skipped.sort(key=lambda s: s.path)
    return ImageSet(
        source=shown,
        names=[name for name, _ in found],
        skipped=skipped,
        paths=[path for _, path in found],
    )


def _dir_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _list_files(items: list[str]) -> ImageSet:
    if not items:
        raise AdvisorError("the list of images is empty: give at least one image file")
    names: list[str] = []
    paths: list[str] = []
    skipped: list[Skipped] = []
    for item in items:
        if not os.path.lexists(item):
            raise AdvisorError(
                f"{_printable(item)} (in the list of images) does not exist: "
                "fix the path or leave it out"
            )
        problem = _file_problem(item)
        if problem is None:
            names.append(item)
            paths.append(os.path.abspath(item))
        else:
            skipped.append(Skipped(item, problem))
    return ImageSet(
        source=f"a list of {len(items)} files", names=names, skipped=skipped, paths=paths
    )


def _file_problem(path: str) -> str | None:
    """Why the file at ``path`` (symlinks followed) cannot hold an image, or None."""
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop"
        if os.path.islink(path) and err.errno in (errno.ENOENT, errno.ENOTDIR):
            return "broken symlink"
        return f"unreadable: {_os_reason(err)}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "zero bytes"
    if st.st_size > MAX_FILE_BYTES:
        return f"too large ({st.st_size} bytes > {MAX_FILE_BYTES})"
    if not os.access(path, os.R_OK, effective_ids=os.access in os.supports_effective_ids):
        return "unreadable: permission denied"
    return None


def _list_zip(path: Path, shown: str) -> ImageSet:
    found: list[tuple[str, int]] = []
    skipped: list[Skipped] = []
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (OSError, zipfile.BadZipFile) as err:
        raise AdvisorError(
            f"cannot read the zip {shown} ({_os_reason(err)}): re-create it or give a folder"
        ) from err
    for index, info in enumerate(infos):
        parts = PurePosixPath(info.filename).parts
        if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if info.is_dir():
            skipped.append(Skipped(info.filename, "is a directory"))
        elif info.flag_bits & 0x1:
            skipped.append(Skipped(info.filename, "unreadable: encrypted"))
        elif info.file_size == 0:
            skipped.append(Skipped(info.filename, "zero bytes"))
        elif info.file_size > MAX_FILE_BYTES:
            skipped.append(
                Skipped(info.filename, f"too large ({info.file_size} bytes > {MAX_FILE_BYTES})")
            )
        else:
            found.append((info.filename, index))
    found.sort()
    skipped.sort(key=lambda s: s.path)
    return ImageSet(
        source=shown,
        names=[name for name, _ in found],
        skipped=skipped,
        zip_path=os.fspath(path.resolve()),
        zip_members=[index for _, index in found],
    )


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes to uint8 HWC RGB (C-contiguous, writable) by the module's one rule.

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


@dataclass(frozen=True)
class Batch:
    """``images``: uint8 [n, 3, size, size] RGB, contiguous; ``indices``: int64 [n] positions
    of these images in their ``ImageSet``."""

    images: torch.Tensor
    indices: torch.Tensor


@dataclass
class LoadReport:
    """What ``iter_batches`` skipped (listing skips first, then decode skips, in set order) and
    how many images it loaded; filled while iterating."""

    skipped: list[Skipped] = field(default_factory=list)
    loaded: int = 0

    def summary(self, first: int = 5) -> str:
        """One line: "skipped 3 of 120 files: a.png (truncated), b.jpg (zero bytes), ..."."""
        total = self.loaded + len(self.skipped)
        if not self.skipped:
            return f"loaded {self.loaded} files, none skipped"
        shown = ", ".join(f"{_printable(s.path)} ({s.reason})" for s in self.skipped[:first])
        more = len(self.skipped) - first
        return f"skipped {len(self.skipped)} of {total} files: {shown}" + (
            f", and {more} more" if more > 0 else ""
        )


def iter_batches(
    image_set: ImageSet,
    *,
    size: int | None,
    batch_size: int = 64,
    workers: int | None = None,
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    report: LoadReport | None = None,
    progress: bool = False,
) -> Iterator[Batch]:
    """Decode ``image_set`` in set order into batches of ``batch_size`` uint8 NCHW RGB images.

    Each image is decoded (``decode_image``) and, when ``size`` is given, resized to ``size`` x
    ``size`` (``resize_hwc``) in worker processes: ``workers`` of them (None: up to 4, one per
    CPU, or in-process for sets under 256 files; 0: in-process). With ``size=None`` every image
    must have the first image's size. All batches are full but the last; batch size and worker
    count never change a pixel. Skips go to ``report`` (listing skips first); with ``strict`` the
    first skip raises ``AdvisorError``. If no image could be loaded, raises ``AdvisorError``
    ("no usable image in <source>: ...") after the last file.
    """
    if batch_size < 1 or (size is not None and size < 1) or (workers is not None and workers < 0):
        raise ValueError(f"bad arguments: batch_size={batch_size} size={size} workers={workers}")
    report = LoadReport() if report is None else report
    loaded_before = report.loaded
    for skip in image_set.skipped:
        _record_skip(report, skip, strict)
    if workers is None:
        workers = 0 if len(image_set) < _IN_PROCESS_BELOW else _default_workers()
    images: list[np.ndarray] = []
    indices: list[int] = []
    shape: tuple[int, ...] | None = None
    with tqdm(
        total=len(image_set), unit="img", desc="images", disable=None if progress else True
    ) as bar:
        for index, image, reason in _decoded(image_set, size, batch_size, workers, max_pixels):
            bar.update(1)
            if image is None:
                _record_skip(report, Skipped(image_set.names[index], reason), strict)
                continue
            shape = image.shape if shape is None else shape
            if image.shape != shape:
                raise AdvisorError(
                    f"{_printable(image_set.names[index])} is {image.shape[2]}x{image.shape[1]} "
                    f"but earlier images are {shape[2]}x{shape[1]}: give a size to resize to"
                )
            images.append(image)
            indices.append(index)
            report.loaded += 1
            if len(images) == batch_size:
                yield _batch(images, indices)
                images, indices = [], []
    if images:
        yield _batch(images, indices)
    if report.loaded == loaded_before:
        what = report.summary() if report.skipped else "no image files found"
        raise AdvisorError(f"no usable image in {image_set.source}: {what}")


def load_images(
    source_or_set: ImageSet | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    size: int | None,
    strict: bool = False,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, LoadReport]:
    """All images of a source (or ``ImageSet``) as one uint8 [N, 3, H, W] RGB array, and the
    report of what was skipped; see ``iter_batches``."""
    image_set = (
        source_or_set if isinstance(source_or_set, ImageSet) else open_image_set(source_or_set)
    )
    report = LoadReport()
    batches = iter_batches(
        image_set, size=size, strict=strict, workers=workers, max_pixels=max_pixels, report=report
    )
    return np.concatenate([batch.images.numpy() for batch in batches]), report


def _record_skip(report: LoadReport, skip: Skipped, strict: bool) -> None:
    report.skipped.append(skip)
    if strict:
        raise AdvisorError(
            f"{_printable(skip.path)}: {skip.reason} (strict mode: fix or remove the file, "
            "or run without --strict to skip it)"
        )


def _batch(images: list[np.ndarray], indices: list[int]) -> Batch:
    return Batch(
        images=torch.from_numpy(np.stack(images)),
        indices=torch.tensor(indices, dtype=torch.int64),
    )


class _DecodeDataset(torch.utils.data.Dataset):
    """Item i -> (i, uint8 CHW image or None, skip reason)."""

    def __init__(self, image_set: ImageSet, size: int | None, max_pixels: int) -> None:
        self.image_set, self.size, self.max_pixels = image_set, size, max_pixels

    def __len__(self) -> int:
        return len(self.image_set)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        try:
            data = self.image_set.read_bytes(i)
        except (OSError, zipfile.BadZipFile) as err:
            return i, None, f"unreadable: {_os_reason(err)}"
        try:
            image = decode_image(data, max_pixels=self.max_pixels)
        except DecodeError as err:
            return i, None, err.reason
        if self.size is not None:
            image = resize_hwc(image, self.size)
        return i, np.ascontiguousarray(image.transpose(2, 0, 1)), ""


def _decoded(
    image_set: ImageSet, size: int | None, chunk: int, workers: int, max_pixels: int
) -> Iterator[tuple[int, np.ndarray | None, str]]:
    dataset = _DecodeDataset(image_set, size, max_pixels)
    if workers == 0:
        for i in range(len(dataset)):
            yield dataset[i]
        return
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=chunk,
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_list,
        worker_init_fn=_init_worker,
    )
    for items in loader:
        yield from items


def _as_list(items: list[tuple[int, np.ndarray | None, str]]) -> list:
    return items


def _init_worker(_: int) -> None:
    # Decoding is one image per process; torch's intra-op threads would only oversubscribe.
    torch.set_num_threads(1)


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def _os_reason(err: BaseException) -> str:
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return reason[0].lower() + reason[1:]


def _printable(text: str) -> str:
    """``text`` safe for a one-line message (control or undecodable characters escaped)."""
    return text if text.isprintable() else ascii(text)[1:-1]
