"""Hostile image sources: zip bombs and malformed zips, symlink graphs, unsearchable folders and
odd file names. Each class gets one clear line (an error or a reported skip), bounded work, no
traceback. Bombs run in a child process under a memory cap and a timeout (``tests.bounded``).
"""

from __future__ import annotations

import bz2
import errno
import functools
import io
import json
import lzma
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from advisor.errors import AdvisorError
from advisor.images import LoadReport, Skipped, iter_batches, load_images, open_image_set, zips
from tests.bounded import dumps, run_bounded

MB = 1 << 20
UTF8_FLAG = 0x800


def png(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


# --- zips written by hand ------------------------------------------------------------------------


@dataclass
class Entry:
    """One member as the archive declares it; ``at`` reuses an earlier member's local header."""

    name: bytes
    payload: bytes  # the bytes after the local header (compressed data)
    method: int
    crc: int
    size: int
    flags: int = 0
    local_extra: bytes = b""
    disk: int = 0
    at: int | None = None
    central_compressed: int | None = None


def local_header(e: Entry) -> bytes:
    fields = (b"PK\x03\x04", 20, 0, e.flags, e.method, 0, 0x21, e.crc, len(e.payload), e.size)
    lengths = (len(e.name), len(e.local_extra))
    return struct.pack("<4s2B4HL2L2H", *fields, *lengths) + e.name + e.local_extra


def central_header(e: Entry, offset: int, *, extra: bytes = b"", sizes=None) -> bytes:
    compressed = len(e.payload) if e.central_compressed is None else e.central_compressed
    compressed, size, offset = sizes or (compressed, e.size, offset)
    return (
        struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            3,
            20,
            0,
            e.flags,
            e.method,
            0,
            0x21,
            e.crc,
            compressed,
            size,
            len(e.name),
            len(extra),
            0,
            e.disk,
            0,
            0,
            offset,
        )
        + e.name
        + extra
    )


def end_record(count: int, directory_size: int, directory_offset: int, *, disk: int = 0) -> bytes:
    return struct.pack(
        "<4s4H2LH", b"PK\x05\x06", disk, disk, count, count, directory_size, directory_offset, 0
    )


def build_zip(entries: list[Entry], *, disk: int = 0) -> bytes:
    body = bytearray()
    offsets = []
    for e in entries:
        if e.at is not None:
            offsets.append(e.at)
            continue
        offsets.append(len(body))
        body += local_header(e) + e.payload
    directory = b"".join(central_header(e, at) for e, at in zip(entries, offsets, strict=True))
    return bytes(body) + directory + end_record(len(entries), len(directory), len(body), disk=disk)


def stored(name: str | bytes, data: bytes, **kw) -> Entry:
    raw = name.encode() if isinstance(name, str) else name
    return Entry(raw, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data), **kw)


def write(tmp_path: Path, data: bytes, name: str = "set.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@functools.cache
def zeros_compressed(method: int, megabytes: int) -> tuple[bytes, int]:
    """``megabytes`` MiB of zeros compressed for a zip member (raw stream), and their CRC."""
    if method == zipfile.ZIP_DEFLATED:
        engine = zlib.compressobj(9, zlib.DEFLATED, -15)
        header = b""
    elif method == zipfile.ZIP_BZIP2:
        engine = bz2.BZ2Compressor(9)
        header = b""
    else:  # zip's LZMA: version, properties size, properties (lc=3 lp=0 pb=2, 1 MiB dictionary)
        options = {"id": lzma.FILTER_LZMA1, "preset": 0, "dict_size": MB}
        engine = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[options])
        header = b"\x09\x04\x05\x00" + bytes([(2 * 5 + 0) * 9 + 3]) + MB.to_bytes(4, "little")
    block = bytes(MB)
    crc = 0
    parts = [header]
    for _ in range(megabytes):
        parts.append(engine.compress(block))
        crc = zlib.crc32(block, crc)
    parts.append(engine.flush())
    return b"".join(parts), crc


