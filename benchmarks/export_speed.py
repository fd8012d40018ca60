#!/usr/bin/env python
"""Benchmark: ONNX Runtime (CPU) against eager PyTorch for each exportable family.

For each family (a shipped spec, randomly initialised: the cost does not depend on trained
weights, except through how many candidates pass the score threshold: see the record), one
ONNX file per batch size (``anchorage.core.deploy.export_model``, fixed shapes: ORT's best
case) is timed against the eager model on the same images, both on one thread (torch
``set_num_threads(1)``, ORT ``intra_op_num_threads=1``, sequential). Rounds interleave the two
(eager then ORT, then the other way round), after one warm-up call each; the table gives the
median of each and ``speedup``, the median of the per-round ratios eager / ORT (> 1: ORT is
faster). Both take float images in 0..1 at the model's input size and resize/normalise
inside; eager returns its per-image dicts, ORT its fixed layout (numpy, no conversion).

``--profile`` adds, per family and batch, the three op types with the most ORT time
(``SessionOptions.enable_profiling``, one extra call) and the graph's op counts that explain
a slow graph (Cast, Loop / If / Scan, nodes in all).

example:
  OMP_NUM_THREADS=1 python benchmarks/export_speed.py --rounds 7 --profile \\
      --markdown benchmarks/results/export_cpu.md
  python benchmarks/export_speed.py --families tiny_ssd --batches 1 --size 64 --rounds 1
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = {
    "tiny_ssd": "tiny_ssd_shapes.yaml",
    "retinanet_r18": "retinanet_r18_fpn_shapes.yaml",
    "fcos_r18": "fcos_r18_fpn_shapes.yaml",
    "yolo": "yolo_shapes.yaml",
    "ssd300": "ssd300_vgg16_coco.yaml",
    "faster_rcnn_r18": "faster_rcnn_r18_fpn_bccd.yaml",
    "mask_rcnn_r18": "mask_rcnn_r18_fpn_shapes.yaml",
    "fcn_r18": "fcn_r18_shapes.yaml",
    "unet": "unet_shapes.yaml",
}
WATCHED_OPS = ("Cast", "Loop", "If", "Scan", "NonMaxSuppression", "TopK")


def parse_list(text: str, cast: Any, name: str) -> list:
    """``a,b,c`` → the items, each through ``cast``; AnchorageError naming the option."""
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        items = []
    if not items:
        raise AnchorageError(f"{name}: expected a comma-separated list, got {text!r}")
    return items


def build(spec_name: str, overrides: list[str]) -> Any:
    """The family's model, eval mode, seeded random weights."""
    import torch

    from anchorage.core import build_model, load_spec

    torch.manual_seed(0)
    return build_model(load_spec(str(ROOT / "specs" / spec_name), overrides=overrides)).eval()


def input_size(model: Any, size: tuple[int, int] | None) -> tuple[int, int]:
    """``size``, else the size the model's resize produces (tools/export.py's default)."""
    if size is not None:
        return size
    resize = model.export_info().get("resize") or {}
    if "fixed_size" in resize:
        return tuple(resize["fixed_size"])
    if "min_size" in resize:
        return resize["min_size"], resize["min_size"]
    return 128, 128


