"""``advisor checkpoints ...`` and ``advisor generate``: thin click commands.

``checkpoints_group`` (list, show, pull, import, verify) and ``generate_command`` are added to the
main ``advisor`` group by :mod:`advisor.cli`, whose error mapping makes :class:`AdvisorError`
one line. Each parses, calls one library function and prints (``--json`` for pipelines). Cheap
checks (names, paths, seed syntax and count, a finite truncation, existing outputs) run before
anything is downloaded or loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from advisor.checkpoints.fetch import pull, status, verify
from advisor.checkpoints.registry import Registry, load_registry
from advisor.cli.options import (
    batch_size_option,
    device_option,
    echo_json,
    json_option,
    offline_option,
    overwrite_option,
    registry_option,
)
from advisor.errors import AdvisorError
from advisor.sampling import MAX_BATCH_SIZE

_REGISTRY_HELP = "Extra registry TOML file (repeatable; after $ADVISOR_REGISTRY, later wins)."


def _registry(registries: tuple[str, ...]) -> Registry:
    return load_registry(list(registries))


@click.group("checkpoints")
def checkpoints_group() -> None:
    """List, fetch, verify and import pretrained checkpoints."""


@checkpoints_group.command("list")
@registry_option(_REGISTRY_HELP)
@json_option()
def list_command(registries: tuple[str, ...], as_json: bool) -> None:
    """List registry checkpoints and whether they are cached (no network)."""
    rows = []
    for record in _registry(registries):
        st = status(record)
        rows.append(
            {
                "name": record.name,
                "resolution": record.resolution,
                "source_dataset": record.source_dataset,
                "licence": record.licence,
                "format": record.format,
                "trust": record.trust,
                "cached": st.cached,
                "sha256": st.hash_status,
                "tags": list(record.tags),
                "source_features": record.source_features is not None,
            }
        )
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no checkpoints in the registry")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        cached = "cached" if r["cached"] else "-"
        verified = "" if r["sha256"] == "pinned" else " (unverified)"
        licence = r["licence"].split(" (")[0]
        click.echo(
            f"{r['name']:<{width}}  {r['resolution']:>5}px  {cached:<6}  "
            f"{r['source_dataset']}  [{licence}]{verified}"
            + (f"  #{' #'.join(r['tags'])}" if r["tags"] else "")
        )


@checkpoints_group.command("show")
@click.argument("name")
@registry_option(_REGISTRY_HELP)
@json_option()
def show_command(name: str, registries: tuple[str, ...], as_json: bool) -> None:
    """Show one registry record and its cache status (no network)."""
    record = _registry(registries).get(name)
    st = status(record)
    data = record.to_dict() | {
        "cached": st.cached,
        "cache_path": str(st.path),
        "sha256_status": st.hash_status,
        "sha256_known": st.sha256,
    }
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if value not in (None, ""):
            click.echo(f"{key}: {value}")


@checkpoints_group.command("pull")
@click.argument("names", nargs=-1, required=True)
@offline_option("Use only cached files.")
@registry_option(_REGISTRY_HELP)
@json_option()
def pull_command(
    names: tuple[str, ...], offline: bool | None, registries: tuple[str, ...], as_json: bool
) -> None:
    """Download (if needed) and verify the named checkpoints."""
    registry = _registry(registries)
    records = [registry.get(n) for n in names]  # unknown names fail before any download
    out = []
    for record in records:
        path = pull(record, offline=offline or None, progress=not as_json)
        st = status(record)
        out.append({"name": record.name, "path": str(path), "sha256": st.sha256,
                    "sha256_status": st.hash_status})  # fmt: skip
        if not as_json:
            note = "" if st.hash_status == "pinned" else " (unverified: hash recorded locally)"
            click.echo(f"{record.name}: {path}{note}")
    if as_json:
        echo_json(out)


@checkpoints_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", required=True, help="Output NAME or DIR/NAME: writes NAME.safetensors + NAME.json."
)
@click.option("--source-dataset", default=None, help="What the source was trained on.")
@click.option("--kimg", type=float, default=None, help="Training length in kimg.")
@click.option("--licence", default=None, help="Licence of the weights.")
@click.option("--description", default=None)
@click.option(
    "--allow-missing", is_flag=True, help="Import even if parameters are missing (kept at init)."
)
@overwrite_option("Replace an existing checkpoint at --out.")
@json_option()
def import_command(
    file: str,
    out: str,
    source_dataset: str | None,
    kimg: float | None,
    licence: str | None,
    description: str | None,
    allow_missing: bool,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Convert an NVlabs .pkl, rosinality .pt or NVlabs state file to advisor's format.

    Pickles are read with a restricted unpickler: no code from the file runs.
    """
    from advisor.checkpoints.importers import import_checkpoint

    target = Path(out)
    if target.suffix in (".json", ".safetensors"):
        target = target.with_suffix("")
    report = import_checkpoint(
        file,
        out_dir=target.parent,
        name=target.name,
        strict=not allow_missing,
        overwrite=overwrite,
        source_dataset=source_dataset,
        training_kimg=kimg,
        licence=licence,
        description=description,
    )
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(f"{report.source.name} ({report.format}) -> {report.output}")
    for net in report.networks:
        click.echo(
            f"  {net.network}: {len(net.matched)} matched, {len(net.missing)} missing, "
            f"{len(net.unexpected)} unexpected, {len(net.derived)} derived"
        )
        for kind in ("missing", "unexpected"):
            for key in getattr(net, kind):
                click.echo(f"    {kind}: {key}")
    for note in report.notes:
        click.echo(f"  note: {note}")