def run_on_zips(*paths: Path, budget_mb: int = 64, timeout: float = 120.0) -> list[dict]:
    """List, hash and load each zip in one capped child; each one's one-line outcome as a dict."""
    code = f"""
        import json
        from advisor.errors import AdvisorError
        from advisor.images import load_images, open_image_set
        for path in {dumps([str(p) for p in paths])}:
            try:
                image_set = open_image_set(path)
                image_set.content_hash()
                _, report = load_images(image_set, size=8, workers=0)
                skipped = [[s.path, s.reason] for s in report.skipped]
                outcome = {{"loaded": report.loaded, "skipped": skipped}}
            except AdvisorError as err:
                outcome = {{"error": str(err)}}
            print(json.dumps(outcome))
    """
    imports = "import json, torch, advisor.images, advisor.errors"
    result = run_bounded(code, imports=imports, budget_mb=budget_mb, timeout=timeout)
    assert not result.timed_out, "timed out"
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.strip().splitlines()[-len(paths) :]]


def test_members_sharing_one_compressed_bomb_are_refused_under_a_memory_cap(tmp_path):
    # 100 directory entries pointing at one local header: 100 x 128 MiB from a 130 KB file.
    payload, crc = zeros_compressed(zipfile.ZIP_DEFLATED, 128)
    bomb = Entry(b"bomb.png", payload, zipfile.ZIP_DEFLATED, crc, 128 * MB)
    copies = [Entry(b"bomb.png", payload, zipfile.ZIP_DEFLATED, crc, 128 * MB, at=0)] * 99
    path = write(tmp_path, build_zip([bomb, *copies]))
    assert path.stat().st_size < MB
    [outcome] = run_on_zips(path)
    assert "members overlap (a zip bomb or a damaged archive)" in outcome["error"]
    assert "\n" not in outcome["error"]


def test_member_whose_declared_data_covers_the_next_member_is_refused(tmp_path):
    first, second = stored("a.png", png(1)), stored("b.png", png(2))
    # The directory says a.png's data runs on over b.png's header and data.
    first.central_compressed = len(first.payload) + len(local_header(second)) + len(png(2))
    with pytest.raises(AdvisorError, match="members overlap") as caught:
        open_image_set(write(tmp_path, build_zip([first, second])))
    assert "\n" not in str(caught.value)


def test_member_whose_local_extra_pushes_its_data_into_the_next_is_skipped(tmp_path):
    # The directory's lower bounds pass; a.png's local header then claims a 40-byte extra field,
    # which moves its data start past b.png's local header.
    data = bytearray(build_zip([stored("a.png", png(1)), stored("b.png", png(2))]))
    struct.pack_into("<H", data, 28, 40)
    image_set = open_image_set(write(tmp_path, bytes(data)))
    assert image_set.names == ("a.png", "b.png")
    report = LoadReport()
    list(iter_batches(image_set, size=None, workers=0, report=report))
    reason = "corrupt zip member (its data runs into the next member)"
    assert report.skipped == [Skipped("a.png", reason)]


def test_members_inflating_past_their_declared_size_stop_there_under_a_memory_cap(tmp_path):
    # Each declares 1000 bytes and holds 128 MiB of zeros: zipfile inflates that in one call.
    methods = {
        "deflate": zipfile.ZIP_DEFLATED,
        "bzip2": zipfile.ZIP_BZIP2,
        "lzma": zipfile.ZIP_LZMA,
    }
    paths = []
    for name, method in methods.items():
        payload, crc = zeros_compressed(method, 128)
        bomb = Entry(b"small.png", payload, method, crc, 1000)
        paths.append(write(tmp_path, build_zip([bomb, stored("good.png", png())]), f"{name}.zip"))
    reason = "corrupt zip member (inflates past its declared 1000 bytes)"
    assert run_on_zips(*paths) == [{"loaded": 1, "skipped": [["small.png", reason]]}] * 3


def test_member_claiming_a_ratio_no_image_reaches_is_skipped_under_a_memory_cap(tmp_path):
    # An honest 128 MiB bzip2 member from ~100 bytes, in an archive padded past the total rule.
    payload, crc = zeros_compressed(zipfile.ZIP_BZIP2, 128)
    bomb = Entry(b"bomb.png", payload, zipfile.ZIP_BZIP2, crc, 128 * MB)
    padding = stored("padding.bin", bytes(256 * 1024))
    path = write(tmp_path, build_zip([bomb, padding, stored("good.png", png())]))
    reason = f"zip bomb ({128 * MB} bytes from {len(payload)}, over 1032:1)"
    assert run_on_zips(path) == [{"loaded": 1, "skipped": [["bomb.png", reason]]}]


