"""Listing an image set: a folder, a ``.zip`` or a list of files -> ``ImageSet``.

The listing rules are in the package docstring (``advisor.images``); zips are read by
``advisor.images.zips``. Also home of the two message helpers the package shares (``_os_reason``,
``printable``).
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import os
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from advisor.errors import AdvisorError
from advisor.images import zips

#: Lower-case file suffixes (with the dot) listed from folders and zips.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
#: Files (or zip members) larger than this are skipped at listing, before being read into memory,
#: and never read past at decoding. Real dataset images are at most tens of MB; the largest image
#: decoding allows (``DEFAULT_MAX_PIXELS``, 89.5 Mpx) is 716 MB even as uncompressed 16-bit RGBA.
MAX_FILE_BYTES: int = 1 << 30
# Hashing reads files and members in chunks of this size.
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Skipped:
    """A file that gave no image: its display path and a short reason ("truncated", ...).

    Both are stored in their ``printable`` form (control characters and undecodable bytes
    escaped), so every report, error and saved file shows them on one line.
    """

    path: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", printable(str(self.path)))
        object.__setattr__(self, "reason", printable(str(self.reason)))


class ImageSet:
    """An ordered, immutable list of candidate image files from one source.

    ``source`` is what the user gave (for messages), ``names`` the display paths of the usable
    candidates in their deterministic order (relative POSIX paths for folders, member names for
    zips, paths as given for lists) and ``skipped`` the problems found while listing. The object
    is picklable and safe to use from forked or spawned worker processes: a zip is reopened
    lazily in each process. Reading an entry never reads more than ``MAX_FILE_BYTES`` (files) or
    the member's declared size (zips), and never blocks on a file replaced by a FIFO.
    """

    def __init__(
        self,
        *,
        source: str,
        names: Sequence[str],
        skipped: Sequence[Skipped],
        paths: Sequence[str] = (),
        zip_path: str | None = None,
        zip_members: Sequence[zips.ZipMember] = (),
    ) -> None:
        self.source = source
        self.names: tuple[str, ...] = tuple(names)
        self.skipped: tuple[Skipped, ...] = tuple(skipped)
        self._paths = tuple(paths)
        self._zip_path = zip_path
        self._zip_members = tuple(zip_members)
        self._zip_file: BinaryIO | None = None
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

    def _archive(self) -> BinaryIO:
        assert self._zip_path is not None
        # A handle inherited through fork shares its file offset with the parent: reopen.
        if self._zip_file is None or self._zip_pid != os.getpid():
            self._zip_file = open(self._zip_path, "rb")
            self._zip_pid = os.getpid()
        return self._zip_file

    def _chunks(self, i: int) -> Iterator[bytes]:
        """Entry ``i`` in pieces of at most 1 MiB."""
        if self._zip_path is None:
            return _file_chunks(self._paths[i], _HASH_CHUNK)
        return _image_member(zips.iter_member(self._archive(), self._zip_members[i]))

    def read_bytes(self, i: int) -> bytes:
        """Raw bytes of entry ``i``; raises ``OSError`` or ``zips.ZipMemberError`` on failure."""
        if self._zip_path is None:
            return b"".join(_file_chunks(self._paths[i], None))
        return b"".join(_image_member(zips.iter_member(self._archive(), self._zip_members[i])))

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
            for chunk in self._chunks(i):
                entry.update(chunk)
        except (OSError, zips.ZipMemberError):
            return hashlib.sha256(b"unreadable").digest()
        return entry.digest()


def open_image_set(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> ImageSet:
    """List a folder (recursive), a ``.zip`` or a list of files; see the package docstring.

    Reads no image data. Raises ``AdvisorError`` (one line) when the source does not exist or
    cannot be reached, is neither a folder nor a zip, is a zip that breaks the rules of
    ``advisor.images.zips``, or is a list that is empty or names a path that does not exist.
    """
    if not isinstance(source, (str, os.PathLike)):
        return _list_files([os.fspath(item) for item in source])
    path = os.fspath(source)
    shown = printable(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise AdvisorError(
            f"{shown} does not exist: give a folder of images, a .zip of images or a list of files"
        ) from None
    except (OSError, ValueError) as err:
        raise AdvisorError(f"cannot reach {shown} ({_os_reason(err)}): check the path") from None
    if stat.S_ISDIR(st.st_mode):
        return _list_folder(path, shown)
    if stat.S_ISREG(st.st_mode) and zips.is_zip(path):
        return _list_zip(path, shown)
    raise AdvisorError(f"{shown} is neither a folder nor a .zip archive: give the image folder")


def _list_folder(root: str, shown: str) -> ImageSet:
    """Walk ``root``, each real folder (by device and inode) once, whatever links lead to it.

    Folders wait in a heap ordered by (symlinks on the path, display path): the real tree is
    walked before any alias of it, an alias reached first by several paths takes the first in
    that order, and the result never depends on the file system's listing order. Work is linear
    in the real folders and their entries, however many paths symlinks make.
    """
    found: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    visited: set[tuple[int, int]] = set()
    pending: list[tuple[int, str, str]] = [(0, "", os.path.abspath(root))]
    while pending:
        links, prefix, folder = heapq.heappop(pending)
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
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
                continue
            try:
                is_folder, is_link = entry.is_dir(), entry.is_symlink()
            except OSError as err:
                # A symlink loop cannot be a folder; anything else might be one we cannot reach.
                if err.errno != errno.ELOOP:
                    skipped.append(Skipped(name, f"unreadable: {_os_reason(err)}"))
                continue
            if is_folder:
                heapq.heappush(pending, (links + is_link, name + "/", entry.path))
    found.sort()
    skipped.sort(key=lambda s: s.path)
    return ImageSet(
        source=shown,
        names=[name for name, _ in found],
        skipped=skipped,
        paths=[path for _, path in found],
    )


def _list_files(items: list[str]) -> ImageSet:
    if not items:
        raise AdvisorError("the list of images is empty: give at least one image file")
    names: list[str] = []
    paths: list[str] = []
    skipped: list[Skipped] = []
    for item in items:
        try:
            os.lstat(item)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise AdvisorError(
                f"{printable(item)} (in the list of images) does not exist: "
                "fix the path or leave it out"
            ) from None
        except OSError:
            pass  # it may exist but cannot be reached: reported below as a skip
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


#: Leading bytes of every format advisor reads (PNG, JPEG, GIF, BMP, TIFF, WebP).
_IMAGE_SIGNATURES: tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)


def looks_like_image(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts like a format advisor decodes."""
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    return head.startswith(_IMAGE_SIGNATURES)


