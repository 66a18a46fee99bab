"""Checkpoints: advisor's safetensors format, safe importers, the registry and downloads.

- :mod:`.format`: ``NAME.safetensors`` + ``NAME.json`` (G_ema, G, D + metadata); never pickles.
- :mod:`.importers`: NVlabs ``.pkl`` (restricted unpickler, :mod:`.nvlabs_pickle`), rosinality
  ``.pt`` (:mod:`.rosinality`) and NVlabs state dicts (configs from shapes, :mod:`.infer`); every
  pickle is scanned first so that its unpickling is bounded (:mod:`.pickle_scan`).
- :mod:`.registry`: TOML records (:class:`CheckpointRecord`) merged from the packaged default,
  ``$ADVISOR_REGISTRY`` and ``--registry`` files.
- :mod:`.fetch`: verified downloads into the cache (Hub or HTTP) and offline cache status.
- :mod:`.resolve`: a CHECKPOINT argument (path or registry name) -> networks.
"""

from advisor.checkpoints.fetch import CacheStatus, VerifyResult, pull, status, verify
from advisor.checkpoints.format import (
    Checkpoint,
    CheckpointMetadata,
    Provenance,
    checkpoint_paths,
    is_advisor_checkpoint,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from advisor.checkpoints.importers import (
    ImportReport,
    NetworkReport,
    detect_format,
    import_checkpoint,
    read_checkpoint,
)
from advisor.checkpoints.registry import (
    FORMATS,
    CheckpointRecord,
    Registry,
    default_registry_path,
    load_registry,
)
from advisor.checkpoints.resolve import open_checkpoint, resolve
from advisor.download import HubFile

__all__ = [
    "FORMATS",
    "CacheStatus",
    "Checkpoint",
    "CheckpointMetadata",
    "CheckpointRecord",
    "HubFile",
    "ImportReport",
    "NetworkReport",
    "Provenance",
    "Registry",
    "VerifyResult",
    "checkpoint_paths",
    "default_registry_path",
    "detect_format",
    "import_checkpoint",
    "is_advisor_checkpoint",
    "load_checkpoint",
    "load_registry",
    "open_checkpoint",
    "pull",
    "read_checkpoint",
    "read_metadata",
    "resolve",
    "save_checkpoint",
    "status",
    "verify",
]