@checkpoints_group.command("verify")
@click.argument("names", nargs=-1)
@registry_option(_REGISTRY_HELP)
@json_option()
def verify_command(names: tuple[str, ...], registries: tuple[str, ...], as_json: bool) -> None:
    """Re-hash cached checkpoint files (all, or NAMES); a mismatching cache file is deleted."""
    registry = _registry(registries)
    records = [registry.get(n) for n in names] if names else list(registry)
    results = [verify(r) for r in records]
    if as_json:
        echo_json([{**vars(r), "path": str(r.path)} for r in results])
    else:
        for r in results:
            detail = {
                "ok": "ok",
                "mismatch": f"MISMATCH (expected {r.expected}, got {r.actual}); deleted if cached",
                "not-cached": "not cached",
                "unhashed": f"no known hash (sha256 {r.actual})",
            }[r.outcome]
            click.echo(f"{r.name}: {detail}")
    bad = [r.name for r in results if r.outcome == "mismatch"]
    if bad:
        raise click.ClickException(f"hash mismatch: {', '.join(bad)}")


@click.command("generate")
@click.argument("checkpoint")
@click.option("--seeds", required=True, help="Seeds, e.g. 0-63,100,200-210.")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi (1 = none; finite).")  # fmt: skip
@batch_size_option(default=32, maximum=MAX_BATCH_SIZE)
@click.option(
    "--noise-mode", type=click.Choice(["const", "random", "none"]), default="const",
    show_default=True,
)  # fmt: skip
@device_option(default="cpu", help="torch device, e.g. cuda.")
@overwrite_option("Replace existing seedNNNN.png files.")
@offline_option("Use only cached files.")
@registry_option(_REGISTRY_HELP)
@json_option()
def generate_command(
    checkpoint: str,
    seeds: str,
    out_dir: str,
    truncation_psi: float,
    batch_size: int,
    noise_mode: str,
    device: str,
    overwrite: bool,
    offline: bool | None,
    registries: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write seedNNNN.png images from CHECKPOINT (registry name or checkpoint file)."""
    from advisor.checkpoints.resolve import open_checkpoint
    from advisor.devices import resolve_device
    from advisor.sampling import check_truncation, parse_seeds, png_paths, write_pngs

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--seeds") from None
    try:
        check_truncation(truncation_psi)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--trunc") from None
    try:
        device = str(resolve_device(device))  # "auto" -> cuda or cpu; a missing device: one line
    except AdvisorError as err:
        raise click.BadParameter(str(err), param_hint="--device") from None
    existing = [p for p in png_paths(out_dir, seed_list) if os.path.lexists(p)]
    if existing and not overwrite:
        raise click.ClickException(
            f"{existing[0]} exists ({len(existing)} of the outputs do); pass --overwrite"
        )
    ckpt = open_checkpoint(
        checkpoint,
        registry_files=registries,
        offline=offline or None,
        networks=("G_ema",),
        device=device,
        progress=not as_json,
    )
    paths = write_pngs(
        ckpt.G_ema,
        seed_list,
        out_dir,
        batch_size=batch_size,
        truncation_psi=truncation_psi,
        noise_mode=noise_mode,
        device=device,
        overwrite=overwrite,
    )
    if as_json:
        echo_json({"checkpoint": ckpt.metadata.name, "out": str(Path(out_dir)),
                    "files": [str(p) for p in paths]})  # fmt: skip
    else:
        click.echo(f"wrote {len(paths)} images from {ckpt.metadata.name} to {out_dir}")