def test_many_bzip2_members_declaring_gigabytes_from_kilobytes_are_refused(tmp_path):
    # Non-overlapping, honest members: 60 x 64 MiB of zeros in ~10 KB. No member breaks a rule
    # alone (64 MiB may have any ratio), but the archive declares ~400 000 times its size.
    payload, crc = zeros_compressed(zipfile.ZIP_BZIP2, 64)
    members = [
        Entry(f"{i:02d}.png".encode(), payload, zipfile.ZIP_BZIP2, crc, 64 * MB) for i in range(60)
    ]
    path = write(tmp_path, build_zip(members))
    assert path.stat().st_size < 64 * 1024
    [outcome] = run_on_zips(path)
    assert "(a zip bomb)" in outcome["error"] and "declare 4026531840 bytes" in outcome["error"]


def test_total_bound_lets_an_ordinary_archive_through_and_catches_a_larger_one(
    tmp_path, monkeypatch
):
    from advisor.images import zips

    members = [stored(f"{i}.png", png(i)) for i in range(3)]
    path = write(tmp_path, build_zip(members))
    assert len(open_image_set(path)) == 3
    monkeypatch.setattr(zips, "ZIP_RATIO_FLOOR_BYTES", 0)
    monkeypatch.setattr(zips, "MAX_ZIP_RATIO", 1)
    assert len(open_image_set(path)) == 3  # stored: the data never exceeds the archive
    monkeypatch.setattr(zips, "MAX_ZIP_INFLATED_BYTES", 100)
    with pytest.raises(AdvisorError, match=r"declare \d+ bytes .* \(a zip bomb\)"):
        open_image_set(path)


def test_unsupported_compression_is_a_reported_skip_not_a_traceback(tmp_path):
    odd = Entry(b"odd.png", b"\x00" * 64, 9, 0, 64)  # deflate64
    aes = Entry(b"aes.png", b"\x00" * 64, 99, 0, 64)  # WinZip AES
    path = write(tmp_path, build_zip([odd, aes, stored("good.png", png())]))
    image_set = open_image_set(path)
    image_set.content_hash()
    _, report = load_images(image_set, size=None, workers=0)
    assert report.loaded == 1
    assert report.skipped == [
        Skipped("aes.png", "unsupported compression (method 99: unknown)"),
        Skipped("odd.png", "unsupported compression (method 9: deflate64)"),
    ]


def test_name_flagged_utf8_that_is_not_is_a_reported_skip(tmp_path):
    bad = stored(b"bad\xff\xfe.png", png(1), flags=UTF8_FLAG)
    path = write(tmp_path, build_zip([bad, stored("good.png", png())]))
    image_set = open_image_set(path)
    assert image_set.names == ("good.png",)
    assert image_set.skipped == (
        Skipped("bad\\xff\\xfe.png", "name is not valid UTF-8 (though flagged so)"),
    )


@pytest.mark.parametrize("where", ["end record", "member"])
def test_part_of_a_split_archive_is_one_line_error(tmp_path, where):
    member = stored("a.png", png(), disk=1 if where == "member" else 0)
    data = build_zip([member], disk=1 if where == "end record" else 0)
    with pytest.raises(
        AdvisorError, match=r"split \(multi-disk\) archive; join the parts"
    ) as caught:
        open_image_set(write(tmp_path, data))
    assert "\n" not in str(caught.value)


def zip64(entries: list[Entry], *, declared: int | None = None, prefix: bytes = b"") -> bytes:
    """A zip64 archive: sizes and offsets in zip64 extra fields, counts in the zip64 end record."""
    body = bytearray(prefix)
    offsets = []
    for e in entries:
        offsets.append(len(body) - len(prefix))
        body += local_header(e) + e.payload
    directory = b""
    for e, offset in zip(entries, offsets, strict=True):
        extra = struct.pack("<HHQQQ", 1, 24, e.size, len(e.payload), offset)
        directory += central_header(e, 0, extra=extra, sizes=(0xFFFF_FFFF,) * 3)
    start = len(body) - len(prefix)
    count = len(entries) if declared is None else declared
    record = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), start
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, start + len(directory), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0)
    return bytes(body) + directory + record + locator + end


