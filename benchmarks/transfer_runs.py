"""The evidence benchmark's parts that do not measure anything: its configuration, its JSON
document (written atomically, resumed, never mixed across configurations) and its resumable
fine-tunes (one advisor run folder each). ``benchmarks/transfer.py`` is the benchmark.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # imported by the script: make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from advisor.cache import atomic_write_bytes, json_safe  # noqa: E402
from advisor.checkpoints.registry import (  # noqa: E402
    CheckpointRecord,
    Registry,
    load_registry,
    read_registry_file,
)
from advisor.errors import AdvisorError, one_line  # noqa: E402
from advisor.finetuning.events import TrainingEvent  # noqa: E402
from advisor.finetuning.options import FinetuneOptions  # noqa: E402
from advisor.ranking.probe_report import ProbeOptions  # noqa: E402
from benchmarks.evidence import SCRATCH  # noqa: E402

SCHEMA = "advisor-transfer-benchmark/1"
DEFAULT_BUDGET_KIMG = 8.0
DEFAULT_METRIC_EVERY = 2.0
DEFAULT_METRIC_SAMPLES = 500
DEFAULT_PROBE_SAMPLES = 250
DEFAULT_EXTRACTOR = "efficientnet-lite0"
Log = Callable[[str], None]


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True, kw_only=True)
class BenchmarkOptions:
    """What one benchmark run measures; validated on construction."""

    budget_kimg: float = DEFAULT_BUDGET_KIMG
    metric_every: float = DEFAULT_METRIC_EVERY
    metric_samples: int = DEFAULT_METRIC_SAMPLES
    snapshot_every: float | None = None  # None: metric_every
    probe_samples: int = DEFAULT_PROBE_SAMPLES
    extractor: str = DEFAULT_EXTRACTOR
    rank_samples: int | None = None
    classes: int | None = 10
    batch: int | None = None
    seed: int = 0
    device: str = "cpu"
    offline: bool = True
    check_factor: float = 4.0

    def __post_init__(self) -> None:
        if not self.metric_every <= self.budget_kimg:
            raise AdvisorError("--metric-every must not exceed --budget-kimg")
        if not self.check_factor > 1:
            raise AdvisorError("--check-factor must be > 1")
        self.finetune()  # FinetuneOptions checks the rest (one-line errors)

    def finetune(self) -> FinetuneOptions:
        """The fine-tune recipe every run shares (inits set per run)."""
        return FinetuneOptions(
            kimg=self.budget_kimg,
            metric_every=self.metric_every,
            metric_samples=self.metric_samples,
            snapshot_every=self.snapshot_every or self.metric_every,
            extractor=self.extractor,
            batch=self.batch,
            seed=self.seed,
            metric="fid",
        )

    @property
    def evaluations(self) -> int:
        """Evaluations in one full run: kimg 0, every ``metric_every``, and the end."""
        return math.ceil(self.budget_kimg / self.metric_every - 1e-9) + 1

    @property
    def full_run_kimg(self) -> float:
        """One full fine-tune's cost in training kimg, evaluations included (see
        :mod:`advisor.ranking.probe`): the probes' budget."""
        from advisor.ranking.probe_report import EVAL_IMAGE_COST

        return self.budget_kimg + self.evaluations * self.metric_samples * EVAL_IMAGE_COST / 1000

    def probe(self, n_sources: int) -> ProbeOptions:
        return ProbeOptions(
            budget_kimg=self.full_run_kimg,
            top=max(2, n_sources),
            metric="fid",
            metric_samples=self.probe_samples,
            finetune=self.finetune(),
        )


@dataclass(frozen=True, kw_only=True)
class Source:
    """One zoo source: registry record and local checkpoint file."""

    name: str
    record: CheckpointRecord
    path: Path
    sha256: str


def select_zoo(zoo: str | None, tag: str | None, *, offline: bool) -> tuple[Registry, list[Source]]:
    """The zoo: every entry of the ``zoo`` registry file (or the merged registries when None),
    keeping those tagged ``tag`` when given (default without ``zoo``: ``demo``)."""
    from advisor.checkpoints.fetch import pull
    from advisor.features.samples import checkpoint_sha256

    records = read_registry_file(zoo) if zoo else list(load_registry())
    tag = tag if tag is not None or zoo else "demo"
    if tag is not None:
        records = [r for r in records if tag in getattr(r, "tags", ())]
    if len(records) < 2:
        where = f"{zoo}" if zoo else "the registry"
        raise AdvisorError(
            f"the zoo needs at least two checkpoints; {where} has {len(records)}"
            + (f" tagged {tag!r}" if tag else "")
            + " (pass --zoo REGISTRY or --tag TAG)"
        )
    sources = []
    for record in records:
        path = pull(record, offline=offline, progress=sys.stderr.isatty())
        sources.append(
            Source(name=record.name, record=record, path=path, sha256=checkpoint_sha256(path))
        )
    if SCRATCH in {s.name for s in sources}:
        raise AdvisorError(f"a zoo entry is called {SCRATCH!r}, the baseline's name")
    return Registry({r.name: r for r in records}), sources