def _image_member(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A zip member's chunks, refused after its first chunk unless it starts like an image.

    Inflating costs time in proportion to the declared size (up to deflate's 1032:1), so a
    member that cannot be an image must not be inflated past its first megabyte: an archive of
    zero-filled members named ``.png`` would otherwise cost seconds per megabyte of zip.
    """
    head = b""
    for chunk in chunks:
        if head is not None:
            head += chunk
            if len(head) < 12 and chunk:
                continue
            if not looks_like_image(head):
                raise zips.ZipMemberError("not an image")
            chunk, head = head, None
        yield chunk
    if head is not None and head and not looks_like_image(head):
        raise zips.ZipMemberError("not an image")
    if head:
        yield head


def _file_chunks(path: str, chunk: int | None) -> Iterator[bytes]:
    """The bytes of a listed file, ``chunk`` at a time (None: all at once), re-checked as read.

    The file may have changed since listing: it is opened without blocking (a FIFO put in its
    place cannot hang the read) and refused unless it is still a regular file of at most
    ``MAX_FILE_BYTES``; reading stops one byte past the size it had when opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file any more")
        if st.st_size > MAX_FILE_BYTES:
            raise OSError(errno.EFBIG, f"too large ({st.st_size} bytes > {MAX_FILE_BYTES})")
        left = st.st_size + 1
        while left > 0 and (data := f.read(min(chunk or left, left))):
            left -= len(data)
            if left == 0:
                raise OSError(errno.EFBIG, "grew while being read")
            yield data


def _list_zip(path: str, shown: str) -> ImageSet:
    try:
        listing = zips.list_zip(path, wanted=_wanted_member, max_member_bytes=MAX_FILE_BYTES)
    except zips.ZipArchiveError as err:
        raise AdvisorError(f"cannot read the zip {shown}: {err.detail}; {err.hint}") from None
    except OSError as err:
        raise AdvisorError(
            f"cannot read the zip {shown} ({_os_reason(err)}): re-create it or give a folder"
        ) from None
    members = sorted(listing.members, key=lambda m: m.name)
    skipped = sorted((Skipped(name, reason) for name, reason in listing.problems), key=_by_path)
    return ImageSet(
        source=shown,
        names=[m.name for m in members],
        skipped=skipped,
        zip_path=os.path.realpath(path),
        zip_members=members,
    )


def _wanted_member(name: str) -> bool:
    """Members listed from a zip: image suffixes, outside hidden folders and ``__MACOSX/``."""
    parts = PurePosixPath(name).parts
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return PurePosixPath(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS


def _by_path(skip: Skipped) -> str:
    return skip.path


def _os_reason(err: BaseException) -> str:
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return reason[0].lower() + reason[1:]


def printable(text: str) -> str:
    """``text`` safe for a one-line message: unchanged when printable, else Python's ``ascii``
    escapes (control characters, undecodable bytes and non-ASCII all as backslash escapes)."""
    return text if text.isprintable() else ascii(text)[1:-1]