def test_zip64_archive_reads_exactly_as_zipfile_reads_it(tmp_path):
    images = {f"{i}.png": png(i) for i in range(3)}
    path = write(tmp_path, zip64([stored(n, d) for n, d in images.items()], prefix=b"#!stub\n"))
    with zipfile.ZipFile(path) as archive:
        expected = {info.filename: archive.read(info) for info in archive.infolist()}
    assert expected == images
    image_set = open_image_set(path)
    assert image_set.names == tuple(sorted(images))
    assert [image_set.read_bytes(i) for i in range(3)] == [images[n] for n in image_set.names]


def test_end_record_declaring_more_members_than_the_bound_is_one_line_error(tmp_path):
    path = write(tmp_path, zip64([stored("a.png", png())], declared=20_000_000))
    with pytest.raises(AdvisorError, match="20000000 members, more than 10000000"):
        open_image_set(path)


def test_directory_holding_more_members_than_the_bound_is_one_line_error(tmp_path, monkeypatch):
    from advisor.images import zips

    monkeypatch.setattr(zips, "MAX_ZIP_MEMBERS", 5)
    entries = [stored(f"{i}.png", png(i)) for i in range(6)]
    data = bytearray(build_zip(entries))
    struct.pack_into("<2H", data, len(data) - 14, 1, 1)  # the end record understates the count
    with pytest.raises(AdvisorError, match="more than 5 members"):
        open_image_set(write(tmp_path, bytes(data)))


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_real_zips_still_read_exactly_as_zipfile_reads_them(tmp_path, compression):
    path = tmp_path / "set.zip"
    images = {f"sub/{i}.png": png(i) for i in range(3)}
    # Members start with their format's signature: a zip member that does not start like an
    # image is refused after its first chunk (see test_zero_filled_members_...).
    images["flat.bmp"] = b"BM" + bytes(Image.new("RGB", (64, 64)).tobytes())  # compressible
    # Several 1 MiB chunks, compressible but not trivially: exercises the chunked inflation.
    images["big.tif"] = b"II*\x00" + (np.arange(2 * MB + 7) * 7919 % 251).astype(np.uint8).tobytes()
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in images.items():
            archive.writestr(name, data)
        archive.writestr("notes.txt", b"not an image")
        archive.comment = b"a comment moves the end record"
    prefixed = write(tmp_path, b"MZ" + bytes(500) + path.read_bytes(), "sfx.zip")
    for source in (path, prefixed):
        image_set = open_image_set(source)
        assert image_set.names == tuple(sorted(images)) and image_set.skipped == ()
        assert [image_set.read_bytes(i) for i in range(5)] == [images[n] for n in image_set.names]


def test_member_with_a_bad_crc_or_cut_data_is_skipped(tmp_path):
    good = png()
    wrong_crc = Entry(b"crc.png", good, zipfile.ZIP_STORED, zlib.crc32(good) ^ 1, len(good))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    starts_like_png = b"\x89PNG\r\n\x1a\n" + bytes(MB - 8)
    cut = (deflate.compress(starts_like_png) + deflate.flush())[:50]
    short = Entry(b"cut.png", cut, zipfile.ZIP_DEFLATED, 0, MB)
    image_set = open_image_set(
        write(tmp_path, build_zip([wrong_crc, short, stored("ok.png", good)]))
    )
    _, report = load_images(image_set, size=None, workers=0)
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons["crc.png"] == "corrupt zip member (CRC mismatch)"
    assert reasons["cut.png"] == "truncated" and report.loaded == 1


# --- folders -------------------------------------------------------------------------------------


