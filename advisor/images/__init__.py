"""Image sets: folders, zips and file lists -> uint8 NCHW RGB batches.

Listing (``open_image_set``), read-only, deterministic:

- a folder is walked recursively and its files sorted by relative POSIX path; symlinked files and
  folders are followed, and each real folder is walked once, under its path with the fewest
  symlinks (then the first in sorted order), so links back up and link graphs with many paths
  cost nothing more; a folder that cannot be searched is skipped and reported;
- a ``.zip`` lists its members, sorted by member name; ``__MACOSX/`` is ignored. Zips are read
  by ``advisor.images.zips`` with bounded work: split archives, too many entries, overlapping
  members and archives declaring more than ``MAX_ZIP_RATIO`` times their size are one-line
  errors; unsupported compression, bad names and members that inflate past their declared size
  are skipped and reported;
- a list of files keeps the order given; every item is a candidate whatever its suffix, and an
  item that does not exist is an error (an explicit list with a typo should stop before any work).

In folders and zips, names starting with ``.`` (hidden files and folders) and files whose suffix is
not in ``IMAGE_EXTENSIONS`` are ignored silently. Candidates that cannot be images (broken
symlinks, symlink loops, folders named like images, non-regular files, zero bytes, unreadable,
larger than ``MAX_FILE_BYTES``) are *skipped* and reported, never silently dropped. A skip's path
and reason are kept in ``printable`` form (control characters escaped), so reports stay one line.

Decoding (``decode_image``) follows one rule, named ``DECODE_POLICY`` for cache keys: the first
frame; EXIF orientation applied; 16-bit and 32-bit integer gray (PIL modes ``I;16*``, ``I``)
clipped to 0..65535 and shifted right by 8 (16-bit RGB(A) PNGs already arrive as 8-bit, high byte);
float gray (``F``) rounded and clipped to 0..255; CMYK, YCbCr and bilevel converted by PIL;
anything with alpha or a transparency key (RGBA, LA, PA, P/L/RGB + tRNS, GIF transparency)
composited onto opaque white, ``out = (a*c + (255 - a)*255 + 127) // 255``; gray replicated to
three channels. ICC profiles are ignored (pixel values are used as stored).

Nothing here ever writes to the user's files: sources are only opened for reading.

The parts: ``sets`` (listing), ``zips`` (reading zips with bounds), ``decode`` (the decoding rule
and the resize), ``batches`` (decoding a set into batches, in worker processes), ``sizes`` (a
set's most common image size, from headers only).
"""

from advisor.images.batches import Batch, LoadReport, format_skips, iter_batches, load_images
from advisor.images.decode import (
    DECODE_POLICY,
    DEFAULT_MAX_PIXELS,
    RESIZE_POLICY,
    DecodeError,
    decode_image,
    resize_hwc,
    resize_uint8,
)
from advisor.images.sets import (
    IMAGE_EXTENSIONS,
    MAX_FILE_BYTES,
    ImageSet,
    Skipped,
    open_image_set,
    printable,
)
from advisor.images.sizes import TargetSize, target_size
from advisor.images.zips import (
    MAX_ZIP_INFLATED_BYTES,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    ZIP_RATIO_FLOOR_BYTES,
)

__all__ = [
    "TargetSize",
    "target_size",
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "MAX_FILE_BYTES",
    "MAX_ZIP_MEMBERS",
    "MAX_ZIP_RATIO",
    "ZIP_RATIO_FLOOR_BYTES",
    "MAX_ZIP_INFLATED_BYTES",
    "RESIZE_POLICY",
    "DECODE_POLICY",
    "Skipped",
    "DecodeError",
    "ImageSet",
    "open_image_set",
    "printable",
    "format_skips",
    "decode_image",
    "resize_uint8",
    "resize_hwc",
    "Batch",
    "LoadReport",
    "iter_batches",
    "load_images",
]
