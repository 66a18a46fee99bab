"""``rank(target, ...)``: score every selected source against a target and order them.

The flow: cheap checks (options, registry names, selection) -> target features (image-set
cache) -> per source, on its device: resolve/download, sample features (sample cache) or
source-data features, metrics with intervals and paired replicates -> gather -> order by the
ranking metric -> tie decisions between neighbours -> :class:`Ranking`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from advisor.checkpoints.registry import Registry, load_registry
from advisor.errors import AdvisorError
from advisor.features.extract import SharedExtractor
from advisor.features.files import FeatureSet, is_feature_file, load_features
from advisor.features.pipeline import FeatureOptions, compute_features
from advisor.features.samples import seeds_text
from advisor.features.store import SampleFeatureStore
from advisor.images import ImageSet, TargetSize, open_image_set, target_size
from advisor.metrics import Estimate, MetricOptions
from advisor.metrics.classifier import Labels
from advisor.metrics.other import MEASURE_GROUP_OF
from advisor.metrics.swd import MIN_LEVEL_SIZE
from advisor.progress import Progress, default_progress, progress_task
from advisor.ranking.options import (
    DEFAULT_BY,
    Metric,
    RankOptions,
    Setting,
    SourceData,
    default_samples,
)
from advisor.ranking.result import Ranking, RankProtocol, RankRow, TargetInfo
from advisor.ranking.score import (
    ScoreContext,
    Scored,
    SharedResamples,
    Skip,
    score_generator,
    score_source,
)
from advisor.ranking.select import Candidate, select
from advisor.ranking.spread import default_devices, run_spread
from advisor.ranking.ties import decide_pair, order, tie_groups
from advisor.sampling import SAMPLER_VERSION


def rank(
    target: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    registry_files: Sequence[str | os.PathLike[str]] = (),
    checkpoints: Sequence[str] = (),
    tags: Sequence[str] = (),
    include_all: bool = False,
    source_data: Mapping[str, str | os.PathLike[str]] | None = None,
    n_samples: int | None = None,
    by: Metric = DEFAULT_BY,
    setting: Setting = "generated",
    extractor: str = "inception",
    extractor_weights: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    device: str | None = None,
    devices: Sequence[str] = (),
    batch_size: int = 32,
    metrics: MetricOptions | None = None,
    classes: int | None = None,
    min_count: int = 10,
    cache: bool = True,
    offline: bool | None = None,
    progress: bool = True,
    on_progress: Progress | None = None,
) -> Ranking:
    """Rank checkpoints (and source datasets) for fine-tuning on ``target``.

    Args:
        target: the target images (folder or .zip), or a feature file made with the same
            extractor.
        registry: the checkpoint registry (None: ``load_registry(registry_files)``).
        checkpoints: registry names or checkpoint files to rank (default: every registry
            entry at the target's resolution); ``include_all``: every entry.
        tags: rank the registry entries carrying any of these tags (e.g. ``("demo",)``).
        source_data: ``{name: folder, .zip or feature file}`` ranked in the ``source`` setting
            (None: the selected registry entries' ``source_features``).
        n_samples: samples per checkpoint (None: the target's image count clamped to
            1,000..10,000); every checkpoint uses the same seeds ``0 .. n-1``.
        by: the ranking metric (``fid`` and ``kid``: lower is better).
        setting: ``generated`` (samples vs target), ``source`` (source data vs target), ``both``.
        device: one device for everything; ``devices``: one worker per device (default: every
            visible CUDA device, else the CPU).
        metrics: k, bootstrap resamples, confidence (also the tie confidence), seed.
        classes, min_count: for ``by`` a classifier measure: k-means surrogate classes of an
            unlabelled target (None: its sub-folders), and mode coverage's m.
        progress: show download and progress bars; ``on_progress``: report progress to this
            callback instead of bars (see :mod:`advisor.progress`).

    Returns a :class:`Ranking` (rows best first). Sources that cannot be used are listed in
    ``skipped`` with one-line reasons. Raises :class:`AdvisorError` (one line) for bad options,
    unknown names, a target with fewer than k+1 usable images, or no usable source at all.
    """
    if device is not None and devices:
        raise AdvisorError("give device (one) or devices (several), not both")
    options = RankOptions(
        by=by,
        setting=setting,
        n_samples=n_samples,
        checkpoints=tuple(str(c) for c in checkpoints),
        tags=tuple(tags),
        include_all=include_all,
        source_data=tuple(
            SourceData(name=name, path=str(path)) for name, path in (source_data or {}).items()
        ),
        extractor=extractor,
        extractor_weights=extractor_weights,
        precision=precision,
        devices=(device,) if device is not None else tuple(devices),
        batch_size=batch_size,
        metrics=metrics if metrics is not None else MetricOptions(),
        classes=classes,
        min_count=min_count,
        cache=cache,
        offline=offline,
        progress=progress,
    )
    registry = registry if registry is not None else load_registry(list(registry_files))
    return rank_with(target, registry=registry, options=options, on_progress=on_progress)


def rank_with(
    target: str | os.PathLike[str],
    *,
    registry: Registry,
    options: RankOptions,
    on_progress: Progress | None = None,
) -> Ranking:
    """:func:`rank` with its options already made (the CLI and services call this).

    ``on_progress``: receives the target's feature extraction, each checkpoint's
    ``NAME sample+features`` task and any download (extractor weights, checkpoints; task
    ``download FILE``, bytes); None: tqdm bars when ``options.progress``.
    """
    if on_progress is None:
        on_progress = default_progress(options.progress)
    target = str(target)
    if not os.path.exists(target):
        raise AdvisorError(f"no such target folder or file: {target}")
    for source in options.source_data:
        if not os.path.exists(source.path):
            raise AdvisorError(
                f"--source-data {source.name}: no such folder or file: {source.path}"
            )
    image_set = None if is_feature_file(target) else open_image_set(target)
    size = target_size(image_set) if image_set is not None else None
    swd_size = _swd_resolution(target, size, options)
    candidates, selection = select(
        registry, options=options, resolution=size.resolution if size else None
    )
    devices = default_devices(options.devices)
    shared = SharedExtractor(
        options.extractor,
        weights=options.extractor_weights,
        precision=options.precision,
        offline=options.offline,
        progress=on_progress or False,
    )
    feature_options = FeatureOptions(
        extractor=options.extractor,
        weights=None if options.extractor_weights is None else str(options.extractor_weights),
        precision=options.precision,
        device=devices[0],
        batch_size=max(options.batch_size, 1),
        workers=options.workers,
        cache=options.cache,
        offline=options.offline,
        progress=options.progress,
    )

    def features_of(source: str | ImageSet) -> FeatureSet:
        if isinstance(source, str) and is_feature_file(source):
            loaded = load_features(source)
            if loaded.protocol is not None and loaded.protocol.differences(shared.protocol):
                raise AdvisorError(
                    f"{source} was made with another extractor protocol than this ranking's "
                    f"({options.extractor}, {options.precision})"
                )
            return loaded
        return compute_features(
            source, options=feature_options, extractor=shared, on_progress=on_progress
        )

    target_set = features_of(image_set if image_set is not None else target)
    k = max(options.metrics.k_pr, options.metrics.k_dc)
    if len(target_set) <= k:
        raise AdvisorError(
            f"{target}: {len(target_set)} usable image(s); the k-NN metrics need at least {k + 1}"
        )
    n = options.n_samples if options.n_samples is not None else default_samples(len(target_set))
    seeds = tuple(range(options.first_seed, options.first_seed + n))
    ctx = ScoreContext(
        target=target_set.features,
        seeds=seeds,
        extractor=shared,
        options=options,
        resamples=SharedResamples(options.metrics),
        store=SampleFeatureStore(),
        source_features=features_of,
        labels=_target_labels(target_set, options),
        target_images=None if swd_size is None else _images_at(target, swd_size),
        on_progress=on_progress,
    )
    jobs: list[Candidate | SourceData] = []
    if options.setting in ("generated", "both"):
        jobs += candidates
    no_features: list[Skip] = []
    if options.setting in ("source", "both"):
        jobs += list(options.source_data) or _registry_sources(candidates, no_features)
    results = run_spread(
        jobs,
        devices,
        _worker(ctx, on_progress),
        costs=[float((getattr(j, "resolution", None) or 256) ** 2) for j in jobs],
    )
    scored = [r for r in results if isinstance(r, Scored)]
    skipped = tuple(no_features) + tuple(r for r in results if isinstance(r, Skip))
    if not scored:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3]) or "nothing selected"
        raise AdvisorError(f"no usable checkpoint to rank ({reasons})")
    protocol = RankProtocol(
        by=options.by,
        setting=options.setting,
        n_samples=n,
        seeds=seeds_text(seeds),
        noise_mode=options.noise_mode,
        truncation_psi=float(options.truncation_psi),
        sampler_version=SAMPLER_VERSION,
        extractor=shared.protocol,
        metrics=options.metrics,
        devices=devices,
    )
    info = TargetInfo(
        source=target,
        n_images=len(target_set),
        n_skipped=len(target_set.skipped),
        resolution=size.resolution if size else None,
        sizes=size.sizes if size else (),
        from_cache=target_set.from_cache,
    )
    rows = ranked_rows(scored, by=options.by, lower_is_better=options.lower_is_better,
                       confidence=options.metrics.confidence, n=len(target_set))  # fmt: skip
    return Ranking(target=info, protocol=protocol, selection=selection, rows=rows, skipped=skipped)


def _registry_sources(candidates: list[Candidate], skips: list[Skip]) -> list[SourceData]:
    """The training-data features the registry gives for ``candidates`` (the ``source``
    setting without ``--source-data``); a candidate without any is appended to ``skips``."""
    sources = []
    for candidate in candidates:
        record = candidate.record
        if record is not None and record.source_features is not None:
            sources.append(SourceData(name=candidate.name, path=str(record.source_features)))
        else:
            reason = "its registry entry gives no source_features (pass --source-data NAME=DIR)"
            skips.append(Skip(name=candidate.name, setting="source", reason=reason))
    return sources


def _swd_resolution(target: str, size: TargetSize | None, options: RankOptions) -> int | None:
    """The side every image set is compared at when ranking by swd: the target's resolution
    (its most common size), so every row is measured on the same pyramid levels. None for
    another metric; :class:`AdvisorError` for a target SWD cannot use (cheap: headers only)."""
    if options.by != "swd":
        return None
    if size is None:
        raise AdvisorError(
            f"{target}: rank --by swd compares images, and the target is a feature file; give "
            "its image folder"
        )
    if size.resolution is None or size.resolution < MIN_LEVEL_SIZE:
        raise AdvisorError(
            f"{target}: SWD needs images of at least {MIN_LEVEL_SIZE} px, the target's are "
            f"{size.resolution or 'unreadable'}"
        )
    return size.resolution


def _images_at(target: str, resolution: int) -> np.ndarray:
    from advisor.other_measures import images_at

    return images_at(target, resolution)


def _target_labels(target: FeatureSet, options: RankOptions) -> Labels | None:
    """The target's classes when the ranking is by a classifier measure (else None);
    :class:`AdvisorError` for an unlabelled target without ``--classes``."""
    if MEASURE_GROUP_OF.get(options.by) != "classifier":
        return None
    from advisor.other_measures import target_labels

    return target_labels(
        target, classes=options.classes, seed=options.metrics.seed, cache=options.cache
    )


def _estimate(s: Scored, by: str) -> Estimate:
    """The ranking metric of one scored row: a default metric, or the other measure."""
    if by in MEASURE_GROUP_OF:
        found = s.other.estimate(by)
        assert found is not None, by  # _measure computes the measure ranked by
        return found
    return getattr(s.report, by)


def _worker(
    ctx: ScoreContext, on_progress: Progress | None
) -> Callable[[Candidate | SourceData, str], Scored | Skip]:
    def work(job: Candidate | SourceData, device: str) -> Scored | Skip:
        if isinstance(job, SourceData):
            return score_source(job.name, job.path, ctx, device)
        task = f"{job.name} sample+features"
        with progress_task(on_progress, task, total=len(ctx.seeds)) as advance:
            return score_generator(job, ctx, device, on_batch=advance)

    return work


def ranked_rows(
    scored: Sequence[Scored], *, by: str, lower_is_better: bool, confidence: float, n: int
) -> tuple[RankRow, ...]:
    """Order ``scored`` by ``by`` and decide ties between neighbours (see :mod:`.ties`)."""
    values = [_estimate(s, by).value for s in scored]
    names = [f"{s.name}\0{s.setting}" for s in scored]
    ranked = [scored[i] for i in order(values, names, lower_is_better=lower_is_better)]
    decisions = [
        decide_pair(
            _estimate(a, by).value,
            _estimate(b, by).value,
            a.replicates,
            b.replicates,
            confidence=confidence,
            n=n,
            method=a.pairing,
        )
        for a, b in zip(ranked[:-1], ranked[1:], strict=True)
    ]
    groups = tie_groups(decisions, len(ranked))
    rows = []
    for i, s in enumerate(ranked):
        tied = tuple(_label(o) for j, o in enumerate(ranked) if j != i and groups[j] == groups[i])
        rows.append(
            RankRow(
                checkpoint=_label(s),
                rank=i + 1,
                setting=s.setting,
                report=s.report,
                tied_with=tied,
                samples_to_separate=decisions[i].samples_to_separate
                if i < len(decisions)
                else None,
                n_candidate=s.n_candidate,
                from_cache=s.from_cache,
                device=s.device,
                timings=s.timings,
                preview=s.preview,
                other=s.other,
            )
        )
    return tuple(rows)


def _label(s: Scored) -> str:
    return s.name


def target_preview(target: str, count: int = 16, size: int | None = None) -> np.ndarray | None:
    """The first ``count`` target images as uint8 [m, 3, S, S] (for report grids), or None."""
    from advisor.images import iter_batches

    if is_feature_file(target):
        return None
    image_set = open_image_set(target)
    try:
        batch = next(iter(iter_batches(image_set, size=size or 64, batch_size=count, workers=0)))
    except (AdvisorError, StopIteration):
        return None
    return batch.images.numpy()
