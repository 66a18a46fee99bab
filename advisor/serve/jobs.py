"""Job parameters: typed, validated and confined before a job is queued.

A job is ``{"kind": "compare" | "rank" | "finetune", "params": {...}}``. Each kind's params are
a frozen dataclass here (:class:`CompareParams`, :class:`RankParams`, :class:`FinetuneParams`)
made by :func:`parse_params`, which refuses unknown keys and values of the wrong JSON type, then
builds the library's own options (:class:`~advisor.compare.CompareRequest`,
:class:`~advisor.ranking.RankOptions`, :class:`~advisor.finetuning.FinetuneOptions`) so that every
bad value is the library's own one-line :class:`AdvisorError` before anything is queued.

Paths in params go through :class:`Roots`: a relative path is taken inside the server's data
folder; an absolute one must lie inside one of the allowed roots; ``..`` components, control
characters and symlinks that lead out of the roots are refused (:func:`advisor.paths.confined`).
Checkpoint params may also be registry names. The stored params hold the resolved absolute
paths, so a worker never interprets a user's path again.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from advisor.compare import CompareRequest
from advisor.errors import AdvisorError
from advisor.features.pipeline import ExtractionOptions
from advisor.metrics import MetricOptions
from advisor.paths import confined
from advisor.ranking.options import Metric, RankOptions, Setting

#: Longest string accepted in any parameter (paths included).
MAX_TEXT = 4096
#: Most checkpoints one rank job may name.
MAX_ITEMS = 1000


@dataclass(frozen=True, kw_only=True)
class Roots:
    """Where job paths may point: ``data`` (relative paths are taken there) and ``allowed``
    (absolute paths must lie inside one of them; ``data`` is always one)."""

    data: Path
    allowed: tuple[Path, ...] = ()

    def all(self) -> tuple[Path, ...]:
        return (self.data, *(a for a in self.allowed if a != self.data))

    def confine(self, value: str, *, what: str, must_exist: bool = True) -> str:
        """``value`` as an absolute path inside the roots (symlinks followed), or AdvisorError."""
        if not isinstance(value, str) or not value:
            raise AdvisorError(f"{what} must be a non-empty path")
        if value.startswith("/"):
            found = None
            for root in self.all():
                relative = _relative_to(PurePosixPath(value), root)
                if relative is not None:
                    found = root if relative == "." else confined(root, relative, what=what)
                    break
            if found is None:
                raise AdvisorError(f"{what} {value!r} is outside the server's allowed paths")
            path = Path(found)
        else:
            path = confined(self.data, value, what=what)
        if must_exist and not path.exists():
            raise AdvisorError(f"{what}: no such file or folder on the server: {value}")
        return str(path)


def _relative_to(path: PurePosixPath, root: Path) -> str | None:
    """``path`` relative to ``root`` (as given or resolved) when it lies under it, else None."""
    for base in dict.fromkeys((PurePosixPath(root), PurePosixPath(root.resolve()))):
        try:
            rest = path.relative_to(base)
        except ValueError:
            continue
        return str(rest)
    return None


# --------------------------------------------------------------------------- params
# Each params class takes its defaults from the library's own options (class attributes of
# those frozen dataclasses), so a service job and the same call through the CLI or the Python
# API agree without a second list of numbers to keep in step.
@dataclass(frozen=True, kw_only=True)
class CompareParams:
    """``advisor compare REFERENCE CANDIDATE``: two image folders, zips or feature files.

    ``metrics`` is ``advisor compare --metrics``: ``default`` (FID, KID, precision, recall,
    density, coverage), ``all`` (adds ``is``, ``swd`` and ``classifier``), or a comma list;
    ``classes`` and ``min_count`` are the classifier measures' ``--classes`` and ``--min-count``.
    """

    reference: str
    candidate: str
    extractor: str | None = CompareRequest.extractor
    precision: str | None = CompareRequest.precision
    batch_size: int = ExtractionOptions.batch_size
    k_pr: int = CompareRequest.k_pr
    k_dc: int = CompareRequest.k_dc
    kid_subsets: int = CompareRequest.kid_subsets
    kid_subset_size: int = CompareRequest.kid_subset_size
    bootstrap: int | None = CompareRequest.bootstrap
    confidence: float = CompareRequest.confidence
    seed: int = CompareRequest.seed
    metrics: str = "default"
    classes: int | None = CompareRequest.classes
    min_count: int = CompareRequest.min_count

    def request(self, device: str = "cpu") -> Any:
        """The library's :class:`CompareRequest` (validates every value)."""
        from advisor.metrics.other import parse_measures

        try:
            groups = parse_measures(self.metrics)
        except ValueError as err:
            raise AdvisorError(str(err)) from None

        return CompareRequest(
            reference=self.reference,
            candidate=self.candidate,
            extractor=self.extractor,
            precision=self.precision,
            extraction=ExtractionOptions(
                device=device, batch_size=self.batch_size, workers=0, progress=False
            ),
            k_pr=self.k_pr,
            k_dc=self.k_dc,
            kid_subsets=self.kid_subsets,
            kid_subset_size=self.kid_subset_size,
            bootstrap=self.bootstrap,
            confidence=self.confidence,
            seed=self.seed,
            metrics=groups,
            classes=self.classes,
            min_count=self.min_count,
        )


