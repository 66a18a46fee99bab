"""Decoding an ``ImageSet`` into uint8 NCHW RGB batches, in worker processes or in-process."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from advisor.errors import AdvisorError
from advisor.images.decode import DEFAULT_MAX_PIXELS, DecodeError, decode_image, resize_hwc
from advisor.images.sets import ImageSet, Skipped, _os_reason, open_image_set, printable
from advisor.images.zips import ZipMemberError
from advisor.progress import Progress, progress_task

# With workers=None, sets smaller than this decode in-process: starting worker processes costs
# more than decoding a few hundred images.
_IN_PROCESS_BELOW = 256


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
        return f"skipped {len(self.skipped)} of {total} files: {format_skips(self.skipped, first)}"


def format_skips(skipped: Sequence[Skipped], first: int = 5) -> str:
    """The first ``first`` skips on one line: "a.png (truncated), b.jpg (zero bytes), and 3 more".

    Paths and reasons are printable (see ``Skipped``), so odd file names cannot break the line.
    """
    shown = ", ".join(f"{printable(s.path)} ({printable(s.reason)})" for s in skipped[:first])
    more = len(skipped) - first
    return shown + (f", and {more} more" if more > 0 else "")


def iter_batches(
    image_set: ImageSet,
    *,
    size: int | None,
    batch_size: int = 64,
    workers: int | None = None,
    strict: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    report: LoadReport | None = None,
    on_progress: Progress | None = None,
) -> Iterator[Batch]:
    """Decode ``image_set`` in set order into batches of ``batch_size`` uint8 NCHW RGB images.

    Each image is decoded (``decode_image``) and, when ``size`` is given, resized to ``size`` x
    ``size`` (``resize_hwc``) in worker processes: ``workers`` of them (None: up to 4, one per
    CPU, or in-process for sets under 256 files; 0: in-process). With ``size=None`` every image
    must have the first image's size. All batches are full but the last; batch size and worker
    count never change a pixel. Skips go to ``report`` (listing skips first); with ``strict`` the
    first skip raises ``AdvisorError``. If no image could be loaded, raises ``AdvisorError``
    ("no usable image in <source>: ...") after the last file. ``on_progress`` receives the
    decoding as the task ``decode NAME`` (files, skipped ones included).
    """
    if batch_size < 1 or (size is not None and size < 1) or (workers is not None and workers < 0):
        raise ValueError(f"bad arguments: batch_size={batch_size} size={size} workers={workers}")
    report = LoadReport() if report is None else report
    loaded_before = report.loaded
    for skip in image_set.skipped:
        _record_skip(report, skip, strict)
    if workers is None:
        workers = 0 if len(image_set) < _IN_PROCESS_BELOW else _default_workers()
    # Never more processes than images, nor than 4 per usable core: a typo like 100000 must not
    # try to start 100000 processes.
    workers = min(workers, len(image_set), 4 * _usable_cpus())
    images: list[np.ndarray] = []
    indices: list[int] = []
    shape: tuple[int, ...] | None = None
    with progress_task(
        on_progress, f"decode {Path(image_set.source).name}", total=len(image_set)
    ) as advance:
        for index, image, reason in _decoded(image_set, size, batch_size, workers, max_pixels):
            advance(1)
            if image is None:
                _record_skip(report, Skipped(image_set.names[index], reason), strict)
                continue
            shape = image.shape if shape is None else shape
            if image.shape != shape:
                raise AdvisorError(
                    f"{printable(image_set.names[index])} is {image.shape[2]}x{image.shape[1]} "
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
    on_progress: Progress | None = None,
) -> tuple[np.ndarray, LoadReport]:
    """All images of a source (or ``ImageSet``) as one uint8 [N, 3, H, W] RGB array, and the
    report of what was skipped; see ``iter_batches``."""
    image_set = (
        source_or_set if isinstance(source_or_set, ImageSet) else open_image_set(source_or_set)
    )
    report = LoadReport()
    batches = iter_batches(
        image_set,
        size=size,
        strict=strict,
        workers=workers,
        max_pixels=max_pixels,
        report=report,
        on_progress=on_progress,
    )
    return np.concatenate([batch.images.numpy() for batch in batches]), report


def _record_skip(report: LoadReport, skip: Skipped, strict: bool) -> None:
    report.skipped.append(skip)
    if strict:
        raise AdvisorError(
            f"{skip.path}: {skip.reason} (strict mode: fix or remove the file, "
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
        except ZipMemberError as err:
            return i, None, err.reason
        except OSError as err:
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


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _default_workers() -> int:
    return max(1, min(_usable_cpus(), 4))
