"""Cards, sample grids, source-data features and registry entries of the demo zoo.

Run through ``python benchmarks/zoo.py --cards`` (after the zoo's checkpoints are exported to
``advisor/data/zoo/``). For each ``zoo-*.safetensors`` there:

- ``<name>.png``: a grid of its first 32 samples (seeds 0-31, ``noise_mode='const'``, psi 1),
  each shown at 2x;
- ``<name>.features.npz``: the offline EfficientNet-Lite0 features (fp32 network, stored as
  float16) of ``SOURCE_FEATURES`` images of its training data, chosen with a fixed seed: what
  ``advisor rank --setting source`` compares with a target. Every zoo entry gets the same count,
  so the source rows of a ranking compare sets of equal size;
- ``<name>.md``: the card. Metrics are FID, KID, precision, recall, density and coverage of 1,000
  samples (seeds 0-999, ``noise_mode='random'``, psi 1: NVlabs' metric protocol) against every
  image of its own training data, with the same extractor. Lite0 numbers are advisor's own scale
  and cannot be compared with published (Inception) FIDs;
- the zoo's section of ``advisor/data/registry.toml`` (tag ``demo``, sha256 pinned).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

EXTRACTOR = "efficientnet-lite0"
CARD_SAMPLES = 1000
SOURCE_FEATURES = 480  # the smallest source domain (clipart_flags) has 491 images
GRID = (4, 8)  # rows, columns
BEGIN = "# --- advisor demo zoo (written by `python benchmarks/zoo.py --cards`; do not edit) ---"
END = "# --- end of the demo zoo ---"

EMOJI = "Noto Color Emoji images (Apache-2.0, Copyright Google Inc.)"
CLIPART = "Openclipart images (public-domain dedication)"
DEJAVU = "glyphs rendered from the DejaVu fonts (Bitstream Vera licence)"
#: The training data of each domain, and the licence its weights are released under.
DATA = {
    "emoji_people": EMOJI,
    "emoji_things": EMOJI,
    "clipart_icons": CLIPART,
    "clipart_flags": CLIPART,
    "latin_glyphs": DEJAVU,
}


def licence_of(domains: list[str]) -> str:
    """Weights are released under Apache-2.0 (advisor's licence), which each training set's
    licence permits: Apache-2.0 images, public-domain clip art and Bitstream Vera glyph renders
    (the fonts themselves are not redistributed)."""
    data = "; ".join(dict.fromkeys(DATA[d] for d in domains))
    return f"Apache-2.0 (weights); trained on {data}"


def _write_text(path: Path, text: str) -> None:
    """Complete or absent: the registry and cards are shipped files."""
    from advisor.cache import atomic_open

    with atomic_open(path) as f:
        f.write(text.encode())


def _grid(batches: list[np.ndarray], path: Path) -> None:
    images = np.concatenate(batches)[: GRID[0] * GRID[1]]  # N, C, H, W uint8
    n, c, h, w = images.shape
    rows, cols = GRID
    canvas = images.reshape(rows, cols, c, h, w).transpose(0, 3, 1, 4, 2)
    canvas = canvas.reshape(rows * h, cols * w, c)
    image = Image.fromarray(canvas).resize((cols * w * 2, rows * h * 2), Image.NEAREST)
    image.save(path, optimize=True)


def card_for(name: str, zoo: Path, domains_dir: Path, union: Path) -> dict[str, object]:
    """Write ``name``'s grid, source features and card; return its registry/card facts."""
    import torch

    from advisor.checkpoints.format import load_checkpoint
    from advisor.download import sha256_file
    from advisor.features.extract import SharedExtractor
    from advisor.features.files import FeatureSet, save_features
    from advisor.features.pipeline import FeatureOptions, compute_features
    from advisor.metrics import MetricOptions, compare_features
    from advisor.sampling import sample

    ckpt = load_checkpoint(zoo / f"{name}.safetensors")
    info = ckpt.metadata.extra["zoo"]
    domain = name.removeprefix("zoo-").replace("-", "_")
    domains = list(DATA) if domain == "mixed" else [domain]
    data = union if domain == "mixed" else domains_dir / domain

    shared = SharedExtractor(EXTRACTOR, progress=False)
    options = FeatureOptions(extractor=EXTRACTOR, device="cpu", progress=False)
    real = compute_features(data, options=options, extractor=shared)
    keep = np.sort(np.random.default_rng(0).permutation(len(real))[:SOURCE_FEATURES])
    subset = FeatureSet(
        features=real.features[keep],
        protocol=real.protocol,
        names=tuple(real.names[i] for i in keep) if real.names else (),
        source=f"{name} training data ({', '.join(domains)}), {len(keep)} of {len(real)} images",
    )
    save_features(zoo / f"{name}.features.npz", subset, overwrite=True, half=True)

    G = ckpt.G_ema  # noqa: N806
    _grid([b.numpy() for b in sample(G, range(GRID[0] * GRID[1]))], zoo / f"{name}.png")
    extractor = shared.on(torch.device("cpu"))
    batches = sample(G, range(CARD_SAMPLES), noise_mode="random")
    fake = torch.cat([extractor(b) for b in batches]).numpy()
    report = compare_features(real.features, fake, options=MetricOptions())
    estimates = {m: getattr(report, m) for m in ("fid", "kid", "precision", "recall",
                                                  "density", "coverage")}  # fmt: skip
    metrics = {
        m: {
            "value": float(e.value),
            "interval": [] if e.low is None else [float(e.low), float(e.high)],
        }
        for m, e in estimates.items()
    }
    run = info["run_options"]
    facts: dict[str, object] = {
        "name": name,
        "domain": domain,
        "domains": domains,
        "training_images": len(real),
        "parent": info["parent"],
        "kimg": info["kimg"],
        "seed": run.get("seed"),
        "wall_s": info["wall_s"],
        "s_per_kimg": info["s_per_kimg"],
        "licence": licence_of(domains),
        "metrics": metrics,
        "metric_protocol": {
            "extractor": EXTRACTOR,
            "samples": CARD_SAMPLES,
            "seeds": f"0-{CARD_SAMPLES - 1}",
            "noise_mode": "random",
            "truncation_psi": 1.0,
            "reference": f"all {len(real)} training images",
            "notes": list(report.notes),
        },
        "sha256": sha256_file(zoo / f"{name}.safetensors", fresh=True),
        "resolution": int(G.config.img_resolution),
    }
    _write_text(zoo / f"{name}.md", _card_text(facts))
    return facts


def _card_text(f: dict) -> str:
    m = f["metrics"]
    rows = "\n".join(
        f"| {k} | {v['value']:.4g} | "
        + (f"{v['interval'][0]:.4g} - {v['interval'][1]:.4g}" if v["interval"] else "")
        + " |"
        for k, v in m.items()
    )
    parent = f["parent"] or "none (trained from scratch, G and D random)"
    hours = f["wall_s"] / 3600
    training = (
        f"{f['kimg']:.1f} kimg, seed {f['seed']}, {hours:.2f} h wall "
        f"({f['s_per_kimg']:.1f} s/kimg) on a 2-core CPU"
    )
    return f"""# {f["name"]}

advisor demo zoo checkpoint: StyleGAN2 at {f["resolution"]} px trained on CPU by
`benchmarks/zoo.py`. A demo source for `advisor rank` and `advisor finetune`, not a model of
publishable quality.

![samples]({f["name"]}.png)

Samples: seeds 0-31, noise const, psi 1.

| | |
|---|---|
| domain | {", ".join(f["domains"])} ({f["training_images"]} images, 32x32) |
| parent | {parent} |
| training | {training} |
| licence | {f["licence"]} |
| sha256 | `{f["sha256"]}` |

## Against its own training data

{CARD_SAMPLES} samples (seeds 0-{CARD_SAMPLES - 1}, noise random, psi 1) vs
{f["metric_protocol"]["reference"]}, offline EfficientNet-Lite0 features (advisor's own scale:
not comparable with published Inception FIDs). Intervals: 95% bootstrap.

| metric | value | interval |
|---|---|---|
{rows}

Made by `python benchmarks/zoo.py --cards`.
"""


def registry_section(cards: list[dict]) -> str:
    lines = [BEGIN, "# Trained on this project's CPU from Debian-packaged images; see each card."]
    for f in cards:
        parent = f"fine-tuned from {f['parent']}" if f["parent"] else "trained from scratch"
        lines += [
            "",
            f"[checkpoints.{f['name']}]",
            f'description = "advisor demo zoo: {", ".join(f["domains"])}, '
            f'{f["resolution"]} px, {parent}, {f["kimg"]:.0f} kimg on CPU"',
            'format = "advisor"',
            f"resolution = {f['resolution']}",
            f'source_dataset = "{", ".join(f["domains"])} ({f["training_images"]} images)"',
            f"licence = {json.dumps(f['licence'])}",
            'trust = "local"',
            f'path = "zoo/{f["name"]}.safetensors"',
            f'sha256 = "{f["sha256"]}"',
            'tags = ["demo"]',
            f'source_features = "zoo/{f["name"]}.features.npz"',
        ]
    return "\n".join([*lines, END]) + "\n"


def write_registry(registry: Path, cards: list[dict]) -> None:
    text = registry.read_text()
    section = registry_section(cards)
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    _write_text(registry, text)


def write_cards(zoo: Path, domains_dir: Path, union: Path, registry: Path) -> list[dict]:
    """Cards for every exported zoo checkpoint (mixed first), then the registry section."""
    names = sorted(p.stem for p in zoo.glob("zoo-*.safetensors"))
    names.sort(key=lambda n: n != "zoo-mixed")
    cards = []
    for name in names:
        print(f"card: {name}", flush=True)
        cards.append(card_for(name, zoo, domains_dir, union))
    _write_text(zoo / "cards.json", json.dumps(cards, indent=1) + "\n")
    write_registry(registry, cards)
    return cards
