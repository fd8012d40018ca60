"""Benchmark reports: environment fingerprint, Markdown tables, JSON record, PNG plot."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from .runner import EntryResult
from .settings import Settings
from .stages import STAGE_ORDER, TRAIN_STEP_STAGE
from .timing import paired_ratio

TWIN_TARGET: float = attrs.fields(Settings).twin_target.default
"""An anchorage pipeline may take at most this multiple of its twin's time (the default of
``Settings.twin_target``)."""


def environment(device: str) -> dict[str, Any]:
    """Versions, device and threads: what a timing depends on."""
    import importlib.util

    import torchvision

    transformers = None
    if importlib.util.find_spec("transformers") is not None:
        from importlib.metadata import version

        transformers = version("transformers")
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    else:
        name = cpu_model()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "device": device,
        "device_name": name,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": _git_commit(),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, fixed args
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _twin_of(r: EntryResult, results: Sequence[EntryResult]) -> EntryResult | None:
    """The entry ``r.twin`` names (by name, else by source), or None."""
    if not r.twin:
        return None
    by_name = {x.name: x for x in results}
    return by_name.get(r.twin) or next((x for x in results if x.source == r.twin), None)


def matching_share(r: EntryResult) -> float | None:
    """The ``assign`` stage's share of a measured train step (None without one)."""
    total, assign = r.train_stages.get("total"), r.train_stages.get("assign")
    return assign / total if total and assign is not None else None


def twin_pairs(results: Sequence[EntryResult], target: float = TWIN_TARGET) -> list[dict[str, Any]]:
    """For each entry with a twin in the run: time ratios entry / twin per batch size (of the
    p50s, and ``paired_ratio``'s median of per-round ratios with its 95 % interval), both
    matching shares of a train step where measured, ``within_target`` (every p50 ratio at most
    ``target``) and ``target_shown`` (also every interval's upper end at most ``target``; None
    when the record has no per-round times)."""
    pairs = []
    for r in results:
        twin = _twin_of(r, results)
        if twin is None or r is twin:
            continue
        infer = {bs: _ratio(r.infer, twin.infer, bs) for bs in r.infer}
        train = {bs: _ratio(r.train, twin.train, bs) for bs in r.train}
        paired = {
            kind: {bs: _paired(getattr(r, kind), getattr(twin, kind), bs) for bs in table}
            for kind, table in (("infer", r.infer), ("train", r.train))
        }
        ratios = [x for x in (*infer.values(), *train.values()) if x is not None]
        within = bool(ratios) and max(ratios) <= target
        highs = [p["high"] for table in paired.values() for p in table.values() if p]
        pairs.append(
            {
                "entry": r.name,
                "twin": twin.name,
                "weights": r.weights,
                "outputs_same": r.twin_check.get("same"),
                "infer_ratio": infer,
                "train_ratio": train,
                "infer_paired": paired["infer"],
                "train_paired": paired["train"],
                "matching_share": matching_share(r),
                "twin_matching_share": matching_share(twin),
                "within_target": within,
                "target_shown": (within and max(highs) <= target) if highs else None,
            }
        )
    return pairs


def _paired(a: dict, b: dict, bs: int) -> dict[str, float] | None:
    x, y = a.get(bs, {}).get("rounds_ms"), b.get(bs, {}).get("rounds_ms")
    return paired_ratio(x, y) if x and y else None