def test_symlink_graph_with_exponentially_many_paths_walks_each_real_folder_once(tmp_path):
    # set/ -> d1 twice, d1 -> d2 twice, ...: 2**40 paths, 41 real folders, one image in each.
    depth = 40
    folders = [tmp_path / "set"] + [tmp_path / "real" / f"d{i}" for i in range(1, depth + 1)]
    for i, folder in enumerate(folders):
        folder.mkdir(parents=True)
        (folder / "img.png").write_bytes(png(i))
        if i < depth:
            (folder / "a").symlink_to(folders[i + 1])
            (folder / "b").symlink_to(folders[i + 1])
    code = f"""
        import json
        from advisor.images import open_image_set
        print(json.dumps(list(open_image_set({dumps(str(folders[0]))}).names)))
    """
    result = run_bounded(
        code, imports="import json, torch, advisor.images", budget_mb=128, timeout=60
    )
    assert not result.timed_out and result.returncode == 0, result.stderr[-3000:]
    names = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(names) == sorted("a/" * i + "img.png" for i in range(depth + 1))


def test_real_folder_reached_through_links_is_listed_once_under_its_real_path(tmp_path):
    root = tmp_path / "set"
    (root / "real").mkdir(parents=True)
    (root / "real" / "img.png").write_bytes(png())
    (root / "alias").symlink_to(root / "real")
    (root / "again").symlink_to(root / "real")
    assert open_image_set(root).names == ("real/img.png",)


def test_symlink_loop_without_an_image_suffix_is_ignored_not_a_traceback(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "good.png").write_bytes(png())
    (root / "loop").symlink_to(root / "loop")
    image_set = open_image_set(root)
    assert image_set.names == ("good.png",) and image_set.skipped == ()


def deny(monkeypatch, *unreachable: Path, unlistable: tuple[Path, ...] = ()) -> None:
    """Simulate EACCES as a non-root user meets it: ``unreachable`` paths cannot be stat'ed (their
    parent is not searchable: also their entries' ``is_dir``), ``unlistable`` folders cannot be
    listed (mode 000)."""
    targets = {os.fspath(p) for p in unreachable}
    closed = {os.fspath(p) for p in unlistable}
    real_stat, real_scandir = os.stat, os.scandir

    def denied(path) -> PermissionError:
        return PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    def stat(path, *args, **kwargs):
        if os.fspath(path) in targets:
            raise denied(path)
        return real_stat(path, *args, **kwargs)

    class DeniedEntry:
        def __init__(self, entry: os.DirEntry) -> None:
            self.name, self.path = entry.name, entry.path

        def _deny(self, *args, **kwargs):
            raise denied(self.path)

        is_dir = is_file = stat = _deny

        def is_symlink(self) -> bool:
            return True

    class Listing:
        def __init__(self, path) -> None:
            if os.fspath(path) in closed | targets:
                raise denied(path)
            self._listing = real_scandir(path)

        def __enter__(self):
            entries = list(self._listing)
            return [DeniedEntry(e) if e.path in targets else e for e in entries]

        def __exit__(self, *exc) -> None:
            self._listing.close()

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "scandir", Listing)


def test_unsearchable_linked_folder_is_a_reported_skip_simulated(tmp_path, monkeypatch):
    root = tmp_path / "set"
    root.mkdir()
    (root / "good.png").write_bytes(png())
    (tmp_path / "locked").mkdir()
    (root / "link").symlink_to(tmp_path / "locked")
    (root / "sub").mkdir()
    deny(monkeypatch, root / "link", unlistable=(root / "sub",))
    image_set = open_image_set(root)
    assert image_set.names == ("good.png",)
    assert image_set.skipped == (
        Skipped("link", "unreadable: permission denied"),
        Skipped("sub/", "unreadable folder: permission denied"),
    )


def test_source_that_cannot_be_reached_is_one_line_error_simulated(tmp_path, monkeypatch):
    root = tmp_path / "set"
    root.mkdir()
    deny(monkeypatch, root)
    with pytest.raises(AdvisorError, match=r"cannot reach .*set \(permission denied\)") as caught:
        open_image_set(root)
    assert "\n" not in str(caught.value)


