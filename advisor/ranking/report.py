"""A self-contained ranking report folder: ``rank.json``, ``index.html`` and its images.

``index.html`` needs no network: every image is embedded as a ``data:`` URI (and also written
beside it as a PNG). It holds the recommendation, the table with intervals and tie marks, a bar
chart of the ranking metric with its intervals, a recall-vs-precision scatter, and a grid of
each checkpoint's samples beside a grid of target images. Plots use matplotlib's Agg canvas on
a ``Figure`` object (no pyplot, so no global state). File names come from rank positions, never
from checkpoint names. Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from advisor.cache import atomic_write_bytes, os_reason
from advisor.errors import AdvisorError
from advisor.ranking.result import SHOWN_METRICS, Ranking, format_estimate, recommendation

#: Side in pixels of one image in a grid (small images are enlarged, nearest neighbour).
GRID_CELL = 64
_TIE_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def image_grid(images: np.ndarray, *, columns: int = 4, cell: int = GRID_CELL) -> np.ndarray:
    """uint8 [m, 3, H, W] RGB -> one uint8 HWC RGB grid of ``columns`` per row, each image
    resized to ``cell`` x ``cell`` (nearest when enlarging, bicubic when shrinking)."""
    m = len(images)
    rows = max(1, -(-m // columns))
    grid = np.full((rows * cell, columns * cell, 3), 255, dtype=np.uint8)
    for i, chw in enumerate(images):
        pil = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)))
        resample = Image.Resampling.NEAREST if pil.width < cell else Image.Resampling.BICUBIC
        tile = np.asarray(pil.resize((cell, cell), resample))
        r, c = divmod(i, columns)
        grid[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = tile
    return grid


def _png(array_hwc: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array_hwc).save(buffer, format="PNG")
    return buffer.getvalue()


def _figure_png(draw: object) -> bytes:
    """Render ``draw(fig)`` on an Agg canvas and return the PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    draw(fig)  # type: ignore[operator]
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _group_colours(ranking: Ranking) -> list[str]:
    colours, groups = [], {}
    for row in ranking.rows:
        group = frozenset((row.checkpoint, *row.tied_with))
        groups.setdefault(group, _TIE_COLOURS[len(groups) % len(_TIE_COLOURS)])
        colours.append(groups[group])
    return colours


def bar_chart(ranking: Ranking) -> bytes:
    """PNG: the ranking metric per row (best first) with its interval; tied rows share a
    colour."""
    by = ranking.protocol.by
    names = [row.checkpoint for row in ranking.rows]
    values = np.array([row.estimate(by).value for row in ranking.rows])
    lows = np.array([_or(row.estimate(by).low, row.estimate(by).value) for row in ranking.rows])
    highs = np.array([_or(row.estimate(by).high, row.estimate(by).value) for row in ranking.rows])
    colours = _group_colours(ranking)

    def draw(fig: object) -> None:
        ax = fig.add_subplot()  # type: ignore[attr-defined]
        x = np.arange(len(names))
        ax.bar(x, values, color=colours)
        ax.errorbar(x, values, yerr=[values - lows, highs - values], fmt="none", ecolor="black",
                    capsize=4)  # fmt: skip
        ax.set_xticks(x, names, rotation=30, ha="right")
        direction = "lower is better" if ranking.protocol.lower_is_better else "higher is better"
        ax.set_ylabel(f"{by} ({direction})")
        ax.set_title(f"{by} with {ranking.protocol.metrics.confidence} intervals")

    return _figure_png(draw)


