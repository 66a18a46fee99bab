"""Listing an image set: a folder, a ``.zip`` or a list of files -> ``ImageSet``.

The listing rules are in the package docstring (``advisor.images``). Also home of the two message
helpers the package shares (``_os_reason``, ``_printable``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from advisor.errors import AdvisorError

#: Lower-case file suffixes (with the dot) listed from folders and zips.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
#: Files (or zip members) larger than this are skipped at listing, before being read into memory.
MAX_FILE_BYTES: int = 1 << 30


@dataclass(frozen=True)
class Skipped:
    """A file that gave no image: its display path and a short reason ("truncated", ...)."""

    path: str
    reason: str


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
    """List a folder (recursive), a ``.zip`` or a list of files; see the package docstring.

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


def _os_reason(err: BaseException) -> str:
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return reason[0].lower() + reason[1:]


def _printable(text: str) -> str:
    """``text`` safe for a one-line message (control or undecodable characters escaped)."""
    return text if text.isprintable() else ascii(text)[1:-1]
