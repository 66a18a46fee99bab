"""Reading a ``.zip`` of images with bounded work: the directory, then each member on its own.

Python's ``zipfile`` trusts the archive: it inflates bzip2 and LZMA members (and deflate, on a
plain ``read()``) in one call whatever the output size, lets members share compressed bytes (the
overlapping "zip bomb"), fails the whole archive on one name that is not valid UTF-8, and ignores
the disk numbers of split archives. So advisor reads zips itself, by these rules:

Archive rules (a breach is a ``ZipArchiveError``: the archive cannot be listed as a whole):

- the end record must be on disk 0 of a one-disk archive (no split/spanned archives);
- at most ``MAX_ZIP_MEMBERS`` entries; the central directory must lie inside the file;
- every member's local header and data lie before the central directory and no two members
  overlap (checked on lower bounds from the directory; the exact local extent is checked again
  when a member is read);
- the declared sizes of the members to be read add up to at most
  ``max(MAX_ZIP_RATIO * archive size, ZIP_RATIO_FLOOR_BYTES)`` and ``MAX_ZIP_INFLATED_BYTES``.

Member rules (a breach is a per-member problem: the caller reports it as a skip):

- at listing: directories, encrypted or patched members, compression methods other than stored,
  deflate, bzip2 and LZMA, names flagged UTF-8 that are not, declared sizes of zero, over the
  caller's ``max_member_bytes``, or over ``max(MAX_ZIP_RATIO * compressed size,
  ZIP_RATIO_FLOOR_BYTES)`` (the archive's ratio rule, member by member);
- at reading (``ZipMemberError``): a local header that is missing, names another file or places
  the data past the next member; output beyond the declared size (inflation stops there, never
  more than one 1 MiB chunk past it); fewer bytes than declared; a CRC mismatch; corrupt data.

Names decode as ``zipfile`` does (UTF-8 when flagged, else cp437), so listings match it.
"""

from __future__ import annotations

import bz2
import lzma
import os
import struct
import zipfile
import zlib
from array import array
from collections.abc import Callable, Iterator
from typing import BinaryIO, NamedTuple

import numpy as np

#: At most this many entries in one archive. The largest image sets used with StyleGAN (LSUN
#: categories up to ~5.5M images, ImageNet-1k's 1.28M) fit; each entry costs ~100 bytes here.
MAX_ZIP_MEMBERS: int = 10_000_000
#: A member may declare at most this multiple of its compressed size, and the members to be read
#: at most this multiple of the archive's size in total. 1032:1 is deflate's ceiling, so no stored
#: or deflated member or archive can exceed it; only bzip2/LZMA data that compresses better than
#: deflate ever could (zip bombs, not photos) is refused.
MAX_ZIP_RATIO: int = 1032
#: Up to this size a member, or the members of an archive together, may have any ratio (a few
#: blank masks compress past any ratio); that much is harmless to inflate.
ZIP_RATIO_FLOOR_BYTES: int = 64 << 20
#: The members to be read may declare at most this much in total: ~45x FFHQ at 1024 px (~89 GB of
#: PNGs, the largest single-zip StyleGAN dataset) and ~30x ImageNet-1k's training set.
MAX_ZIP_INFLATED_BYTES: int = 4 << 40

# Members are read and inflated in chunks of this size, so memory stays at the member's declared
# size plus one chunk whatever the data claims.
_CHUNK = 1 << 20
_SUPPORTED_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_FLAG_ENCRYPTED = 0x1
_FLAG_PATCHED = 0x20
_FLAG_UTF8 = 0x800

_END = struct.Struct("<4s4H2LH")  # end of central directory record, 22 bytes
_END64_LOCATOR = struct.Struct("<4sLQL")  # zip64 end record locator, 20 bytes
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record, 56 bytes
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header, 46 bytes
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header, 30 bytes
_SIG_END, _SIG_END64_LOCATOR, _SIG_END64 = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
_SIG_CENTRAL, _SIG_LOCAL = b"PK\x01\x02", b"PK\x03\x04"
_MAX_COMMENT = 0xFFFF
_SPLIT = "it is one part of a split (multi-disk) archive"
_JOIN = "join the parts into one zip (zip -s 0 PART.zip --out WHOLE.zip) or give a folder"


class ZipArchiveError(Exception):
    """The archive as a whole breaks a rule: ``detail`` says which ("members overlap ..."),
    ``hint`` what to do."""

    def __init__(self, detail: str, hint: str = "re-create it or give a folder") -> None:
        super().__init__(f"{detail}; {hint}")
        self.detail = detail
        self.hint = hint