def scatter_chart(ranking: Ranking) -> bytes:
    """PNG: recall (x) against precision (y), one labelled point per row with both intervals."""

    def draw(fig: object) -> None:
        ax = fig.add_subplot()  # type: ignore[attr-defined]
        for row, colour in zip(ranking.rows, _group_colours(ranking), strict=True):
            r, p = row.estimate("recall"), row.estimate("precision")
            ax.errorbar(
                [r.value],
                [p.value],
                xerr=[[r.value - _or(r.low, r.value)], [_or(r.high, r.value) - r.value]],
                yerr=[[p.value - _or(p.low, p.value)], [_or(p.high, p.value) - p.value]],
                fmt="o",
                color=colour,
                capsize=3,
            )
            ax.annotate(row.checkpoint, (r.value, p.value), textcoords="offset points",
                        xytext=(5, 5), fontsize=8)  # fmt: skip
        ax.set_xlabel("recall (target covered by the samples)")
        ax.set_ylabel("precision (samples inside the target)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("recall vs precision")

    return _figure_png(draw)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def write_report(
    ranking: Ranking, out_dir: str | os.PathLike[str], *, target_images: np.ndarray | None
) -> Path:
    """Write the report folder ``out_dir`` (created; our files in it are replaced) and return
    the path of its ``index.html``. ``target_images``: uint8 [m, 3, H, W] for the target grid.

    Raises :class:`AdvisorError` when the folder cannot be written.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, bytes] = {
            "rank.json": (json.dumps(ranking.to_dict(), indent=2, allow_nan=False) + "\n").encode(),
            "bar.png": bar_chart(ranking),
            "scatter.png": scatter_chart(ranking),
        }
        if target_images is not None and len(target_images):
            files["target.png"] = _png(image_grid(target_images))
        for row in ranking.rows:
            if row.preview is not None and len(row.preview):
                files[f"samples_{row.rank:02d}.png"] = _png(image_grid(row.preview))
        files["index.html"] = _html(ranking, files).encode("utf-8")
        for name, data in files.items():
            atomic_write_bytes(out / name, data)
    except OSError as err:
        raise AdvisorError(f"cannot write the report in {out} ({os_reason(err)})") from None
    return out / "index.html"


def _html(ranking: Ranking, files: dict[str, bytes]) -> str:
    e = html.escape
    by = ranking.protocol.by
    metrics = [by, *[m for m in SHOWN_METRICS if m != by]]
    head = "".join(f"<th>{e(m)}</th>" for m in metrics)
    body = []
    for row in ranking.rows:
        cells = "".join(f"<td>{e(format_estimate(row.estimate(m), m))}</td>" for m in metrics)
        tied = ", ".join(row.tied_with)
        body.append(
            f"<tr><td>{row.rank}</td><td>{e(row.checkpoint)}</td>{cells}"
            f"<td>{e(row.setting)}</td><td>{e(tied)}</td></tr>"
        )
    skipped = "".join(
        f"<li><b>{e(s.name)}</b> ({e(s.setting)}): {e(s.reason)}</li>" for s in ranking.skipped
    )
    grids = []
    target = files.get("target.png")
    for row in ranking.rows:
        samples = files.get(f"samples_{row.rank:02d}.png")
        if samples is None:
            continue
        target_img = (
            f'<figure><img src="{_data_uri(target)}" alt="target"><figcaption>target'
            "</figcaption></figure>"
            if target
            else ""
        )
        grids.append(
            f'<div class=\'pair\'><figure><img src="{_data_uri(samples)}" alt="samples">'
            f"<figcaption>#{row.rank} {e(row.checkpoint)} samples</figcaption></figure>"
            f"{target_img}</div>"
        )
    protocol = e(json.dumps(ranking.protocol.to_dict(), indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>advisor rank: {e(ranking.target.source)}</title>
<style>
body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}}
img{{image-rendering:pixelated}}.pair{{display:flex;gap:2em}}figure{{margin:.5em 0}}
</style></head><body>
<h1>Which checkpoint to fine-tune for {e(ranking.target.source)}</h1>
<p>{e(recommendation(ranking))}</p>
<table><tr><th>#</th><th>checkpoint</th>{head}<th>setting</th><th>tied with</th></tr>
{"".join(body)}</table>
<p>Intervals: {e(str(ranking.protocol.metrics.confidence))} bootstrap;
{ranking.protocol.n_samples} samples per checkpoint against {ranking.target.n_images} target
images.</p>
{f"<h2>Skipped</h2><ul>{skipped}</ul>" if skipped else ""}
<h2>{e(by)} with intervals</h2><img src="{_data_uri(files["bar.png"])}" alt="bar chart">
<h2>Recall vs precision</h2><img src="{_data_uri(files["scatter.png"])}" alt="scatter">
<h2>Samples and target</h2>{"".join(grids) or "<p>No sample previews.</p>"}
<h2>Protocol</h2><pre>{protocol}</pre>
</body></html>
"""
