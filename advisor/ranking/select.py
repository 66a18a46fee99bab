"""Which sources a ranking scores: the selection rules (the target's resolution is
:func:`advisor.images.target_size`).

Default: every registry entry whose resolution equals the target's (the side of its most common
image size). ``--checkpoint NAME`` (repeatable; a registry name or a checkpoint file) and
``--all`` override it; ``--tag T`` (repeatable) selects the registry entries carrying any of
the tags, at any resolution. In the ``source`` setting without ``--source-data`` the same rules
choose the registry entries whose training-data features (``source_features``) are ranked.
Every decision is recorded with its reason (:class:`Selection`), so the report says what was
ranked and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from advisor.checkpoints.format import is_advisor_checkpoint
from advisor.checkpoints.registry import CheckpointRecord, Registry
from advisor.errors import AdvisorError
from advisor.ranking.options import RankOptions


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One generator to score: a registry record, or a checkpoint file named directly."""

    name: str
    record: CheckpointRecord | None = None
    path: Path | None = None
    resolution: int | None = None


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What was selected and why: ``rule`` in words, ``selected`` (name, reason) in order,
    ``excluded`` (name, reason) for registry entries left out."""

    rule: str
    selected: tuple[tuple[str, str], ...]
    excluded: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "selected": [{"name": n, "reason": r} for n, r in self.selected],
            "excluded": [{"name": n, "reason": r} for n, r in self.excluded],
        }


def select(
    registry: Registry, *, options: RankOptions, resolution: int | None
) -> tuple[list[Candidate], Selection]:
    """The generators to score under ``options``; cheap (no download, no hashing).

    Raises :class:`AdvisorError` for an unknown name, a ``--tag`` no entry carries, or a
    default selection that finds nothing at the target's resolution.
    """
    if options.setting == "source" and options.source_data:
        sources = tuple((s.name, f"--source-data {s.path}") for s in options.source_data)
        return [], Selection(rule="source data only (--setting source)", selected=sources)
    if options.tags:
        wanted = set(options.tags)
        candidates = [_from_record(r) for r in registry if wanted & set(r.tags)]
        if not candidates:
            known = sorted({t for r in registry for t in r.tags})
            raise AdvisorError(
                f"no registry entry is tagged {', '.join(sorted(wanted))}; tags in the "
                f"registry: {', '.join(known) or '(none)'}"
            )
        chosen = tuple(
            (c.name, f"tagged {', '.join(sorted(wanted & set(c.record.tags)))}")
            for c in candidates
            if c.record is not None
        )
        return candidates, Selection(rule=f"--tag {' '.join(options.tags)}", selected=chosen)
    if options.checkpoints:
        candidates = [_named(spec, registry) for spec in dict.fromkeys(options.checkpoints)]
        chosen = tuple((c.name, "named with --checkpoint") for c in candidates)
        return candidates, Selection(rule="--checkpoint", selected=chosen)
    if options.include_all:
        candidates = [_from_record(r) for r in registry]
        chosen = tuple((c.name, "--all") for c in candidates)
        return candidates, Selection(rule="every registry entry (--all)", selected=chosen)
    if resolution is None:
        raise AdvisorError(
            "the target's resolution is unknown (no readable image header); choose checkpoints "
            "with --checkpoint NAME or --all"
        )
    candidates, excluded = [], []
    for record in registry:
        if record.resolution == resolution:
            candidates.append(_from_record(record))
        else:
            excluded.append((record.name, f"{record.resolution} px, the target is {resolution} px"))
    rule = f"registry entries at the target's resolution ({resolution} px)"
    if not candidates and options.setting == "generated":
        raise AdvisorError(
            f"no registry checkpoint is at the target's resolution ({resolution} px; the "
            f"registry has {_resolutions(registry)}); pass --all, --checkpoint NAME or "
            "--registry FILE"
        )
    chosen = tuple((c.name, f"resolution {resolution} px = the target's") for c in candidates)
    return candidates, Selection(rule=rule, selected=chosen, excluded=tuple(excluded))


def _from_record(record: CheckpointRecord) -> Candidate:
    return Candidate(name=record.name, record=record, resolution=record.resolution)


def _named(spec: str, registry: Registry) -> Candidate:
    path = Path(spec).expanduser()
    if spec in registry and not (path.is_file() or is_advisor_checkpoint(path)):
        return _from_record(registry.get(spec))
    if path.is_file() or is_advisor_checkpoint(path):
        name = path.stem if path.suffix in (".json", ".safetensors", ".pkl", ".pt") else path.name
        return Candidate(name=name, path=path)
    raise AdvisorError(
        f"--checkpoint {spec!r} is neither a registry name nor a checkpoint file; known names: "
        f"{', '.join(registry.names()) or '(none)'}"
    )


def _resolutions(registry: Registry) -> str:
    found = sorted({r.resolution for r in registry})
    return ", ".join(f"{r} px" for r in found) or "no entries"