def config_of(
    target: Path,
    target_hash: str,
    n_images: int,
    sources: Sequence[Source],
    options: BenchmarkOptions,
    source_data: Mapping[str, str],
) -> dict[str, Any]:
    """What decides the numbers: a JSON made with another config is refused, not mixed."""
    return {
        "schema": SCHEMA,
        "target": {"path": str(target), "content_sha256": target_hash, "n_images": n_images},
        "zoo": [{"name": s.name, "sha256": s.sha256, "path": str(s.path)} for s in sources],
        "finetune": options.finetune().to_dict(),
        "probe": options.probe(len(sources)).to_dict(),
        "rank": {
            "extractor": options.extractor,
            "n_samples": options.rank_samples,
            "classes": options.classes,
        },
        "source_data": dict(source_data),
        "scratch_architecture": sources[0].name,
    }


def config_key(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- the JSON
def save(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` atomically (a kill leaves the previous complete file)."""
    text = json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def load_doc(path: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """The results so far for ``config``, or a new document; another config is an error."""
    if not path.is_file():
        return {"schema": SCHEMA, "config": dict(config)}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AdvisorError(
            f"{path} cannot be read as results ({one_line(str(err))[:100]})"
        ) from None
    if not isinstance(doc, dict) or doc.get("config") != json_safe(config):
        raise AdvisorError(
            f"{path} holds results of another configuration (target, zoo or options); "
            "write to another --out"
        )
    return doc


# --------------------------------------------------------------------------- fine-tunes
@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One fine-tune of the benchmark: its key, checkpoint, inits, length and folder.

    ``continue_from``: a finished shorter run of the same recipe to copy and continue (the
    budget check), since resuming is exact."""

    key: str
    kind: str
    source: str
    checkpoint: Path
    g_init: str
    d_init: str
    kimg: float
    folder: Path
    continue_from: Path | None = None


def run_finished(folder: Path, kimg: float) -> bool:
    summary = folder / "summary.json"
    if not summary.is_file():
        return False
    doc = json.loads(summary.read_text())
    return doc.get("finished") is True and float(doc.get("kimg", 0)) >= kimg - 1e-9


def ensure_run(
    spec: RunSpec, recipe: FinetuneOptions, target: Path, *, device: str, log: Log
) -> dict[str, Any]:
    """Bring the run to ``spec.kimg`` (skip, resume, continue or start) and return its record."""
    from advisor.finetuning.run import resume_finetune, run_finetune

    folder = spec.folder
    latest = folder / "snapshots" / "latest.json"
    progress = _progress(spec.key, spec.kimg, log)
    if run_finished(folder, spec.kimg):
        log(f"{spec.key}: finished, skipped")
    elif latest.is_file():
        log(f"{spec.key}: resuming from {json.loads(latest.read_text())['nimg'] / 1000:g} kimg")
        resume_finetune(folder, kimg=spec.kimg, device=device, progress=progress)
    else:
        if folder.exists():  # started but killed before its first snapshot
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        if spec.continue_from is not None:
            log(f"{spec.key}: continuing a copy of {spec.continue_from.name} to {spec.kimg:g} kimg")
            partial = folder.with_name(folder.name + ".copying")
            if partial.exists():
                shutil.rmtree(partial)
            shutil.copytree(spec.continue_from, partial)
            os.replace(partial, folder)
            resume_finetune(folder, kimg=spec.kimg, device=device, progress=progress)
        else:
            log(f"{spec.key}: fine-tuning {spec.kimg:g} kimg (G {spec.g_init}, D {spec.d_init})")
            options = dataclasses.replace(
                recipe, g_init=spec.g_init, d_init=spec.d_init, kimg=spec.kimg
            )
            run_finetune(
                spec.checkpoint,
                target,
                run_dir=folder,
                options=options,
                device=device,
                offline=True,
                progress=progress,
            )
    return run_record(spec)


def _progress(key: str, kimg: float, log: Log) -> Callable[[TrainingEvent], None]:
    def report(event: TrainingEvent) -> None:
        if event.kind == "tick":
            speed = event.values.get("s_per_kimg", float("nan"))
            log(f"  {key}: {event.kimg:.1f}/{kimg:g} kimg, {speed:.1f} s/kimg")
        else:
            log(f"  {key}: fid {event.values.get('fid', float('nan')):.2f} at {event.kimg:g} kimg")

    return report


def run_record(spec: RunSpec) -> dict[str, Any]:
    """The run as the JSON records it: curves, final and best values, convergence, cost."""
    from advisor.runs import load_run

    run = load_run(spec.folder)
    curves = [{"kimg": r.kimg, "metrics": dict(r.metrics)} for r in run.metrics]
    final = dict(run.metrics[-1].metrics) if run.metrics else {}
    kimg, fid = run.curve("fid")
    finite = [(v, k) for k, v in zip(kimg, fid, strict=True) if math.isfinite(v)]
    best = min(finite) if finite else None
    return {
        "kind": spec.kind,
        "source": spec.source,
        "g_init": spec.g_init,
        "d_init": spec.d_init,
        "kimg": spec.kimg,
        "run_dir": str(spec.folder),
        "finished": run.summary.finished,
        "final": final,
        "best_fid": None if best is None else {"value": best[0], "kimg": best[1]},
        "convergence": run.summary.to_dict(),
        "wall_s": run.summary.wall_s,
        "s_per_kimg": run.summary.s_per_kimg,
        "curves": curves,
    }