@dataclass(frozen=True, kw_only=True)
class RankParams:
    """``advisor rank TARGET``: registry names or checkpoint files, ranked for a target.

    ``setting``, ``source_data`` (``NAME=PATH`` entries: a folder, .zip or feature file of a
    source's training data), ``by``, ``classes`` and ``min_count`` are ``advisor rank``'s
    ``--setting``, ``--source-data``, ``--by``, ``--classes`` and ``--min-count``.
    """

    target: str
    checkpoints: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    include_all: bool = RankOptions.include_all
    setting: Setting = RankOptions.setting
    source_data: tuple[str, ...] = ()
    by: Metric = RankOptions.by
    classes: int | None = RankOptions.classes
    min_count: int = RankOptions.min_count
    n_samples: int | None = RankOptions.n_samples
    extractor: str = RankOptions.extractor
    precision: str = RankOptions.precision
    batch_size: int = RankOptions.batch_size
    k_pr: int = MetricOptions.k_pr
    k_dc: int = MetricOptions.k_dc
    bootstrap: int = MetricOptions.bootstrap
    confidence: float = MetricOptions.confidence
    seed: int = MetricOptions.seed

    def options(self, device: str | None = None) -> Any:
        """The library's :class:`RankOptions` (validates every value)."""
        from advisor.ranking import SourceData

        metrics = MetricOptions.from_user(
            k_pr=self.k_pr,
            k_dc=self.k_dc,
            bootstrap=self.bootstrap,
            confidence=self.confidence,
            seed=self.seed,
        )
        return RankOptions(
            by=self.by,
            setting=self.setting,
            n_samples=self.n_samples,
            checkpoints=self.checkpoints,
            tags=self.tags,
            include_all=self.include_all,
            source_data=tuple(SourceData.parse(text) for text in self.source_data),
            extractor=self.extractor,
            precision=self.precision,
            devices=() if device is None else (device,),
            batch_size=self.batch_size,
            workers=0,
            metrics=metrics,
            classes=self.classes,
            min_count=self.min_count,
            progress=False,
        )


@dataclass(frozen=True, kw_only=True)
class FinetuneParams:
    """``advisor finetune CHECKPOINT TARGET``: ``options`` are :class:`FinetuneOptions` fields
    (given flat beside ``checkpoint`` and ``target`` in the request); ``devices`` > 1 runs it
    as one torchrun group of that many processes, one per device (see :func:`device_group`)."""

    checkpoint: str
    target: str
    devices: int = 1
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def finetune_options(self) -> Any:
        from advisor.finetuning.options import FinetuneOptions

        return FinetuneOptions.from_dict(self.options)


PARAMS: dict[str, type] = {
    "compare": CompareParams,
    "rank": RankParams,
    "finetune": FinetuneParams,
}


#: Finetune parameters that are not :class:`FinetuneOptions` fields.
FINETUNE_KEYS = ("checkpoint", "target", "devices")


def device_group(free: Sequence[str], n: int) -> tuple[str, ...] | None:
    """``n`` of the ``free`` device slots for one job, or None when that many are not free.

    One device: the first free slot. Several (a torchrun group, one process per device):
    distinct GPUs (NCCL cannot put two processes of a group on one GPU), else CPU slots (gloo
    processes share the CPU), never a mix.
    """
    if n == 1:
        return (free[0],) if free else None
    gpus = tuple(dict.fromkeys(d for d in free if d.startswith("cuda")))
    cpus = tuple(d for d in free if d == "cpu")
    for pool in (gpus, cpus):
        if len(pool) >= n:
            return pool[:n]
    return None