class ZipMemberError(Exception):
    """One member cannot be read; ``reason`` is short, for a skip report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ZipMember(NamedTuple):
    """Where one member lives: ``offset`` of its local header, ``limit`` the offset its data may
    not pass (the next member's header or the central directory), sizes as declared."""

    name: str
    raw_name: bytes
    offset: int
    compressed: int
    size: int
    crc: int
    method: int
    limit: int


class ZipListing(NamedTuple):
    """``members``: wanted members without a problem, in directory order; ``problems``:
    (display name, reason) of wanted members that cannot be read."""

    members: list[ZipMember]
    problems: list[tuple[str, str]]


class _End(NamedTuple):
    start: int  # offset of the central directory (negative: the record is inconsistent)
    size: int  # its size in bytes
    entries: int  # declared entry count
    shift: int  # bytes prepended to the archive (self-extracting stubs), added to offsets
    split: bool  # a disk number other than 0: one part of a multi-disk archive


def is_zip(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` ends in a zip end record (what ``zipfile.is_zipfile`` checks)."""
    try:
        with open(path, "rb") as f:
            return _find_end(f, os.fstat(f.fileno()).st_size) is not None
    except OSError:
        return False


def list_zip(
    path: str | os.PathLike[str], *, wanted: Callable[[str], bool], max_member_bytes: int
) -> ZipListing:
    """The wanted members of the zip at ``path`` by the module's rules.

    ``wanted(name)`` picks members by their decoded name; the others are only checked for the
    archive rules. Raises ``ZipArchiveError`` for an archive rule and ``OSError`` when the file
    cannot be read.
    """
    with open(path, "rb", buffering=_CHUNK) as f:
        archive_bytes = os.fstat(f.fileno()).st_size
        end = _find_end(f, archive_bytes)
        if end is None:
            raise ZipArchiveError("no end-of-archive record")
        if end.split:
            raise ZipArchiveError(_SPLIT, _JOIN)
        if end.start < 0:
            raise ZipArchiveError("its central directory lies outside the file")
        if end.entries > MAX_ZIP_MEMBERS:
            raise ZipArchiveError(f"{end.entries} members, more than {MAX_ZIP_MEMBERS}")
        # Each entry's extent, on lower bounds (local header + name + data), for the overlap check.
        offsets, ends = array("q"), array("q")
        found: list[tuple[str, bytes, int, int, int, int, int]] = []
        problems: list[tuple[str, str]] = []
        f.seek(end.start)
        done = 0
        while done < end.size:
            if len(offsets) >= MAX_ZIP_MEMBERS:
                raise ZipArchiveError(f"more than {MAX_ZIP_MEMBERS} members")
            entry, used = _read_entry(f, end)
            done += used
            name, raw_name, offset, compressed, size, crc, method, flags, problem = entry
            extent = offset + _LOCAL.size + len(raw_name) + compressed
            if offset < 0:
                raise ZipArchiveError("a member lies before the start of the file")
            if extent > end.start:
                raise ZipArchiveError("a member's data runs into the central directory")
            offsets.append(offset)
            ends.append(extent)
            if not wanted(name):
                continue
            problem = problem or _member_problem(
                name, flags, method, compressed, size, max_member_bytes
            )
            if problem is None:
                found.append((name, raw_name, offset, compressed, size, crc, method))
            else:
                problems.append((name, problem))
    limits = _check_layout(offsets, ends, end.start, [item[2] for item in found])
    _check_total(sum(item[4] for item in found), archive_bytes)
    members = [ZipMember(*item, limit=limit) for item, limit in zip(found, limits, strict=True)]
    return ZipListing(members=members, problems=problems)


def iter_member(file: BinaryIO, member: ZipMember) -> Iterator[bytes]:
    """The member's bytes, inflated in chunks of at most 1 MiB; ``file`` is the open archive.

    Raises ``ZipMemberError`` (see the module rules) or ``OSError``. Never produces more than the
    declared size: the read stops as soon as the data would pass it.
    """
    file.seek(member.offset)
    header = file.read(_LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != _SIG_LOCAL:
        raise ZipMemberError("corrupt zip member (no local header at its offset)")
    name_length, extra_length = _LOCAL.unpack(header)[-2:]
    if file.read(name_length) != member.raw_name:
        raise ZipMemberError("corrupt zip member (its local header names another file)")
    start = member.offset + _LOCAL.size + name_length + extra_length
    if start + member.compressed > member.limit:
        raise ZipMemberError("corrupt zip member (its data runs into the next member)")
    file.seek(start)
    inflater = _Inflater(member.method, member.size)
    produced, crc, left = 0, 0, member.compressed
    while left > 0 or inflater.has_output:
        raw = b""
        if not inflater.has_output:
            raw = file.read(min(_CHUNK, left))
            if not raw:
                raise ZipMemberError("truncated")
            left -= len(raw)
        for chunk in inflater.feed(raw, last=left == 0):
            produced += len(chunk)
            if produced > member.size:
                raise ZipMemberError(
                    f"corrupt zip member (inflates past its declared {member.size} bytes)"
                )
            crc = zlib.crc32(chunk, crc)
            yield chunk
    if produced != member.size:
        raise ZipMemberError("truncated")
    if crc != member.crc:
        raise ZipMemberError("corrupt zip member (CRC mismatch)")


def read_member(file: BinaryIO, member: ZipMember) -> bytes:
    """All of the member's bytes (at most its declared size); see ``iter_member``."""
    return b"".join(iter_member(file, member))


class _Inflater:
    """One member's decompressor. ``feed`` takes the next raw chunk (``b""`` while
    ``has_output``) and yields pieces of at most ``_CHUNK`` bytes each."""

    def __init__(self, method: int, size: int) -> None:
        self.method = method
        self.has_output = False  # bzip2/LZMA: output is waiting inside the engine
        self._size = size
        self._header = b""  # LZMA: the zip LZMA header, until it is complete
        self._deflate = zlib.decompressobj(-15) if method == zipfile.ZIP_DEFLATED else None
        self._stream: bz2.BZ2Decompressor | lzma.LZMADecompressor | None = (
            bz2.BZ2Decompressor() if method == zipfile.ZIP_BZIP2 else None
        )

    def feed(self, raw: bytes, *, last: bool) -> Iterator[bytes]:
        try:
            if self.method == zipfile.ZIP_STORED:
                yield raw
            elif self._deflate is not None:
                yield from self._inflate(raw, last)
            else:
                yield from self._decompress(raw)
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as err:
            name = _SUPPORTED_METHODS[self.method]
            raise ZipMemberError(f"corrupt zip member ({name}: {err})") from err

    def _inflate(self, data: bytes, last: bool) -> Iterator[bytes]:
        engine = self._deflate
        assert engine is not None
        while data and not engine.eof:
            out = engine.decompress(data, _CHUNK)
            tail = engine.unconsumed_tail
            if not out and len(tail) >= len(data):
                raise zlib.error("no progress")
            yield out
            data = tail
        if last and not engine.eof:
            # Output cut at a chunk boundary as the input ran out: at most a 258-byte match.
            yield engine.flush()

    def _decompress(self, raw: bytes) -> Iterator[bytes]:
        if self._stream is None:  # LZMA: the raw decoder needs the header's properties
            self._header += raw
            if len(self._header) < 4:
                return
            end = 4 + int.from_bytes(self._header[2:4], "little")
            if len(self._header) < end:
                return
            self._stream = _lzma_decoder(self._header[4:end], self._size)
            raw, self._header = self._header[end:], b""
        engine = self._stream
        if engine.eof:
            self.has_output = False
            return
        out = engine.decompress(raw, _CHUNK)
        self.has_output = not (engine.eof or engine.needs_input)
        if not out and self.has_output:
            raise EOFError("no progress")
        yield out


def _lzma_decoder(props: bytes, size: int) -> lzma.LZMADecompressor:
    if len(props) != 5 or props[0] >= 9 * 5 * 5:
        raise lzma.LZMAError("bad LZMA properties")
    lc, rest = props[0] % 9, props[0] // 9
    lp, pb = rest % 5, rest // 5
    # The decoder allocates the whole dictionary up front; it never needs more than the output.
    dict_size = min(int.from_bytes(props[1:5], "little"), max(size, 4096))
    options = {"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[options])


def _member_problem(
    name: str, flags: int, method: int, compressed: int, size: int, max_member_bytes: int
) -> str | None:
    if name.endswith("/"):
        return "is a directory"
    if flags & _FLAG_ENCRYPTED:
        return "unreadable: encrypted"
    if flags & _FLAG_PATCHED:
        return "unsupported compression (patched data)"
    if method not in _SUPPORTED_METHODS:
        known = zipfile.compressor_names.get(method, "unknown")
        return f"unsupported compression (method {method}: {known})"
    if size == 0:
        return "zero bytes"
    if size > max_member_bytes:
        return f"too large ({size} bytes > {max_member_bytes})"
    if size > max(MAX_ZIP_RATIO * compressed, ZIP_RATIO_FLOOR_BYTES):
        return f"zip bomb ({size} bytes from {compressed}, over {MAX_ZIP_RATIO}:1)"
    return None


def _find_end(f: BinaryIO, file_size: int) -> _End | None:
    """The end record as ``zipfile`` finds it (last 22 bytes, else the last 64 KiB), or None."""
    if file_size < _END.size:
        return None
    f.seek(file_size - _END.size)
    tail = f.read(_END.size)
    if tail[:4] == _SIG_END and tail[-2:] == b"\0\0":
        position, record = file_size - _END.size, tail
    else:
        first = max(file_size - _MAX_COMMENT - _END.size, 0)
        f.seek(first)
        data = f.read()
        found = data.rfind(_SIG_END)
        if found < 0 or len(data) - found < _END.size:
            return None
        position, record = first + found, data[found : found + _END.size]
    _, disk, start_disk, _, entries, size, offset, _ = _END.unpack(record)
    split, located = False, position
    if position >= _END64_LOCATOR.size + _END64.size:
        f.seek(position - _END64_LOCATOR.size)
        signature, end64_disk, _, disks = _END64_LOCATOR.unpack(f.read(_END64_LOCATOR.size))
        if signature == _SIG_END64_LOCATOR:
            split = end64_disk != 0 or disks > 1
            f.seek(position - _END64_LOCATOR.size - _END64.size)
            fields = _END64.unpack(f.read(_END64.size))
            if fields[0] == _SIG_END64:
                disk, start_disk, _, entries, size, offset = fields[4:]
                located = position - _END64_LOCATOR.size - _END64.size
    start = located - size
    split = split or disk != 0 or start_disk != 0
    return _End(start=start, size=size, entries=entries, shift=start - offset, split=split)


def _read_entry(
    f: BinaryIO, end: _End
) -> tuple[tuple[str, bytes, int, int, int, int, int, int, str | None], int]:
    """One central directory entry: (name, raw name, offset, compressed, size, crc, method,
    flags, problem) and the bytes it used."""
    header = f.read(_CENTRAL.size)
    if len(header) != _CENTRAL.size:
        raise ZipArchiveError("truncated central directory")
    fields = _CENTRAL.unpack(header)
    signature, flags, method, crc, compressed, size = fields[0], *fields[5:7], *fields[9:12]
    name_length, extra_length, comment_length, disk, _, _, offset = fields[12:]
    if signature != _SIG_CENTRAL:
        raise ZipArchiveError("bad central directory entry")
    raw_name = f.read(name_length)
    extra = f.read(extra_length)
    if len(raw_name) != name_length or len(extra) != extra_length:
        raise ZipArchiveError("truncated central directory")
    f.seek(comment_length, os.SEEK_CUR)
    compressed, size, offset, disk = _apply_zip64(extra, compressed, size, offset, disk)
    if disk != 0:
        raise ZipArchiveError(_SPLIT, _JOIN)
    problem = None
    if flags & _FLAG_UTF8:
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            name = raw_name.decode("utf-8", "backslashreplace")
            problem = "name is not valid UTF-8 (though flagged so)"
    else:
        name = raw_name.decode("cp437")
    entry = (name, raw_name, offset + end.shift, compressed, size, crc, method, flags, problem)
    return entry, _CENTRAL.size + name_length + extra_length + comment_length


def _apply_zip64(
    extra: bytes, compressed: int, size: int, offset: int, disk: int
) -> tuple[int, int, int, int]:
    """Sizes, offset and disk with the zip64 extra field's values where the header defers."""
    position = 0
    while position + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if len(body) != length:
            raise ZipArchiveError(f"corrupt extra field {kind:04x}")
        position += 4 + length
        if kind != 0x0001:
            continue
        values = [size, compressed, offset]
        at = 0
        for i, value in enumerate(values):
            if value == 0xFFFF_FFFF:
                if at + 8 > length:
                    raise ZipArchiveError("corrupt zip64 extra field")
                values[i] = int.from_bytes(body[at : at + 8], "little")
                at += 8
        if disk == 0xFFFF:
            if at + 4 > length:
                raise ZipArchiveError("corrupt zip64 extra field")
            disk = int.from_bytes(body[at : at + 4], "little")
        size, compressed, offset = values
    return compressed, size, offset, disk


def _check_layout(offsets: array, ends: array, directory: int, read: list[int]) -> list[int]:
    """Raise unless all entries' extents ([offset, end) on lower bounds) are disjoint; return,
    for each offset in ``read``, the limit of its data: the next entry's offset, else the central
    directory's."""
    starts = np.array(offsets, dtype=np.int64)
    stops = np.array(ends, dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    starts, stops = starts[order], stops[order]
    if starts.size > 1 and np.any(starts[1:] < np.maximum.accumulate(stops)[:-1]):
        raise ZipArchiveError("members overlap (a zip bomb or a damaged archive)")
    bounds = np.append(starts, directory)
    following = np.searchsorted(starts, np.array(read, dtype=np.int64), side="right")
    return bounds[following].tolist()


def _check_total(declared: int, archive_bytes: int) -> None:
    allowed = min(max(MAX_ZIP_RATIO * archive_bytes, ZIP_RATIO_FLOOR_BYTES), MAX_ZIP_INFLATED_BYTES)
    if declared > allowed:
        raise ZipArchiveError(
            f"its images declare {declared} bytes from a {archive_bytes}-byte archive, more than "
            f"the {allowed} allowed (a zip bomb)"
        )
