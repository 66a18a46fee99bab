"""Import NVlabs and rosinality checkpoints into advisor's networks, safely.

Formats (``detect_format``):

- ``nvlabs-pkl``: NVlabs StyleGAN2-ADA snapshot pickles, and StyleGAN3-repository pickles of its
  StyleGAN2 config; read by :mod:`advisor.checkpoints.nvlabs_pickle` (no code from the pickle
  runs). The persistent classes' ``init_kwargs`` give the configs. StyleGAN3 (config t/r)
  generators are refused: their architecture is not implemented yet.
- ``rosinality-pt``: rosinality/stylegan2-pytorch ``torch.save`` dicts ``{g, d, g_ema, args,
  ...}``, read with ``torch.load(weights_only=True)`` allowing ``argparse.Namespace`` (restored
  by attribute assignment, no constructor runs). Configs are inferred from tensor shapes.
- ``nvlabs-state``: ``torch.save`` dicts of NVlabs-named state dicts ``{G, D, G_ema}`` (as the
  gan-transfer ImageNet checkpoints are described); configs inferred from shapes.
- ``advisor``: advisor's own ``NAME.safetensors`` + ``NAME.json`` (see :mod:`.format`).

Every import reports, per network, which NVlabs parameters were matched, which were missing
(``strict`` refuses those), which source tensors were unexpected (ignored) and which values were
derived rather than read (see :class:`NetworkReport`).

Nothing in a source file is trusted: pickles are scanned before they are unpickled
(:mod:`.pickle_scan`), every tensor must be a dense view inside its own storage, every tensor
that fills a network must have the shape the config gives it, a floating-point dtype and finite
values (NaN or inf weights are a corrupt or diverged checkpoint, refused rather than sampled),
and configs go through their bounds and size estimate before any network is built.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from advisor.cache import check_destination
from advisor.checkpoints import converted
from advisor.checkpoints.format import (
    NETWORKS,
    Checkpoint,
    CheckpointMetadata,
    OutputExists,
    Provenance,
    checkpoint_paths,
    is_advisor_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from advisor.checkpoints.infer import infer_discriminator_config, infer_generator_config
from advisor.checkpoints.nvlabs_pickle import (
    MAX_TENSOR_DIMS,
    PersistentRecord,
    load_nvlabs_pickle,
    to_plain,
    torch_load_detail,
    torch_refused_global,
)
from advisor.checkpoints.pickle_scan import scan_torch_save
from advisor.checkpoints.rosinality import discriminator_to_nvlabs, generator_to_nvlabs
from advisor.download import sha256_file
from advisor.errors import AdvisorError
from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

#: Seeds and sample count of the w average advisor derives when a source stores none.
W_AVG_SAMPLES = 10_000
_TORCH_LEGACY_MAGIC = bytes.fromhex("8a0a6cfc9c46f9206aa85019")  # LONG1 magic of torch.save
#: A zip file starts with a local file header (torch.save writes one first). Looking for the
#: end-of-archive record instead (``zipfile.is_zipfile``) would take a pickle that happens to
#: hold those four bytes near its end for a zip.
_ZIP_LOCAL_HEADER = b"PK\x03\x04"


@dataclass(frozen=True)
class NetworkReport:
    """How one network's tensors were filled.

    matched: NVlabs keys read from the source. missing: keys the source lacks (left at their
    initial values; a strict import refuses them). unexpected: source tensors advisor did not
    use. derived: keys computed rather than read (filters from the config, rosinality's w_avg).
    """

    network: str
    matched: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    derived: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the key lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


@dataclass(frozen=True)
class ImportReport:
    """Result of reading a source file: format, hash, per-network reports, notes, output."""

    source: Path
    source_sha256: str
    format: str
    networks: tuple[NetworkReport, ...]
    notes: tuple[str, ...] = ()
    output: Path | None = None

    @property
    def complete(self) -> bool:
        """True when no network misses a parameter."""
        return not any(r.missing for r in self.networks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "source": str(self.source),
            "source_sha256": self.source_sha256,
            "format": self.format,
            "networks": [r.to_dict() for r in self.networks],
            "notes": list(self.notes),
            "output": None if self.output is None else str(self.output),
            "complete": self.complete,
        }


def detect_format(path: str | os.PathLike[str]) -> str:
    """One of :data:`FORMATS`, from the file's content (not its name).

    ``torch.save`` files are opened (restricted) to tell rosinality from NVlabs state dicts.
    """
    return _detect(Path(path))[0]


def _detect(path: Path) -> tuple[str, Any]:
    """``(format, loaded torch.save data or None)``."""
    if path.suffix in (".json", ".safetensors") or is_advisor_checkpoint(path):
        if is_advisor_checkpoint(path):
            return "advisor", None
        raise AdvisorError(f"{path} is half of an advisor checkpoint (NAME.json/.safetensors)")
    if not path.is_file():
        raise AdvisorError(f"no such file: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == _ZIP_LOCAL_HEADER or (head[:1] == b"\x80" and head[2:14] == _TORCH_LEGACY_MAGIC):
        data = _torch_load(path)
        return _classify_torch_save(path, data), data
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return "nvlabs-pkl", None
    raise AdvisorError(
        f"{path.name} is not a checkpoint advisor knows (NVlabs .pkl, rosinality .pt, "
        "torch.save of NVlabs state dicts, or advisor .safetensors+.json)"
    )


def read_checkpoint(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    strict: bool = True,
    source_dataset: str | None = None,
    training_kimg: float | None = None,
    licence: str | None = None,
    description: str | None = None,
    networks: tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    cache: bool = True,
) -> tuple[Checkpoint, ImportReport]:
    """Read any supported checkpoint file into advisor networks, in memory.

    ``name`` defaults to the file's stem. The keyword metadata fills the checkpoint's JSON
    fields where the source does not say (an NVlabs snapshot's dataset path and kimg are read
    from the pickle and file name). ``strict`` refuses sources that miss network parameters.
    ``networks`` limits which of G_ema (always), G and D are built. With ``cache``, a complete
    conversion is kept in advisor's format keyed by the source's sha256
    (:mod:`advisor.checkpoints.converted`) and later reads of the same bytes load it instead of
    unpickling and converting again.
    """
    path = Path(path)
    if path.suffix in (".json", ".safetensors") or is_advisor_checkpoint(path):
        _detect(path)  # a half pair is an error
        ckpt = load_checkpoint(path, networks=networks, device=device)
        reports = tuple(
            NetworkReport(n, tuple(getattr(ckpt, n).state_dict()), (), ()) for n in ckpt.networks
        )
        prov = ckpt.metadata.provenance
        return ckpt, ImportReport(path, prov.source_sha256 if prov else "", "advisor", reports)
    if not path.is_file():
        raise AdvisorError(f"no such file: {path}")
    sha = sha256_file(path)
    wanted = NETWORKS if networks is None else ("G_ema", *networks)
    asked = None if networks is None else wanted
    found = converted.lookup(sha, networks=asked, device=device) if cache else None
    if found is not None:
        full, doc = found
        fmt, reports, notes = _report_from_json(doc)
    else:
        full, fmt, reports, notes = _convert(path, sha, wanted)
        if cache and not any(r.missing for r in reports):
            converted.store(sha, full)
    reports = tuple(r for r in reports if r.network in wanted)
    nets = {n: getattr(full, n) for n in NETWORKS if n in wanted and getattr(full, n) is not None}
    for report in reports:
        if strict and report.missing:
            raise AdvisorError(
                f"{path.name}: {report.network} lacks {len(report.missing)} parameters "
                f"(e.g. {report.missing[0]}); use a non-strict import to keep initial values"
            )
    if "G_ema" not in nets:
        raise AdvisorError(f"{path.name} has no G_ema generator")
    meta = full.metadata
    if training_kimg is None and fmt == "nvlabs-pkl":
        m = re.search(r"network-snapshot-(\d{1,9})", path.name)
        training_kimg = float(m.group(1)) if m else None
    assert meta.provenance is not None
    metadata = replace(
        meta,
        name=name or path.stem,
        discriminator=meta.discriminator if "D" in nets else None,
        source_dataset=source_dataset or meta.source_dataset,
        training_kimg=training_kimg,
        licence=licence,
        description=description,
        provenance=replace(meta.provenance, source_file=path.name),
        extra={},
    )
    nets = {n: m.to(device).eval().requires_grad_(False) for n, m in nets.items()}
    report = ImportReport(path, sha, fmt, reports, notes)
    return Checkpoint(metadata=metadata, **nets), report


def _convert(
    path: Path, sha: str, wanted: tuple[str, ...]
) -> tuple[Checkpoint, str, tuple[NetworkReport, ...], tuple[str, ...]]:
    """The ``wanted`` networks of a non-advisor source, on the CPU, non-strictly: ``(checkpoint
    with the source's own metadata and the report in ``extra``, format, reports, notes)``."""
    fmt, loaded = _detect(path)
    notes: list[str] = []
    if fmt == "nvlabs-pkl":
        states, configs, found = _read_nvlabs_pickle(path, notes)
    else:
        states, configs, found = _read_torch_save(path, fmt, loaded, notes)
    nets: dict[str, torch.nn.Module] = {}
    reports = []
    for net in NETWORKS:
        if net not in states or net not in wanted:
            continue
        module = (Discriminator if net == "D" else Generator)(configs[net])
        report = _fill(module, states[net], net)
        if net != "D" and "mapping.w_avg" in report.missing and fmt == "rosinality-pt":
            report = _derive_w_avg(module, report, notes)
        nets[net] = module.eval().requires_grad_(False)
        reports.append(report)
    if "G_ema" not in nets:
        raise AdvisorError(f"{path.name} has no G_ema generator")
    metadata = CheckpointMetadata(
        name=f"converted-{sha[:16]}",
        generator=configs["G_ema"],
        discriminator=configs.get("D") if "D" in nets else None,
        source_dataset=found.get("source_dataset"),
        provenance=Provenance(
            source_file=path.name,
            source_sha256=sha,
            importer=f"advisor.checkpoints.importers:{fmt}",
            imported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        ),
        extra={
            converted.REPORT_KEY: {
                "format": fmt,
                "source_networks": [n for n in NETWORKS if n in states],
                "networks": [r.to_dict() for r in reports],
                "notes": list(notes),
            }
        },
    )
    return Checkpoint(metadata=metadata, **nets), fmt, tuple(reports), tuple(notes)


def _report_from_json(
    doc: dict[str, Any],
) -> tuple[str, tuple[NetworkReport, ...], tuple[str, ...]]:
    """``(format, network reports, notes)`` from a cached conversion's report document."""
    try:
        reports = tuple(
            NetworkReport(
                network=str(r["network"]),
                matched=tuple(r["matched"]),
                missing=tuple(r["missing"]),
                unexpected=tuple(r["unexpected"]),
                derived=tuple(r["derived"]),
            )
            for r in doc["networks"]
        )
        return str(doc["format"]), reports, tuple(str(n) for n in doc["notes"])
    except (KeyError, TypeError) as err:
        raise AdvisorError(f"a cached conversion has an unreadable import report ({err})") from None


def import_checkpoint(
    path: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str],
    name: str,
    strict: bool = True,
    overwrite: bool = False,
    source_dataset: str | None = None,
    training_kimg: float | None = None,
    licence: str | None = None,
    description: str | None = None,
) -> ImportReport:
    """Convert a checkpoint file to advisor's format: ``out_dir/name.safetensors`` + ``.json``.

    ``name`` is also the checkpoint's name in the metadata. Refuses to replace existing files
    unless ``overwrite`` (:class:`OutputExists`, before the source is read). The pair is written
    completely or not at all (see :func:`save_checkpoint`). Returns the :class:`ImportReport`
    with ``output`` = the JSON path.
    """
    if not name or Path(name).name != name or name.startswith("."):
        raise AdvisorError(f"checkpoint name {name!r} must be a plain file name")
    target = Path(out_dir) / name
    existing = [p for p in checkpoint_paths(target) if os.path.lexists(p)]
    if existing and not overwrite:
        raise OutputExists(existing[0])
    for output in checkpoint_paths(target):  # a folder in the way, an unwritable parent...
        check_destination(output, overwrite=True)
    ckpt, report = read_checkpoint(
        path,
        name=name,
        strict=strict,
        source_dataset=source_dataset,
        training_kimg=training_kimg,
        licence=licence,
        description=description,
        cache=False,  # an explicit import writes its own copy
    )
    written = save_checkpoint(target, ckpt)
    return ImportReport(
        report.source, report.source_sha256, report.format, report.networks, report.notes, written
    )


def _fill(module: torch.nn.Module, source: dict[str, torch.Tensor], net: str) -> NetworkReport:
    """Copy ``source`` into ``module`` by NVlabs key; shape mismatches are errors."""
    target = module.state_dict()
    matched, unexpected, derived = [], [], []
    with torch.no_grad():
        for key, value in source.items():
            if key not in target:
                unexpected.append(key)
                continue
            if tuple(value.shape) != tuple(target[key].shape):
                raise AdvisorError(
                    f"{net}.{key} has shape {tuple(value.shape)[:MAX_TENSOR_DIMS]} in the source "
                    f"but {tuple(target[key].shape)} in the network its config describes"
                )
            if not value.is_floating_point():
                raise AdvisorError(
                    f"{net}.{key} has dtype {value.dtype} in the source; StyleGAN weights are "
                    "floating point"
                )
            if not torch.isfinite(value).all():
                raise AdvisorError(
                    f"{net}.{key} holds NaN or infinite values; the checkpoint is corrupt or "
                    "its training diverged"
                )
            target[key].copy_(value)
            matched.append(key)
    missing = []
    for key in target:
        if key in source:
            continue
        # Resampling filters are fixed by the config's taps, which came from the source.
        (derived if key.endswith("resample_filter") else missing).append(key)
    return NetworkReport(net, tuple(matched), tuple(missing), tuple(unexpected), tuple(derived))


def _derive_w_avg(module: Generator, report: NetworkReport, notes: list[str]) -> NetworkReport:
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        total = torch.zeros(module.config.w_dim, dtype=torch.float64)
        for start in range(0, W_AVG_SAMPLES, 1000):
            z = torch.randn(min(1000, W_AVG_SAMPLES - start), module.config.z_dim, generator=g)
            total += module.mapping(z)[:, 0].double().sum(0)
        module.mapping.w_avg.copy_((total / W_AVG_SAMPLES).float())
    notes.append(f"{report.network}: mapping.w_avg is the mean w of {W_AVG_SAMPLES} latents")
    missing = tuple(k for k in report.missing if k != "mapping.w_avg")
    return NetworkReport(
        report.network, report.matched, missing, report.unexpected,
        (*report.derived, "mapping.w_avg"),
    )  # fmt: skip


def _nvlabs_module(g_ema: PersistentRecord) -> str:
    synthesis = g_ema.children.get("synthesis")
    if synthesis is not None and (
        "input" in synthesis.children
        or any(c.class_name == "SynthesisInput" for c in synthesis.children.values())
    ):
        raise AdvisorError(
            "StyleGAN3 (config t/r) generators are not supported yet; advisor imports "
            "StyleGAN2-ADA pickles and StyleGAN3-repository pickles trained with --cfg=stylegan2"
        )
    # StyleGAN2-ADA's Generator takes synthesis_kwargs={...}; the StyleGAN3 repository's
    # networks_stylegan2.Generator takes them as top-level **kwargs.
    return (
        "training.networks"
        if "synthesis_kwargs" in g_ema.init_kwargs
        else ("training.networks_stylegan2")
    )


def _read_nvlabs_pickle(path: Path, notes: list[str]) -> tuple[dict, dict, dict]:
    data = load_nvlabs_pickle(path)
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentRecord):
        raise AdvisorError(f"{path.name} is a pickle but not an NVlabs snapshot (no G_ema)")
    try:
        return _nvlabs_networks(path, data, notes)
    except AdvisorError as err:  # the records' own checks do not know the file's name
        text = str(err)
        raise type(err)(text if text.startswith(path.name) else f"{path.name}: {text}") from None