def devices_wanted(kind: str, params: dict[str, Any]) -> int:
    """How many device slots a stored job needs (a finetune's ``devices``, else 1)."""
    return int(params.get("devices", 1)) if kind == "finetune" else 1


def parse_params(
    kind: str,
    params: object,
    *,
    roots: Roots,
    registry_names: Sequence[str] = (),
    devices: Sequence[str] = ("cpu",),
) -> CompareParams | RankParams | FinetuneParams:
    """Validate ``params`` of a ``kind`` job completely (types, ranges, names, paths).

    Raises :class:`AdvisorError` with one line naming the first bad parameter, in the
    service's words (:func:`service_words`). Paths come back absolute and confined; checkpoint
    names in ``registry_names`` are kept as names; a finetune's ``devices`` must fit the
    server's ``devices`` (see :func:`device_group`).
    """
    try:
        if kind not in PARAMS:
            raise AdvisorError(f"unknown job kind {kind!r}; choose one of {', '.join(PARAMS)}")
        if not isinstance(params, dict):
            raise AdvisorError("params must be a JSON object")
        if kind == "finetune":
            return _parse_finetune(
                params, roots=roots, registry_names=registry_names, devices=devices
            )
        parsed = _typed(PARAMS[kind], params)
        if isinstance(parsed, CompareParams):
            parsed = dataclasses.replace(
                parsed,
                reference=roots.confine(parsed.reference, what="reference"),
                candidate=roots.confine(parsed.candidate, what="candidate"),
            )
            parsed.request()
            return parsed
        assert isinstance(parsed, RankParams)
        if len(parsed.checkpoints) > MAX_ITEMS:
            raise AdvisorError(f"checkpoints: at most {MAX_ITEMS} per job")
        parsed = dataclasses.replace(
            parsed,
            target=roots.confine(parsed.target, what="target"),
            checkpoints=tuple(
                _checkpoint(c, roots=roots, registry_names=registry_names)
                for c in parsed.checkpoints
            ),
            source_data=tuple(_source_data(text, roots=roots) for text in parsed.source_data),
        )
        parsed.options()
        return parsed
    except AdvisorError as err:
        raise AdvisorError(service_words(str(err), kind)) from None


def _source_data(text: str, *, roots: Roots) -> str:
    """A ``NAME=PATH`` source-data entry with its path confined (stored absolute)."""
    from advisor.ranking import SourceData

    try:
        source = SourceData.parse(text)
    except AdvisorError:
        raise AdvisorError(f"source_data entries are NAME=PATH, got {text!r}") from None
    path = roots.confine(source.path, what=f"source_data {source.name!r}")
    return f"{source.name}={path}"


def _parse_finetune(
    params: dict[str, Any],
    *,
    roots: Roots,
    registry_names: Sequence[str],
    devices: Sequence[str],
) -> FinetuneParams:
    from advisor.finetuning.options import FinetuneOptions

    known = {f.name for f in dataclasses.fields(FinetuneOptions)}
    rest = {k: v for k, v in params.items() if k not in FINETUNE_KEYS}
    unknown = sorted(set(rest) - known)
    if unknown:
        raise AdvisorError(
            f"unknown finetune parameter {unknown[0]!r}; known: {', '.join(FINETUNE_KEYS)}, "
            f"{', '.join(sorted(known))}"
        )
    for name in ("checkpoint", "target"):
        if name not in params:
            raise AdvisorError(f"finetune needs the parameter {name!r}")
        _check_text(name, params[name])
    options = _typed(FinetuneOptions, rest)
    n = _coerce("devices", params.get("devices", 1), int)
    if n < 1 or device_group(devices, n) is None:
        most = max(k for k in range(1, len(devices) + 1) if device_group(devices, k))
        raise AdvisorError(
            f"devices must be 1..{most} on this server (its devices: {', '.join(devices)}), got {n}"
        )
    if options.batch is not None and options.batch % n:
        raise AdvisorError(f"batch {options.batch} does not split over {n} devices")
    return FinetuneParams(
        checkpoint=_checkpoint(params["checkpoint"], roots=roots, registry_names=registry_names),
        target=roots.confine(params["target"], what="target"),
        devices=n,
        options=options.to_dict(),
    )


