"""Train advisor's demo source zoo on this CPU, resumably, one run at a time.

As the paper built its sources: one diverse model first, then each source fine-tuned from it.

1. ``mixed``: ``advisor finetune --g-init random --d-init random`` of a blank 32 px checkpoint
   (z/w 128, 2 mapping layers, channel_base 16384, channel_max 64, conv_clamp 256: the
   architecture whose bare training step runs ~85-95 images/s on a 2-core CPU) on the union of
   the permissive source domains (tuxpaint_photo is GPL and stays out);
2. one fine-tune of ``mixed`` per source domain (G and D pretrained, ADA, the CPU defaults).

Every run lives in ``WORK/runs/<name>`` (outside git) and is resumed if it exists and did not
finish, so the script can be killed and started again at any moment. A finished run is exported
to ``advisor/data/zoo/<name>.{safetensors,json}`` (G_ema and D only: what ranking and
fine-tuning need; inside the package so that a plain ``pip install`` ships it) for the caller to
commit at once.

3. ``--cards`` (also run after the last export): for every exported checkpoint, its card
   ``<name>.md`` (domain, parent, kimg, seed, wall time, licence, and FID/KID/precision/recall/
   density/coverage of 1,000 samples against its own training data with the offline
   EfficientNet-Lite0 extractor), a sample grid ``<name>.png``, the training data's features
   ``<name>.features.npz`` (480 seeded images, float16; rank's ``source`` setting), and the
   zoo's section of the default registry (``advisor/data/registry.toml``, tag ``demo``, sha256
   pinned).

    python benchmarks/zoo.py [--work DIR] [--mixed-kimg 60] [--source-kimg 20] [--only NAME]
    python benchmarks/zoo.py --cards

The domains are built first with ``benchmarks/domains.py`` when missing (needs its Debian
packages).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "advisor" / "data" / "zoo"
REGISTRY = REPO / "advisor" / "data" / "registry.toml"
SOURCES = ("emoji_people", "emoji_things", "clipart_icons", "clipart_flags", "latin_glyphs")
ARCH = {
    "z_dim": 128,
    "w_dim": 128,
    "img_resolution": 32,
    "channel_base": 16384,
    "channel_max": 64,
    "mapping_layers": 2,
    "conv_clamp": 256,
}


def _blank(path: Path) -> Path:
    """A randomly initialised checkpoint that only carries the zoo's architecture."""
    from advisor.checkpoints.format import Checkpoint, CheckpointMetadata, save_checkpoint
    from advisor.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

    if path.with_suffix(".json").is_file():
        return path.with_suffix(".safetensors")
    g = GeneratorConfig(**ARCH)
    d = DiscriminatorConfig(
        img_resolution=32, channel_base=16384, channel_max=64, mbstd_group_size=4, conv_clamp=256
    )
    torch.manual_seed(0)
    meta = CheckpointMetadata(name="zoo-blank", generator=g, discriminator=d, licence="none")
    save_checkpoint(path, Checkpoint(metadata=meta, G_ema=Generator(g), D=Discriminator(d)))
    return path.with_suffix(".safetensors")


def _finished(run: Path) -> bool:
    summary = run / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("finished") is True


def _finetune(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "advisor", "finetune", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _train(name: str, source: Path, data: Path, work: Path, kimg: float, extra: list[str]) -> Path:
    run = work / "runs" / name
    common = [
        "--metric-every",
        str(max(kimg / 4, 5)),
        "--metric-samples",
        "500",
        "--snapshot-every",
        "5",
        "--tick-kimg",
        "1",
        "--device",
        "cpu",
    ]
    if _finished(run):
        print(f"{name}: finished", flush=True)
    elif (run / "snapshots" / "latest.json").is_file():
        _finetune(["--resume", str(run), "--kimg", str(kimg), "--device", "cpu"])
    else:
        if run.exists():  # started but never reached a snapshot: start again
            import shutil

            shutil.rmtree(run)
        _finetune(
            [str(source), str(data), "--run-dir", str(run), "--kimg", str(kimg), *common, *extra]
        )
    return run


def _export(run: Path, name: str, parent: str | None, domain: str) -> Path:
    """Copy the run's final networks (G_ema, D) into checkpoints/NAME with provenance."""
    import dataclasses

    from advisor.checkpoints.format import Checkpoint, load_checkpoint, save_checkpoint

    latest = json.loads((run / "snapshots" / "latest.json").read_text())
    ckpt = load_checkpoint(run / "snapshots" / latest["snapshot"])
    summary = json.loads((run / "summary.json").read_text())
    meta = dataclasses.replace(
        ckpt.metadata,
        name=name,
        source_dataset=domain,
        description=f"advisor demo zoo: {domain} at 32 px"
        + (f", fine-tuned from {parent}" if parent else ", trained from scratch"),
        extra={
            "zoo": {
                "parent": parent,
                "kimg": summary["kimg"],
                "wall_s": summary["wall_s"],
                "s_per_kimg": summary["s_per_kimg"],
                "run_options": json.loads((run / "config.json").read_text())["options"],
            }
        },
    )
    ZOO.mkdir(parents=True, exist_ok=True)
    out = ZOO / name
    save_checkpoint(out, Checkpoint(metadata=meta, G_ema=ckpt.G_ema, D=ckpt.D))
    print(f"exported {out}.safetensors", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / ".work" / "zoo")
    parser.add_argument("--mixed-kimg", type=float, default=60.0)
    parser.add_argument("--source-kimg", type=float, default=20.0)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument(
        "--cards",
        action="store_true",
        help="only (re)write the cards, grids, features and registry entries of the exported zoo",
    )
    args = parser.parse_args()
    if args.cards:
        _cards(args.work)
        return
    domains = args.work / "domains" / "32"
    if not all((domains / d).is_dir() for d in SOURCES):
        subprocess.run(
            [
                sys.executable,
                str(REPO / "benchmarks" / "domains.py"),
                "--out",
                str(args.work / "domains"),
                "--size",
                "32",
                "--domains",
                *SOURCES,
            ],
            check=True,
        )
    union = args.work / "union"
    union.mkdir(parents=True, exist_ok=True)
    for d in SOURCES:
        link = union / d
        if not link.exists():
            link.symlink_to(domains / d, target_is_directory=True)
    blank = _blank(args.work / "blank")
    wanted = set(args.only or ["mixed", *SOURCES])
    if "mixed" in wanted or not (ZOO / "zoo-mixed.json").is_file():
        run = _train(
            "zoo-mixed",
            blank,
            union,
            args.work,
            args.mixed_kimg,
            ["--g-init", "random", "--d-init", "random"],
        )
        if not _finished(run):
            sys.exit("zoo-mixed did not finish (interrupted?): run this script again to resume")
        _export(run, "zoo-mixed", None, "union of the five permissive source domains")
    mixed = ZOO / "zoo-mixed.safetensors"
    for d in SOURCES:
        if d not in wanted:
            continue
        name = f"zoo-{d.replace('_', '-')}"
        run = _train(name, mixed, domains / d, args.work, args.source_kimg, [])
        if not _finished(run):
            sys.exit(f"{name} did not finish (interrupted?): run this script again to resume")
        _export(run, name, "zoo-mixed", d)
    _cards(args.work)


def _cards(work: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from zoo_cards import write_cards

    write_cards(ZOO, work / "domains" / "32", work / "union", REGISTRY)


if __name__ == "__main__":
    main()
