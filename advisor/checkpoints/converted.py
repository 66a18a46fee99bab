"""Converted checkpoints, cached by the source file's sha256.

Importing an NVlabs pickle or a rosinality ``.pt`` means a scanned, restricted unpickling and a
rebuild of every network; ranking a zoo would repeat that on every run. The first complete
conversion of a source is therefore saved in advisor's own format (never a pickle) as
``<cache>/converted/v<N>/<source sha256>.safetensors`` + ``.json``, written as a pair atomically
(:func:`advisor.checkpoints.format.save_checkpoint`), with the import report in the JSON's
``extra``. Later reads of the same bytes, under any file name, load that pair instead, reading
only the networks asked for.

The key is the source's content, so an edited source is a new entry; ``CONVERTER_VERSION``
changes whenever an importer could produce other tensors or configs from the same bytes. The
cache is best effort: one that cannot be read is a miss, one that cannot be written costs a
warning, never the read.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from advisor.cache import cache_dir
from advisor.checkpoints.format import (
    NETWORKS,
    Checkpoint,
    is_advisor_checkpoint,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from advisor.errors import AdvisorError

#: Bump when an importer's output for the same source bytes changes.
CONVERTER_VERSION = 1
#: Key in the cached metadata's ``extra`` holding the import report.
REPORT_KEY = "import_report"


def converted_path(source_sha256: str) -> Path:
    """``<cache>/converted/v<N>/<sha256>`` (the pair's ``NAME``); may raise AdvisorError."""
    return cache_dir("converted", f"v{CONVERTER_VERSION}") / source_sha256


def lookup(
    source_sha256: str, *, networks: tuple[str, ...] | None, device: str | torch.device
) -> tuple[Checkpoint, dict[str, Any]] | None:
    """``(checkpoint, import report document)`` for a cached conversion of the source with this
    sha256, holding the source's networks among ``networks`` (None: all of them) and reading
    only those; None when not cached, unreadable, not that source's, or converted for fewer
    networks than asked."""
    try:
        path = converted_path(source_sha256)
        if not is_advisor_checkpoint(path):
            return None
        metadata, doc = read_metadata(path)
        prov = metadata.provenance
        report = metadata.extra.get(REPORT_KEY)
        if prov is None or prov.source_sha256 != source_sha256 or not isinstance(report, dict):
            return None
        in_source = report.get("source_networks")
        if not isinstance(in_source, list):
            return None
        need = tuple(n for n in NETWORKS if n in in_source and (networks is None or n in networks))
        if any(n not in doc["networks"] for n in need):
            return None  # an earlier conversion built fewer networks: convert again
        return load_checkpoint(path, networks=need, device=device), report
    except AdvisorError:
        return None  # damaged or foreign: converted again and replaced


def store(source_sha256: str, checkpoint: Checkpoint) -> None:
    """Save a complete conversion (its metadata's ``extra`` holds the report); warns on failure."""
    try:
        save_checkpoint(converted_path(source_sha256), checkpoint)
    except (AdvisorError, OSError) as err:
        text = " ".join(str(err).split())[:200]
        warnings.warn(f"converted checkpoint not cached ({text})", stacklevel=3)
