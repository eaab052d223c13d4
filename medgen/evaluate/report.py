"""A self-contained HTML report: figures (PNG, also embedded as data: URIs), tables and QC flags.

The page has no external resources -- every figure is inlined -- so it can be mailed or attached to a
ticket as one file; the PNGs are also written to ``figures/`` for slides. Figure helpers:

- :func:`montage` -- orthogonal-slice montages via :func:`medgen.viz.save_montage`;
- :func:`difference_map` -- ``b - a`` per orthogonal slice on a symmetric blue-red scale;
- :func:`curves` -- training curves read by :func:`read_scalars` from TensorBoard event files;
- :func:`histogram_plot` -- real vs synthetic foreground intensity histograms.

>>> page = Report("medgen evaluation")
>>> page.table("Metrics", [{"metric": "FID", "value": 1.2}])
>>> page.write("out")                                     # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.io.atomic import atomic_path
from medgen.viz import orthogonal_slices, save_montage


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def montage(scans: Sequence[torch.Tensor], titles: Sequence[str], path: str | Path) -> Path:
    """One row per ``(C, X, Y, Z)`` scan (axial, coronal, sagittal), written to ``path`` (PNG)."""
    return save_montage(list(scans), path, titles=list(titles), overwrite=True)


def difference_map(a: torch.Tensor, b: torch.Tensor, path: str | Path, title: str = "output - input") -> Path:
    """Orthogonal slices of ``b - a`` (same grid) on a symmetric scale (99th percentile of |diff|)."""
    plt = _plt()
    plain = [(x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)).float() for x in (a, b)]
    da = plain[1] - plain[0]
    planes = orthogonal_slices(da)
    lim = float(np.percentile(np.abs(np.concatenate([p.ravel() for p in planes])), 99)) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3))
    for ax, plane, name in zip(axes, planes, ("axial", "coronal", "sagittal")):
        im = ax.imshow(plane, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{title}: {name}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    return _save(fig, path)


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the TensorBoard event files under ``run_dir``: ``{tag: [(step, value)]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for folder in sorted({p.parent for p in Path(run_dir).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series.setdefault(tag, []).extend((e.step, float(e.value)) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in series.items()}


def curves(series: dict[str, list[tuple[int, float]]], path: str | Path) -> Path:
    """One small plot per scalar tag (log-y where all values are positive), written to ``path``."""
    plt = _plt()
    tags = sorted(series)
    cols = min(3, len(tags))
    rows = (len(tags) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax, tag in zip(axes.ravel(), tags):
        steps, values = zip(*series[tag])
        ax.plot(steps, values, lw=1.2)
        if min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        ax.set_title(tag, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(tags) :]:
        ax.axis("off")
    return _save(fig, path)


def histogram_plot(edges: np.ndarray, groups: dict[str, np.ndarray], path: str | Path, units: str = "") -> Path:
    """Overlaid step histograms (probability per bin) of ``groups`` on common ``edges``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3))
    for name, hist in groups.items():
        ax.stairs(hist, edges, label=name, lw=1.5)
    ax.set_xlabel(f"foreground intensity{f' ({units})' if units else ''}", fontsize=8)
    ax.set_ylabel("fraction of voxels", fontsize=8)
    ax.legend(fontsize=8)
    return _save(fig, path)


def bar_plot(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Real vs synthetic tissue volumes (mean ± sd, mL) from :func:`~medgen.evaluate.distributions.compare_volumes`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3))
    x = np.arange(len(rows))
    for offset, key, name in ((-0.2, "real", "real"), (0.2, "synthetic", "synthetic")):
        ax.bar(x + offset, [r[f"{key}_mean"] for r in rows], 0.4, yerr=[r[f"{key}_sd"] for r in rows], label=name)
    ax.set_xticks(x, [r["tissue"] for r in rows])
    ax.set_ylabel("volume (mL)", fontsize=8)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    plt = _plt()
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "<b class='flag'>FLAG</b>" if value else "ok"
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return html.escape("; ".join(str(v) for v in value))
    return html.escape(str(value))


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f0f0f0}.flag{color:#b00}figure{margin:1em 0}figcaption{font-size:13px;color:#555}
img{max-width:100%}.note{font-size:13px;color:#555}"""


class Report:
    """Sections of headings, paragraphs, tables and figures, written as one HTML page."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.figures: list[Path] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, note: bool = False) -> None:
        self.parts.append(f"<p{' class=note' if note else ''}>{html.escape(text)}</p>")

    def table(self, title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
        if not rows:
            return
        columns = list(columns or rows[0].keys())
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
        self.parts.append(f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body}</table>")

    def figure(self, png: str | Path, caption: str) -> None:
        png = Path(png)
        data = base64.b64encode(png.read_bytes()).decode()
        self.figures.append(png)
        self.parts.append(f"<figure><img alt='{html.escape(png.stem)}' data-file='figures/{html.escape(png.name)}' "
                          f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, out: str | Path, name: str = "index.html") -> Path:
        """Write ``out/name`` (atomically); figures must already sit in ``out/figures``."""
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}"
                "</body></html>\n")
        path = Path(out) / name
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(page, encoding="utf-8")
        return path


def jsonable(obj: Any) -> Any:
    """Results as plain JSON (floats, lists, dicts), for ``metrics.json`` next to the page."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