def noisy_comparisons(results: Sequence[EntryResult]) -> list[dict[str, Any]]:
    """Comparisons the timings cannot support: pairs (each entry with its twin, and each entry
    with the first entry) and batch sizes where the two cannot be told apart. With per-round
    times (``rounds_ms``): the 95 % interval of ``paired_ratio`` holds 1.0 (``interval``).
    Without (older records): the larger p90 − p50 spread of the two exceeds the difference of
    their p50s (``spread_ms``, ``p50_diff_ms``), a cruder test that more rounds cannot pass."""
    pairs = []
    for r in results:
        twin = _twin_of(r, results)
        if twin is not None and twin is not r:
            pairs.append((r, twin, "twin"))
        if results and r is not results[0] and results[0] is not twin:
            pairs.append((r, results[0], "first"))
    found = []
    for a, b, role in pairs:
        for kind in ("infer", "train"):
            ta, tb = getattr(a, kind), getattr(b, kind)
            for bs in ta:
                where = {"entry": a.name, "other": b.name, "role": role, "kind": kind, "batch": bs}
                paired = _paired(ta, tb, bs)
                if paired is not None:
                    if paired["low"] <= 1.0 <= paired["high"]:
                        found.append({**where, "interval": [paired["low"], paired["high"]]})
                    continue
                spread, diff = _spread_and_diff(ta.get(bs, {}), tb.get(bs, {}))
                if spread is not None and spread > diff:
                    found.append({**where, "spread_ms": spread, "p50_diff_ms": diff})
    return found


def _spread_and_diff(a: dict, b: dict) -> tuple[float | None, float]:
    keys = ("p50_ms", "p90_ms")
    if not all(isinstance(t.get(k), (int, float)) for t in (a, b) for k in keys):
        return None, 0.0
    spread = max(a["p90_ms"] - a["p50_ms"], b["p90_ms"] - b["p50_ms"])
    return spread, abs(a["p50_ms"] - b["p50_ms"])


def _ratio(a: dict, b: dict, bs: int) -> float | None:
    x, y = a.get(bs, {}).get("p50_ms"), b.get(bs, {}).get("p50_ms")
    return x / y if x and y else None


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _millions(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}"