def session(path: Path, profile: bool = False) -> Any:
    """An ONNX Runtime CPU session on one thread, all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(path.with_suffix(""))
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(eager: Any, ort_call: Any, rounds: int) -> dict[str, float]:
    """Median ms of each and the median per-round ratio eager / ORT, after one warm-up each;
    odd rounds run ORT first."""
    eager(), ort_call()
    times: dict[str, list[float]] = {"eager": [], "ort": []}
    for r in range(rounds):
        order = (("eager", eager), ("ort", ort_call))
        for name, fn in order if r % 2 == 0 else order[::-1]:
            times[name].append(timed(fn))
    ratios = [e / o for e, o in zip(times["eager"], times["ort"])]
    return {
        "eager_ms": 1e3 * statistics.median(times["eager"]),
        "ort_ms": 1e3 * statistics.median(times["ort"]),
        "speedup": statistics.median(ratios),
    }


def op_profile(path: Path, feeds: dict[str, Any]) -> tuple[list[tuple[str, float]], Counter]:
    """ORT's own per-node times for one call (profiler JSON), summed per op type as shares of
    the total, most first; and the op counts of the optimised graph as ORT runs it (the
    profiler's nodes)."""
    sess = session(path, profile=True)
    sess.run(None, feeds)
    sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    last = runs[-1]["ts"] if runs else 0
    per_op: Counter = Counter()
    nodes: Counter = Counter()
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= last:
            per_op[args.get("op_name", "?")] += e["dur"]
            nodes[args.get("op_name", "?")] += 1
    total = sum(per_op.values()) or 1
    return [(op, t / total) for op, t in per_op.most_common()], nodes


def graph_ops(path: Path) -> Counter:
    """Op types of the exported (unoptimised) ONNX graph, subgraphs included."""
    import onnx

    counts: Counter = Counter()

    def walk(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(onnx.load(str(path)).graph)
    return counts


def measure_family(name: str, batch: int, args: Any, workdir: Path) -> dict[str, Any]:
    """One family at one batch size: export, time interleaved, optionally profile."""
    import torch

    from anchorage.core.deploy import export_model

    model = build(FAMILIES[name], args.overrides)
    h, w = input_size(model, args.size)
    gen = torch.Generator().manual_seed(1)
    images = list(torch.rand((batch, 3, h, w), generator=gen))
    path = workdir / f"{name}_b{batch}.onnx"
    start = time.perf_counter()
    export_model(model, format="onnx", example=images, out=path)
    export_s = time.perf_counter() - start
    feeds = {"images": torch.stack(images).numpy()}
    sess = session(path)

    def eager() -> None:
        with torch.inference_mode():
            model(images)

    row = {"family": name, "batch": batch, "size": f"{h}x{w}", "export_s": export_s}
    row.update(interleaved(eager, lambda: sess.run(None, feeds), args.rounds))
    if args.profile:
        shares, _ = op_profile(path, feeds)
        row["top_ops"] = ", ".join(f"{op} {s:.0%}" for op, s in shares[:3])
        ops = graph_ops(path)
        row["graph_ops"] = ", ".join(
            [f"{sum(ops.values())} nodes"] + [f"{op} {ops[op]}" for op in WATCHED_OPS if ops[op]]
        )
    return row


def table(rows: list[dict[str, Any]], profile: bool) -> str:
    head = ["family", "batch", "input", "eager ms", "ORT ms", "speedup (eager/ORT)", "export s"]
    if profile:
        head += ["ORT time by op type", "ONNX graph"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["family"], str(r["batch"]), r["size"], f"{r['eager_ms']:.1f}",
            f"{r['ort_ms']:.1f}", f"{r['speedup']:.2f}x", f"{r['export_s']:.0f}",
        ]  # fmt: skip
        if profile:
            cells += [r["top_ops"], r["graph_ops"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "?"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


def header(args: Any, argv: Sequence[str] | None) -> str:
    import onnxruntime
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    command = " ".join(["python", "benchmarks/export_speed.py", *(argv or sys.argv[1:])])
    return (
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU ({cpu_name()}), no GPU,"
        f" Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}; one thread each (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}).\n"
        f"Load average at the end (1, 5, 15 min): {load}.\n"
        f"Command: `{command}` ({args.rounds} interleaved rounds, medians)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help=f"comma list of {', '.join(FAMILIES)}"
    )
    parser.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument(
        "--size", default=None, help="input H,W or one side (default: each model's)"
    )
    parser.add_argument("--profile", action="store_true", help="ORT op-type times, op counts")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    families = parse_list(args.families, str, "--families")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise AnchorageError(f"--families: unknown {unknown}; expected some of {list(FAMILIES)}")
    batches = parse_list(args.batches, int, "--batches")
    args.size = tuple(parse_list(args.size, int, "--size")) if args.size else None
    if args.size is not None and len(args.size) == 1:
        args.size = args.size * 2
    if args.size is not None and (len(args.size) != 2 or min(args.size) < 16):
        raise AnchorageError(f"--size: expected H,W (or one side), each >= 16, got {args.size}")
    if args.rounds < 1:
        raise AnchorageError(f"--rounds: expected >= 1, got {args.rounds}")
    if args.markdown and not Path(args.markdown).resolve().parent.is_dir():
        raise AnchorageError(f"--markdown: folder {Path(args.markdown).parent} does not exist")

    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in families:
            for batch in batches:
                rows.append(measure_family(name, batch, args, Path(tmp)))
                print(table(rows[-1:], args.profile).splitlines()[-1], flush=True)
    text = header(args, argv) + "\n\n" + table(rows, args.profile) + "\n"
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
