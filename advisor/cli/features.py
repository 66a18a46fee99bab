"""``advisor features`` and ``advisor compare``: images to features, and two sets compared."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from advisor.cli.options import (
    FeatureFlags,
    check_source,
    classifier_options,
    echo_json,
    feature_options,
    json_option,
    metric_options,
    overwrite_option,
    report_skips,
    seed_option,
)

if TYPE_CHECKING:
    from advisor.compare import CompareResult

#: How each protocol option is spelled on the command line.
_PROTOCOL_FLAGS = {
    "extractor": "--extractor",
    "precision": "--precision",
    "weights": "--extractor-weights",
}


@click.command("features")
@click.argument("source")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="Output .npz file."
)
@overwrite_option("Replace an existing --out file.")
@feature_options
def features_command(
    source: str,
    out: str,
    overwrite: bool,
    extractor: str | None,
    extractor_weights: str | None,
    precision: str | None,
    device: str,
    batch_size: int,
    workers: int | None,
    strict: bool,
    no_cache: bool,
    offline: bool | None,
    quiet: bool,
) -> None:
    """Compute features of an image folder or .zip and write them to a .npz file.

    The file holds ``features`` (N x D float32) and ``meta`` (JSON: protocol, image names).
    It is written whole or not at all; an existing file is replaced only with --overwrite.
    """
    from advisor.cache import check_destination
    from advisor.features.pipeline import compute_features, save_features

    flags = FeatureFlags(
        extractor=extractor, extractor_weights=extractor_weights, precision=precision,
        device=device, batch_size=batch_size, workers=workers, strict=strict, no_cache=no_cache,
        offline=offline, quiet=quiet,
    )  # fmt: skip
    check_source(source)
    if not out.lower().endswith(".npz"):
        raise click.UsageError(f"--out must end in .npz, got {out}")
    check_destination(out, overwrite=overwrite)  # before any image is decoded
    feature_set = compute_features(
        source, options=flags.feature_options(), on_progress=flags.progress()
    )
    report_skips(feature_set, quiet)
    save_features(out, feature_set, overwrite=overwrite)
    if not quiet:
        n, d = feature_set.features.shape
        extractor = feature_set.protocol.extractor if feature_set.protocol else "?"
        click.echo(f"wrote {out}: {n} x {d} features ({extractor})")


@click.command("compare")
@click.argument("reference")
@click.argument("candidate")
@metric_options()
@click.option(
    "--kid-subsets", type=click.IntRange(min=1), default=100, show_default=True, help="KID subsets."
)
@click.option(
    "--kid-subset-size",
    type=click.IntRange(min=2),
    default=1000,
    show_default=True,
    help="Rows per KID subset (clamped to the smaller set).",
)
@click.option(
    "--metrics",
    "metrics",
    default="default",
    show_default=True,
    help="default (FID, KID, precision, recall, density, coverage); 'all' adds is, swd and "
    "classifier (GAN-train, GAN-test confidence, mode coverage); or a comma list of them.",
)
@classifier_options("REFERENCE")
@seed_option("Seed of KID's subsets, the bootstrap, SWD, k-means and the classifier split.")
@json_option("Print one JSON object.")
@feature_options
def compare_command(
    reference: str,
    candidate: str,
    k_pr: int,
    k_dc: int,
    kid_subsets: int,
    kid_subset_size: int,
    bootstrap: int | None,
    confidence: float,
    metrics: str,
    classes: int | None,
    min_count: int,
    seed: int,
    as_json: bool,
    extractor: str | None,
    extractor_weights: str | None,
    precision: str | None,
    device: str,
    batch_size: int,
    workers: int | None,
    strict: bool,
    no_cache: bool,
    offline: bool | None,
    quiet: bool,
) -> None:
    """Compare CANDIDATE images with REFERENCE (target) images.

    Each is an image folder, a .zip, or a feature file (.npz from `advisor features`, or a plain
    .npy N x D array). Precision: fraction of CANDIDATE inside REFERENCE's k-NN manifold;
    recall: fraction of REFERENCE inside CANDIDATE's.
    """
    from advisor.compare import CompareRequest, protocol_options_without_effect, run_compare
    from advisor.metrics.other import parse_measures

    try:
        groups = parse_measures(metrics)
    except ValueError as err:
        raise click.UsageError(str(err)) from None

    flags = FeatureFlags(
        extractor=extractor, extractor_weights=extractor_weights, precision=precision,
        device=device, batch_size=batch_size, workers=workers, strict=strict, no_cache=no_cache,
        offline=offline, quiet=quiet,
    )  # fmt: skip
    for source in (reference, candidate):
        check_source(source)
    unused = protocol_options_without_effect(
        reference, candidate, extractor=extractor, precision=precision, weights=extractor_weights
    )
    if unused:
        # Refused, not warned about: these options say how to measure images, and a user who
        # passes one to two feature files expects it to matter; a warning scrolls past in a
        # script or a --json pipeline, and the fix (drop the option) is trivial.
        shown = ", ".join(_PROTOCOL_FLAGS[name] for name in unused)
        raise click.UsageError(
            f"both sides are feature files, so {shown} would change nothing; leave "
            f"{'it' if len(unused) == 1 else 'them'} out (only images use them)"
        )
    request = CompareRequest(
        reference=reference,
        candidate=candidate,
        extractor=extractor,
        precision=precision,
        weights=extractor_weights,
        extraction=flags.extraction_options(),
        k_pr=k_pr,
        k_dc=k_dc,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        bootstrap=bootstrap,
        confidence=confidence,
        seed=seed,
        metrics=groups,
        classes=classes,
        min_count=min_count,
    )
    result = run_compare(request, on_progress=flags.progress())
    for feature_set in (result.reference, result.candidate):
        report_skips(feature_set, quiet)
    if as_json:
        # allow_nan=False: JSON has no NaN; the report guarantees finite numbers, this keeps
        # a broken guarantee from printing invalid JSON.
        echo_json(result.to_dict(), allow_nan=False)
    else:
        click.echo(format_compare(result))


def format_compare(result: CompareResult) -> str:
    """A small human-readable table with confidence intervals, the protocol and the notes."""
    r = result.report
    ci_head = f"{round(r.options.confidence * 100)}% CI"
    lines = [
        f"reference: {result.reference.source} ({len(result.reference)} images)",
        f"candidate: {result.candidate.source} ({len(result.candidate)} images)",
        "",
        f"{'metric':<10} {'value':>10}   {ci_head}",
    ]
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        est = getattr(r, name)
        digits = 2 if name == "fid" else 5 if name == "kid" else 4
        ci = (
            f"[{est.low:.{digits}f}, {est.high:.{digits}f}]"
            if est.low is not None and est.high is not None
            else "-"
        )
        lines.append(f"{name:<10} {est.value:>10.{digits}f}   {ci}")
    lines.append(f"{'kid_std':<10} {r.kid_std:>10.5f}   (over KID subsets)")
    lines.extend(_format_other(result))
    lines.append("")
    protocol = result.protocol
    shown = protocol.summary() if protocol is not None else "unknown (plain .npy features)"
    lines.append("protocol: " + shown)
    o = r.options
    intervals = (
        f"bootstrap {o.bootstrap} resamples, seed {o.seed}" if o.bootstrap else "no intervals"
    )
    lines.append(
        f"settings: k={o.k_pr} (precision/recall), k={o.k_dc} (density/coverage), "
        f"KID {o.kid_subsets} subsets of up to {o.kid_subset_size}, {intervals}"
    )
    lines.extend(f"note: {note}" for note in dict.fromkeys(result.notes))
    return "\n".join(lines)


def _format_other(result: CompareResult) -> list[str]:
    """Table lines for the extra measures that were computed (none by default)."""
    other = result.other
    lines = []

    def row(name: str, value: float, low: float | None, high: float | None, tail: str = "") -> str:
        ci = f"[{low:.4f}, {high:.4f}]" if low is not None and high is not None else "-"
        return f"{name:<10} {value:>10.4f}   {ci}{tail}"

    if other.inception_score is not None:
        ref = other.reference_inception_score
        tail = f"   (std {other.inception_score.std:.3f} over splits"
        tail += f"; reference {ref.mean:.3f})" if ref is not None else ")"
        lines.append(row("is", other.inception_score.mean, None, None, tail))
    if other.swd is not None:
        levels = ", ".join(f"{size}px {value:.4f}" for size, value in other.swd.per_level)
        lines.append(row("swd", other.swd.mean, None, None, f"   ({levels})"))
    if other.classifier is not None:
        c = other.classifier
        for name in ("gan_train", "real_train", "gan_test_confidence"):
            est = getattr(c, name)
            lines.append(row(name[:10] if name != "gan_test_confidence" else "gan_test*",
                             est.value, est.low, est.high))  # fmt: skip
        mc = c.mode_coverage
        lines.append(
            row("modes", mc.fraction.value, mc.fraction.low, mc.fraction.high,
                f"   ({mc.covered} of {mc.classes} classes with >= {mc.min_count} of {mc.n})")
        )  # fmt: skip
        lines.append(
            f"classes: {c.labels}; gan_test* = mean top-class confidence (GAN-test's "
            "unconditional analogue)"
        )
    return lines
