"""Uploaded targets: a ``.zip`` of images, size-limited, checked by advisor's image rules.

``POST /targets`` streams the request body into a temporary file beside ``DATA/targets/`` and
stops at ``max_bytes`` (nothing larger ever reaches the disk). The archive is then read by
:func:`advisor.images.open_image_set` (the bounded zip reader of :mod:`advisor.images.zips`:
zip bombs, overlapping members, split archives refused; members with unsafe names or
compression skipped) and every listed member is decoded by :func:`advisor.images.decode_image`
(its pixel limit guards against decompression bombs). A zip with no usable image is refused.

The zip is kept as it was sent, never extracted: advisor reads zips directly, so no member name
ever becomes a path on the server. It is stored under its content hash,
``DATA/targets/<sha256[:16]>.zip``; job params name it as ``targets/<id>.zip``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from advisor.cache import create_temporary
from advisor.errors import AdvisorError

#: Default largest upload (bytes): 1 GiB holds ~100k 64 px PNGs or ~5k 1024 px JPEGs.
DEFAULT_MAX_UPLOAD = 1 << 30
#: Skipped members named in a response.
SHOWN_SKIPS = 20


class UploadTooLarge(AdvisorError):
    """The body passed the server's upload limit."""


@dataclass(frozen=True, kw_only=True)
class TargetUpload:
    """A stored target: ``id`` (content hash prefix), ``path`` relative to the data folder,
    usable image count and the members skipped with their reasons."""

    id: str
    path: str
    images: int
    skipped: tuple[tuple[str, str], ...]
    bytes: int

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "path": self.path,
            "images": self.images,
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped[:SHOWN_SKIPS]],
            "n_skipped": len(self.skipped),
            "bytes": self.bytes,
        }


class UploadWriter:
    """Collects body chunks into a temporary file; :meth:`finish` validates and stores it."""

    def __init__(self, targets: Path, *, max_bytes: int = DEFAULT_MAX_UPLOAD) -> None:
        targets.mkdir(parents=True, exist_ok=True)
        self.targets = targets
        self.max_bytes = max_bytes
        self.size = 0
        self._digest = hashlib.sha256()
        fd, self.tmp = create_temporary(targets / "upload.zip")
        self._file = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise UploadTooLarge(
                f"the upload is larger than the server's limit of {self.max_bytes} bytes"
            )
        self._digest.update(chunk)
        self._file.write(chunk)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()

    def finish(self) -> TargetUpload:
        """Validate the zip (see the module docstring) and move it into place."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self.size == 0:
                raise AdvisorError("the upload is empty: send a .zip of images as the body")
            images, skipped = check_target_zip(self.tmp)
            upload_id = self._digest.hexdigest()[:16]
            dest = self.targets / f"{upload_id}.zip"
            os.replace(self.tmp, dest)
        except BaseException:
            self.discard()
            raise
        return TargetUpload(
            id=upload_id,
            path=f"targets/{dest.name}",
            images=images,
            skipped=skipped,
            bytes=self.size,
        )


def check_target_zip(path: Path) -> tuple[int, tuple[tuple[str, str], ...]]:
    """Usable image count and ``(member, reason)`` skips of the zip at ``path``, or
    :class:`AdvisorError` when it is not a zip, breaks the archive rules or holds no image."""
    from advisor.images import DecodeError, decode_image, open_image_set
    from advisor.images.zips import ZipMemberError, is_zip

    if not is_zip(path):
        raise AdvisorError("the upload is not a .zip archive: send a .zip of images")
    image_set = open_image_set(path)
    skipped = [(s.path, s.reason) for s in image_set.skipped]
    usable = 0
    for i, name in enumerate(image_set.names):
        try:
            decode_image(image_set.read_bytes(i))
        except DecodeError as err:
            skipped.append((name, err.reason))
            continue
        except (OSError, ZipMemberError) as err:
            skipped.append((name, getattr(err, "reason", None) or str(err)))
            continue
        usable += 1
    if usable == 0:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped[:3]) or "no image files in it"
        raise AdvisorError(f"the zip holds no usable image ({reasons})")
    return usable, tuple(skipped)
