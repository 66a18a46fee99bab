"""A set's image sizes from its headers alone: the resolution a target is ranked and compared at."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

from PIL import Image

from advisor.images.sets import ImageSet


@dataclass(frozen=True, kw_only=True)
class TargetSize:
    """The target's image sizes: ``resolution`` is the side of the most common ``(w, h)``
    (the longer side when it is not square), None when no header could be read."""

    resolution: int | None
    sizes: tuple[tuple[int, int, int], ...]  # (width, height, count), most common first

    def to_dict(self) -> dict[str, object]:
        return {
            "resolution": self.resolution,
            "sizes": [{"width": w, "height": h, "count": c} for w, h, c in self.sizes[:5]],
        }


def target_size(image_set: ImageSet) -> TargetSize:
    """Read every image's header (not its pixels) and find the most common size.

    Files whose header cannot be read are left out here; decoding reports them properly.
    """
    counts: Counter[tuple[int, int]] = Counter()
    for i in range(len(image_set)):
        try:
            with Image.open(io.BytesIO(image_set.read_bytes(i))) as image:
                counts[image.size] += 1
        except Exception:  # noqa: BLE001 - a header sniff of untrusted files; decoding reports
            continue
    if not counts:
        return TargetSize(resolution=None, sizes=())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], -max(item[0]), item[0]))
    (width, height), _ = ordered[0]
    return TargetSize(
        resolution=max(width, height), sizes=tuple((w, h, c) for (w, h), c in ordered)
    )