def _nvlabs_networks(path: Path, data: dict, notes: list[str]) -> tuple[dict, dict, dict]:
    module = _nvlabs_module(data["G_ema"])
    states, configs = {}, {}
    for net in NETWORKS:
        record = data.get(net)
        if record is None:
            continue
        want = "Discriminator" if net == "D" else "Generator"
        if not isinstance(record, PersistentRecord) or record.class_name != want:
            raise AdvisorError(f"{path.name}: {net} is not an NVlabs {want}")
        if record.init_args:
            raise AdvisorError(f"{path.name}: {net} was built with positional args; unsupported")
        kind = DiscriminatorConfig if net == "D" else GeneratorConfig
        try:
            configs[net] = kind.from_nvlabs_kwargs(record.init_kwargs, module=module)
        except (ValueError, TypeError) as err:
            raise AdvisorError(f"{path.name}: {net} cannot be rebuilt: {err}") from None
        states[net] = _source_tensors(record.tensors(), f"{path.name}: {net}")
    found: dict[str, Any] = {}
    kwargs = data.get("training_set_kwargs")
    kwargs = to_plain(kwargs) if isinstance(kwargs, dict) else None
    if isinstance(kwargs, dict) and isinstance(kwargs.get("path"), str):
        found["source_dataset"] = Path(kwargs["path"]).name[:200]
    notes.append(f"NVlabs network module: {module}")
    return states, configs, found