def test_listed_file_that_cannot_be_reached_is_a_skip_not_missing_simulated(tmp_path, monkeypatch):
    good, hidden = tmp_path / "good.png", tmp_path / "hidden.png"
    good.write_bytes(png())
    hidden.write_bytes(png())
    real_lstat = os.lstat

    def lstat(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(hidden):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    deny(monkeypatch, hidden)
    image_set = open_image_set([good, hidden])
    assert image_set.names == (str(good),)
    assert image_set.skipped == (Skipped(str(hidden), "unreadable: permission denied"),)


@pytest.mark.skipif(os.geteuid() == 0, reason="root searches folders whatever their mode")
def test_unsearchable_folders_are_reported_skips(tmp_path):
    root = tmp_path / "set"
    (root / "sub").mkdir(parents=True)
    (root / "good.png").write_bytes(png())
    (tmp_path / "locked" / "inner").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path / "locked" / "inner")
    for folder in (root / "sub", tmp_path / "locked"):
        folder.chmod(0)
    try:
        image_set = open_image_set(root)
        assert image_set.names == ("good.png",)
        assert {s.path for s in image_set.skipped} == {"link", "sub/"}
        with pytest.raises(AdvisorError, match="cannot reach"):
            open_image_set(tmp_path / "locked" / "inner")
    finally:
        for folder in (root / "sub", tmp_path / "locked"):
            folder.chmod(0o755)


# --- odd names in reports ------------------------------------------------------------------------


def test_skip_records_keep_names_and_reasons_printable():
    skip = Skipped("a\nb\x1b[31m.png", "corrupt (bad\rthing)")
    assert skip == Skipped("a\\nb\\x1b[31m.png", "corrupt (bad\\rthing)")
    assert Skipped(skip.path, skip.reason) == skip  # printable twice is printable once


def test_folder_and_zip_skips_name_odd_files_on_one_line(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "good.png").write_bytes(png())
    (root / "new\nline.png").write_bytes(b"")
    assert open_image_set(root).skipped == (Skipped("new\\nline.png", "zero bytes"),)
    path = write(tmp_path, build_zip([stored("tab\t.png", b"x"), stored("good.png", png())]))
    _, report = load_images(path, size=None, workers=0)
    assert report.skipped == [Skipped("tab\\t.png", "not an image")]


def test_cli_skip_report_prints_odd_names_escaped_on_one_line(capsys):
    from advisor.cli.options import report_skips

    skipped = tuple(Skipped(f"bad\n{i}.png", "zero bytes") for i in range(7))
    report_skips(SimpleNamespace(source="my\nset", skipped=skipped), quiet=False)
    err = capsys.readouterr().err
    assert err == (
        "my\\nset: skipped 7 file(s): bad\\n0.png (zero bytes), bad\\n1.png (zero bytes), "
        "bad\\n2.png (zero bytes), bad\\n3.png (zero bytes), bad\\n4.png (zero bytes), and 2 more\n"
    )


def test_zero_filled_members_named_like_images_are_refused_after_their_first_chunk(tmp_path):
    """A 1 MB deflated member of zeros inflates to 1 GB at deflate's 1032:1: reading stops at
    its first megabyte because it does not start like an image."""
    path = tmp_path / "zeros.zip"
    zeros = bytes(48 * MB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(8):
            archive.writestr(f"z{i}.png", zeros)
        archive.writestr("ok.png", png())
    inflated = []
    real_iter = zips.iter_member

    def counting(file, member):
        for chunk in real_iter(file, member):
            inflated.append(len(chunk))
            yield chunk

    image_set = open_image_set(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(zips, "iter_member", counting)
        _, report = load_images(image_set, size=None, workers=0)
        image_set.content_hash()
    assert report.loaded == 1
    assert {s.reason for s in report.skipped} == {"not an image"}
    # Two passes (decode, hash) over 8 refused members of at most one chunk each, plus ok.png.
    assert sum(inflated) <= 2 * (8 * MB + len(png()))


def test_an_absurd_worker_count_is_capped_by_cores_and_images(tmp_path, monkeypatch):
    import advisor.images.batches as batches

    seen = []
    real = batches._decoded

    def spy(image_set, size, chunk, workers, max_pixels):
        seen.append(workers)
        return real(image_set, size, chunk, 0, max_pixels)

    monkeypatch.setattr(batches, "_decoded", spy)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png(i))
    _, report = load_images(folder, size=None, workers=100_000)
    assert report.loaded == 3 and seen == [min(3, 4 * batches._usable_cpus())]