def markdown(results: Sequence[EntryResult], settings: Settings, env: dict[str, Any]) -> str:
    """All tables of a run; ratios are p50 relative to the first entry (same batch size)."""
    lines = [
        f"Device: {env['device']} ({env['device_name']}), torch {env['torch']}, "
        f"torchvision {env['torchvision']}"
        + (f", transformers {env['transformers']}" if env.get("transformers") else "")
        + f", {env['torch_threads']} threads; "
        f"images {settings.image_size}×{settings.image_size}, {settings.rounds} interleaved "
        f"rounds after {settings.warmup} warm-up, seed {settings.seed}, "
        f"{'process CPU time' if settings.clock == 'cpu' else 'wall-clock time'}"
        + (", AMP" if settings.amp else "")
        + (", channels_last" if settings.channels_last else "")
        + (", torch.compile" if settings.compile else ""),
        "",
        "### Inference (eval forward)",
        "",
        "| entry | weights | params (M) | GFLOPs | batch | p50 ms | p90 ms | images/s | × first |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = results[0] if results else None
    for r in results:
        for bs in settings.batch_sizes:
            t = r.infer.get(bs, {})
            lines.append(
                f"| {r.name} | {r.weights or '–'} | {_millions(r.params)} | {_fmt(r.gflops)} "
                f"| {bs} | {_cell(t, 'p50_ms')} | {_cell(t, 'p90_ms')} "
                f"| {_cell(t, 'images_per_s')} | {_fmt(_ratio(r.infer, first.infer, bs), 2)} |"
            )
    if settings.train:
        lines += _train_table(results, settings)
    lines += _twin_table(results, settings.twin_target)
    lines += _noise_notes(results, settings)
    lines += _stage_table(results, settings)
    if settings.train:
        lines += _train_stage_table(results, settings)
    lines += _ap_table(results)
    notes = [f"- {r.name}: {e}" for r in results for e in r.errors]
    if notes:
        lines += ["", "### Errors", "", *notes]
    return "\n".join(lines) + "\n"


def _cell(t: dict, key: str) -> str:
    if "error" in t:
        return "OOM" if t["error"].startswith("OOM") else "error"
    return _fmt(t.get(key))


def _train_table(results: Sequence[EntryResult], settings: Settings) -> list[str]:
    lines = [
        "",
        "### Train step (forward + backward + SGD step)",
        "",
        "| entry | trainable (M) | batch | p50 ms | p90 ms | images/s | × first | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = results[0]
    for r in results:
        for bs in settings.train_sizes():
            t = r.train.get(bs, {})
            peak = _fmt(r.train_peak_mib, 0) if r.train_peak_batch == bs else ""
            lines.append(
                f"| {r.name} | {_millions(r.trainable_params)} | {bs} | {_cell(t, 'p50_ms')} "
                f"| {_cell(t, 'p90_ms')} | {_cell(t, 'images_per_s')} "
                f"| {_fmt(_ratio(r.train, first.train, bs), 2)} | {peak} |"
            )
    methods = sorted({r.train_peak_method for r in results if r.train_peak_method})
    lines += ["", *[f"Peak memory: {m}." for m in methods]]
    return lines


def _twin_table(results: Sequence[EntryResult], target: float) -> list[str]:
    pairs = twin_pairs(results, target)
    if not pairs:
        return []
    lines = [
        "",
        f"### Twins (same weights, same inputs; target ≤ {target:.2f}× the twin)",
        "",
        "| entry | twin | same outputs | inference × twin | train × twin | within target "
        "| matching share (entry / twin) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        same = {True: "yes", False: "NO", None: "–"}[p["outputs_same"]]
        infer = _ratios_cell(p["infer_ratio"], p["infer_paired"])
        train = _ratios_cell(p["train_ratio"], p["train_paired"])
        verdict = _verdict(p)
        shares = (p["matching_share"], p["twin_matching_share"])
        share = " / ".join("–" if x is None else f"{100 * x:.1f} %" for x in shares)
        lines.append(
            f"| {p['entry']} | {p['twin']} | {same} | {infer or '–'} | {train or '–'} | {verdict} "
            f"| {share if any(x is not None for x in shares) else '–'} |"
        )
    lines += [
        "",
        "Ratios: the entry's p50 over the twin's, then in brackets the 95 % bootstrap interval "
        "of the median per-round ratio (the rounds are interleaved, so each round pairs the "
        "two). Within target: every p50 ratio at most the target; *within noise* when an "
        "interval reaches above it.",
    ]
    return lines


def _verdict(pair: dict[str, Any]) -> str:
    if not pair["within_target"]:
        return "**NO**"
    return "yes, within noise" if pair["target_shown"] is False else "yes"


def _ratios_cell(ratios: dict, paired: dict) -> str:
    """``b2: 0.931 [0.912, 0.950]``: the p50 ratio, then the paired ratios' 95 % interval."""
    cells = []
    for bs, x in ratios.items():
        p = paired.get(bs)
        ci = f" [{p['low']:.3f}, {p['high']:.3f}]" if p else ""
        cells.append(f"b{bs}: {_fmt(x, 3)}{ci}")
    return ", ".join(cells)


def _noise_notes(results: Sequence[EntryResult], settings: Settings) -> list[str]:
    found = noisy_comparisons(results)
    if not found:
        return []
    clock = "process CPU time" if settings.clock == "cpu" else "wall clock"
    lines = [
        "",
        "### Timing noise",
        "",
        f"These timings ({clock}) cannot tell the two entries apart: the 95 % interval of "
        "the per-round ratio holds 1.0 (or, in a record without per-round times, the p50 "
        "difference is smaller than the p90 − p50 spread); use more rounds"
        + (", or --clock cpu --threads 1 on a shared CPU," if settings.clock != "cpu" else "")
        + " before reading the ratio.",
        "",
    ]
    for n in found:
        what = "inference" if n["kind"] == "infer" else "train step"
        why = (
            f"per-round ratio in [{n['interval'][0]:.3f}, {n['interval'][1]:.3f}]"
            if "interval" in n
            else f"p50 difference {n['p50_diff_ms']:.2f} ms < spread {n['spread_ms']:.2f} ms"
        )
        lines.append(f"- WARNING {n['entry']} vs {n['other']} ({what}, batch {n['batch']}): {why}")
    return lines


def _stage_table(results: Sequence[EntryResult], settings: Settings) -> list[str]:
    seen = {s for r in results for s in r.stages} - {"other", "total"}
    names = [s for s in STAGE_ORDER if s in seen] + sorted(seen - set(STAGE_ORDER))
    if not names:
        return []
    cols = [*names, "other", "total"]
    lines = [
        "",
        f"### Stages (exclusive ms per forward, batch {settings.batch_sizes[0]})",
        "",
        "| entry | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for r in results:
        if r.stages:
            lines.append(f"| {r.name} | " + " | ".join(_fmt(r.stages.get(c)) for c in cols) + " |")
    return lines


def _train_stage_table(results: Sequence[EntryResult], settings: Settings) -> list[str]:
    """Exclusive ms per train step by stage (``other``: the forward's glue; backward + step:
    the rest), and the matcher's (``assign``) share of the step."""
    rows = [r for r in results if r.train_stages]
    seen = {s for r in rows for s in r.train_stages} - {"other", TRAIN_STEP_STAGE, "total"}
    names = [s for s in STAGE_ORDER if s in seen] + sorted(seen - set(STAGE_ORDER))
    if not rows:
        return []
    cols = [*names, "other", TRAIN_STEP_STAGE, "total"]
    head = [c.replace("_", " + ") if c == TRAIN_STEP_STAGE else c for c in cols]
    lines = [
        "",
        f"### Train-step stages (exclusive ms per step, batch {settings.train_sizes()[0]}; "
        "other: the forward's glue)",
        "",
        "| entry | " + " | ".join(head) + " | matching share |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for r in rows:
        share = matching_share(r)
        cells = [_fmt(r.train_stages.get(c)) for c in cols]
        pct = "–" if share is None else f"{100 * share:.1f} %"
        lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {pct} |")
    return lines


def _ap_table(results: Sequence[EntryResult]) -> list[str]:
    """Accuracy side by side: one row per metric, one column per entry that has metrics."""
    entries = [r for r in results if r.metrics]
    if not entries:
        return []
    keys = list(dict.fromkeys(k for r in entries for k in r.metrics))
    lines = [
        "",
        "### Accuracy",
        "",
        "| metric | " + " | ".join(r.name for r in entries) + " |",
        "|---|" + "---:|" * len(entries),
    ]
    for key in keys:
        cells = [_fmt(r.metrics.get(key), 4) for r in entries]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def to_json(
    results: Sequence[EntryResult], settings: Settings, env: dict[str, Any]
) -> dict[str, Any]:
    """The whole record: environment, settings, per-entry results, twin ratios."""
    return {
        "environment": env,
        "settings": attrs.asdict(settings),
        "entries": [attrs.asdict(r) for r in results],
        "twins": twin_pairs(results, settings.twin_target),
        "timing_noise": noisy_comparisons(results),
    }


def write_json(record: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def plot(results: Sequence[EntryResult], settings: Settings, path: str | Path) -> Path:
    """Scatter of p50 latency (first batch size) against AP when every entry has one, else
    against GFLOPs; each point labelled with its entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bs = settings.batch_sizes[0]
    points = [(r, r.infer.get(bs, {}).get("p50_ms")) for r in results]
    points = [(r, t) for r, t in points if t is not None]
    use_ap = bool(points) and all(r.ap is not None for r, _ in points)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r, t in points:
        y = r.ap[1] if use_ap and r.ap else r.gflops
        if y is None:
            continue
        ax.scatter([t], [y])
        ax.annotate(r.name, (t, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"inference latency p50 (ms, batch {bs}, {settings.device})")
    ax.set_ylabel(points[0][0].ap[0] if use_ap else "GFLOPs per image (batch-1 forward)")
    ax.margins(x=0.35, y=0.2)  # room for the labels right of each point
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