def _checkpoint(value: str, *, roots: Roots, registry_names: Sequence[str]) -> str:
    _check_text("checkpoint", value)
    if value in registry_names:
        return value
    if "/" not in value and not value.endswith((".safetensors", ".json", ".pkl", ".pt", ".pth")):
        known = ", ".join(sorted(registry_names)[:20]) or "none"
        raise AdvisorError(
            f"checkpoint {value!r} is neither a registry name (known: {known}) nor a file path"
        )
    return roots.confine(value, what="checkpoint")


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise AdvisorError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise AdvisorError(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _typed(cls: type, params: dict[str, Any]) -> Any:
    """``cls(**params)`` after checking every key is a field and every value has its JSON type
    (int for int, number for float, bool for bool, string, list of strings for tuples)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise AdvisorError(f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(fields))}")
    values: dict[str, Any] = {}
    for name, value in params.items():
        values[name] = _coerce(name, value, hints[name])
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise AdvisorError(f"missing parameter {missing[0]!r}")
    return cls(**values)


def _coerce(name: str, value: object, hint: Any) -> Any:
    """``value`` checked against ``hint`` (a JSON list becomes a tuple)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and type(None) in typing.get_args(hint):
            return None
        return _coerce(name, value, options[0])
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            allowed = ", ".join(map(str, typing.get_args(hint)))
            raise AdvisorError(f"{name} must be one of {allowed}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise AdvisorError(f"{name} must be a list of strings (at most {MAX_ITEMS})")
        return tuple(_check_text(name, v) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise AdvisorError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise AdvisorError(f"{name} must be an integer, got {value!r}")
        return value
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise AdvisorError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        return _check_text(name, value)
    raise AdvisorError(f"{name}: unsupported value {value!r}")  # pragma: no cover


def to_json(params: CompareParams | RankParams | FinetuneParams) -> dict[str, Any]:
    """JSON-ready params, as stored (finetune options flat beside checkpoint and target)."""
    if isinstance(params, FinetuneParams):
        return {"checkpoint": params.checkpoint, "target": params.target,
                "devices": params.devices, **params.options}  # fmt: skip
    out = dataclasses.asdict(params)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def from_json(kind: str, stored: dict[str, Any]) -> CompareParams | RankParams | FinetuneParams:
    """Stored params back to their dataclass (already validated: no path checks again)."""
    if kind == "finetune":
        rest = {k: v for k, v in stored.items() if k not in FINETUNE_KEYS}
        return FinetuneParams(checkpoint=stored["checkpoint"], target=stored["target"],
                              devices=stored.get("devices", 1), options=rest)  # fmt: skip
    cls = PARAMS[kind]
    hints = typing.get_type_hints(cls)
    return cls(
        **{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in stored.items()}
    )


# --------------------------------------------------------------------------- messages
#: Command-line flags whose job parameter is not the flag's own name with ``_`` for ``-``.
_RENAMED_FLAGS = {"tag": "tags", "all": "include_all"}
#: A quoted value in a message (a path, a name as the user sent it): never rewritten.
_QUOTED = re.compile(r"""(?<!\w)('[^']*'|"[^"]*")(?!\w)""")
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)(?![\w=-])")


def _job_parameters(kind: str | None) -> frozenset[str]:
    from advisor.finetuning.options import FinetuneOptions

    kinds = [kind] if kind in PARAMS else list(PARAMS)
    names = {f.name for k in kinds for f in dataclasses.fields(PARAMS[k])}
    if "finetune" in kinds:
        names |= {f.name for f in dataclasses.fields(FinetuneOptions)}
    return frozenset(names)


def service_words(message: str, kind: str | None = None) -> str:
    """A library message in the service's words: a ``--flag`` that is a parameter of a
    ``kind`` job (None: of any job) becomes that parameter's name (``--source-data`` ->
    ``source_data``; ``--checkpoint`` -> ``checkpoints`` for rank, ``checkpoint`` for
    finetune). Quoted values and other programs' flags (``--cfg=stylegan2``) are kept."""
    known = _job_parameters(kind)

    def word(match: re.Match[str]) -> str:
        flag = match.group(1)
        name = _RENAMED_FLAGS.get(flag, flag.replace("-", "_"))
        if flag == "checkpoint" and "checkpoints" in known and "checkpoint" not in known:
            name = "checkpoints"
        return name if name in known else match.group(0)

    parts = _QUOTED.split(message)  # odd positions: the quoted values, kept as they are
    return "".join(p if i % 2 else _FLAG.sub(word, p) for i, p in enumerate(parts))
