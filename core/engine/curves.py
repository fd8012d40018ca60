"""Training curves from ``metrics.jsonl``: loss terms, learning rate and evaluation metrics of
one or several runs, overlaid in one PNG (matplotlib, Agg backend; no TensorBoard needed).

``read_metrics(path)`` reads a run's JSON lines into ``{"train": rows, "<split>": rows}``;
``plot_runs(runs, out)`` draws one panel per loss term, one for the learning rate(s) and one
per evaluation metric, x = iteration, one colour per run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import AnchorageError

META = ("kind", "epoch", "iteration", "time")
DEFAULT_METRICS = re.compile(r"(^|/)(AP|AP50|AP75|mIoU|pixel_acc|mAP)$")
"""Evaluation metrics drawn unless ``metrics`` names others (COCO's 12 numbers are many)."""


def read_metrics(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of ``metrics.jsonl`` (or ``WORK_DIR/metrics.jsonl``) grouped by ``kind``.

    A resumed run's repeated iterations keep the last row (the one the resumed run wrote).
    """
    file = Path(path)
    if file.is_dir():
        file = file / "metrics.jsonl"
    if not file.is_file():
        raise AnchorageError(f"{file}: no metrics.jsonl (give a work dir of tools/train.py)")
    groups: dict[str, dict[int, dict[str, Any]]] = {}
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            kind, iteration = str(row["kind"]), int(row["iteration"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AnchorageError(f"{file}:{n}: not a metrics line ({exc})") from None
        groups.setdefault(kind, {})[iteration] = row
    return {k: [rows[i] for i in sorted(rows)] for k, rows in groups.items()}


def panels(
    runs: Mapping[str, Mapping[str, list[dict[str, Any]]]], metrics: Sequence[str] = ()
) -> list[tuple[str, str, str]]:
    """The panels to draw, as ``(title, kind, key)``: every ``loss*`` term of the train rows,
    ``lr`` (and ``lr_group<i>``), then the evaluation metrics (``metrics``, else the default
    summary numbers, else all of them)."""
    train_keys: dict[str, None] = {}
    eval_keys: dict[tuple[str, str], None] = {}
    for groups in runs.values():
        for kind, rows in groups.items():
            for row in rows:
                for key, value in row.items():
                    if key in META or not isinstance(value, (int, float)):
                        continue
                    if kind == "train":
                        train_keys[key] = None
                    else:
                        eval_keys[kind, key] = None
    losses = sorted((k for k in train_keys if k.startswith("loss")), key=lambda k: (k != "loss", k))
    out = [(f"train {k}", "train", k) for k in losses]
    out += [(f"train {k}", "train", k) for k in sorted(train_keys) if re.fullmatch(r"lr(_.*)?", k)]
    wanted = [e for e in eval_keys if e[1] in metrics] if metrics else []
    if metrics and not wanted:
        known = ", ".join(sorted({k for _, k in eval_keys})) or "none"
        raise AnchorageError(f"--metrics {','.join(metrics)}: no such metric (logged: {known})")
    if not metrics:
        wanted = [e for e in eval_keys if DEFAULT_METRICS.search(e[1])] or list(eval_keys)
    out += [(f"{kind} {key}", kind, key) for kind, key in wanted]
    return out


def plot_runs(
    runs: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    out: str | Path,
    *,
    metrics: Sequence[str] = (),
    columns: int = 3,
) -> Path:
    """Draw every panel (see ``panels``) with one line per run (x: iteration); write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = panels(runs, metrics)
    if not chosen:
        raise AnchorageError("no numbers to plot: metrics.jsonl has no loss, lr or eval rows")
    cols = min(columns, len(chosen))
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes.flat, chosen):
        _draw_panel(ax, panel, runs, colours)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94 if handles else 1))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _draw_panel(
    ax: Any,
    panel: tuple[str, str, str],
    runs: Mapping[str, Mapping[str, list[dict[str, Any]]]],
    colours: Sequence[str],
) -> None:
    """One panel: ``key`` of ``kind`` rows against iteration, a line per run."""
    title, kind, key = panel
    for i, (name, groups) in enumerate(runs.items()):
        rows = [r for r in groups.get(kind, []) if r.get(key) is not None]
        if rows:
            xs, ys = [r["iteration"] for r in rows], [r[key] for r in rows]
            marker = "o" if kind != "train" else None
            ax.plot(xs, ys, label=name, color=colours[i % len(colours)], marker=marker, ms=3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if key.startswith("lr"):
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