def _torch_load(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            scan_torch_save(f, size=os.fstat(f.fileno()).st_size, what=path.name)
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except AdvisorError:
        raise
    except Exception as err:  # noqa: BLE001 - a refused or corrupt file is one line
        refused = torch_refused_global(err)
        if refused:
            raise AdvisorError(
                f"refused: {path.name} asks for {refused}, which advisor never loads "
                "(nothing was run)"
            ) from None
        detail = torch_load_detail(err) or "refused by torch's restricted loader; nothing was run"
        raise AdvisorError(f"{path.name} is not a readable torch.save file ({detail})") from None


def _classify_torch_save(path: Path, data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("g_ema"), dict):
        return "rosinality-pt"
    if isinstance(data, dict) and any(
        isinstance(data.get(k), dict) and "mapping.fc0.weight" in data[k] for k in ("G_ema", "G")
    ):
        return "nvlabs-state"
    raise AdvisorError(
        f"{path.name} is a torch.save file but neither a rosinality checkpoint ({{g, d, g_ema}}) "
        "nor NVlabs state dicts ({G, D, G_ema})"
    )


def _source_tensors(value: Any, where: str) -> dict[str, torch.Tensor]:
    """A source's state dict, checked: names are strings, values dense tensors inside their
    own storage (no overlapping views: a few stored bytes cannot claim a huge tensor)."""
    if not isinstance(value, dict):
        raise AdvisorError(f"{where} is not a state dict of tensors")
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise AdvisorError(f"{where} is not a state dict of tensors (names to tensors)")
        _check_geometry(tensor, f"{where}[{key[:80]!r}]")
    return dict(value)


def _check_geometry(tensor: torch.Tensor, where: str) -> None:
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
        raise AdvisorError(f"{where} is not a plain dense tensor ({tensor.layout})")
    if tensor.ndim > MAX_TENSOR_DIMS:
        raise AdvisorError(f"{where} has {tensor.ndim} dimensions")
    storage_bytes = tensor.untyped_storage().nbytes()
    if math.prod(tensor.shape) * tensor.element_size() > storage_bytes:
        raise AdvisorError(f"{where} claims more values than its storage holds (a forged view)")


def _read_torch_save(path: Path, fmt: str, data: Any, notes: list[str]) -> tuple[dict, dict, dict]:
    states: dict[str, dict[str, torch.Tensor]] = {}
    found: dict[str, Any] = {}
    if fmt == "rosinality-pt":
        for net, key in (("G_ema", "g_ema"), ("G", "g"), ("D", "d")):
            if data.get(key) is None:
                continue
            state = _source_tensors(data[key], f"{path.name}[{key!r}]")
            renamed = (discriminator_to_nvlabs if net == "D" else generator_to_nvlabs)(state)
            states[net] = renamed.tensors
            if renamed.unused:
                notes.append(f"{net}: unused rosinality tensors {', '.join(renamed.unused)}")
        avg = data.get("latent_avg")
        if isinstance(avg, torch.Tensor) and "G_ema" in states:
            _check_geometry(avg, f"{path.name}['latent_avg']")
            states["G_ema"]["mapping.w_avg"] = avg.reshape(-1)
            notes.append("G_ema: mapping.w_avg read from the file's latent_avg")
        conv_clamp = None  # rosinality never clamps activations
        notes.append("assumed rosinality defaults: lr_mlp 0.01, minibatch-stddev group 4")
    else:
        for net in NETWORKS:
            if data.get(net) is not None:
                states[net] = _source_tensors(data[net], f"{path.name}[{net!r}]")
        conv_clamp = 256  # NVlabs' training configs; not recorded in a bare state dict
        notes.append(
            "configs inferred from tensor shapes; assumed NVlabs training defaults "
            "conv_clamp 256, mapping lr multiplier 0.01, minibatch-stddev group 4"
        )
    if "G_ema" not in states and "G" in states:
        states["G_ema"] = states["G"]
        notes.append("no G_ema in the file: G is used as G_ema")
    if "G_ema" not in states:
        raise AdvisorError(f"{path.name} has no generator state")
    configs: dict[str, Any] = {}
    for net, state in states.items():
        if net == "D":
            configs[net] = infer_discriminator_config(state, conv_clamp=conv_clamp)
        else:
            configs[net] = infer_generator_config(state, conv_clamp=conv_clamp)
    return states, configs, found
