#!/usr/bin/env python
"""Compare pipelines and torchvision / transformers baselines side by side, in one run.

An ENTRY is a spec file (specs/ssd300_vgg16_coco.yaml, or its name in the zoo), a
torchvision baseline built without weights (tv:ssd300_vgg16, tv:fasterrcnn_resnet50_fpn,
tv:maskrcnn_resnet50_fpn, tv:fcn_resnet50, ...) or a transformers twin of a set_prediction
spec entry (hf:detr, hf:deformable_detr, hf:deformable_detr_refine; needs pip install
transformers), its config derived from that spec. Per entry: parameters, GFLOPs, inference
latency p50/p90 and images/s per batch size, a per-stage breakdown, with --train the
train-step time, its stages (the matcher's share) and peak memory, and AP when --checkpoint
ENTRY=PATH and --dataset SPEC are given. Entries are timed interleaved round by round after
warm-up, CUDA-synchronised, with fixed seeds and identical inputs. A spec whose twin (tv:NAME
or hf:NAME or a baseline's label, from --twin or the suite, else a baseline in the run whose
converted weights fit) has a converter for its model type gets the twin's weights, so the two
compute the same outputs and compare like with like.

Prints Markdown tables (ratios to the first entry, twin ratios); --json and --plot write the
record (with an environment fingerprint) and a latency plot. --set applies to every spec
entry; on a CPU shared with other processes, --clock cpu --threads 1 compares twins fairly.

examples:
  tools/benchmark.py tv:ssd300_vgg16 specs/ssd300_vgg16_coco.yaml --rounds 20 --train
  tools/benchmark.py --suite benchmarks/vs_torchvision.yaml --json out.json --plot out.png
  tools/benchmark.py --suite benchmarks/vs_transformers.yaml --clock cpu --threads 1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anchorage.core.cli import make_parser, run_tool
from anchorage.core.errors import AnchorageError


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,8, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 1,8, got {text!r}")
    return sizes


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected ENTRY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__)
    p.add_argument("entries", nargs="*", metavar="ENTRY", help="spec file, tv:NAME or hf:NAME")
    p.add_argument("--suite", help="YAML suite: entries and settings (benchmarks/*.yaml)")
    p.add_argument(
        "--only",
        type=lambda t: [x for x in t.split(",") if x],
        default=[],
        metavar="NAMES",
        help="measure only these entries of the suite (labels or sources, comma-separated)",
    )
    _add_settings(p)
    _add_weights_and_outputs(p)
    return p


def _add_settings(p: argparse.ArgumentParser) -> None:
    """Options of the Settings fields (None when not given, so the suite's value stays)."""
    p.add_argument("--batch-sizes", type=_sizes, help="inference batch sizes, e.g. 1,8")
    p.add_argument("--train-batch-sizes", type=_sizes, help="train-step batch sizes")
    p.add_argument("--image-size", type=int, help="side of the square input images (300)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    flag = argparse.BooleanOptionalAction
    p.add_argument("--amp", action=flag, help="autocast (bfloat16 on CPU, float16 on CUDA)")
    p.add_argument("--channels-last", action=flag, help="channels_last model weights")
    p.add_argument("--compile", action=flag, help="time torch.compile'd models")
    p.add_argument("--train", action=flag, help="also time a train step, with peak memory")
    p.add_argument("--rounds", type=int, help="timed interleaved rounds (10)")
    p.add_argument("--warmup", type=int, help="discarded warm-up rounds (2)")
    p.add_argument("--stage-iters", type=int, help="forwards averaged per stage breakdown (3)")
    p.add_argument("--seed", type=int, help="seed of weights and inputs (0)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (torch's default)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        help="wall: elapsed time (default); cpu: process CPU time, robust on a shared CPU",
    )
    p.add_argument(
        "--twin-target",
        type=float,
        help="largest time ratio to the twin the Twins table accepts (1.05)",
    )
    p.add_argument(
        "--no-convert",
        dest="convert_twins",
        action="store_const",
        const=False,
        help="keep every entry's own random weights (no twin conversion)",
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        help="no tqdm progress bar",
    )


def _add_weights_and_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--twin",
        action="append",
        type=_pair,
        default=[],
        metavar="ENTRY=TWIN",
        help="give a spec entry the converted weights of this baseline (tv:NAME, hf:NAME)",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        type=_pair,
        default=[],
        metavar="ENTRY=PATH",
        help="weights for an entry's AP on --dataset (repeatable)",
    )
    p.add_argument("--dataset", help="spec whose data and eval sections give AP")
    p.add_argument("--json", help="write the JSON record here")
    p.add_argument("--markdown", help="also write the Markdown tables here")
    p.add_argument("--plot", help="write a PNG: latency vs AP (or GFLOPs)")


def setting_args() -> tuple[str, ...]:
    """Every setting has an option of the same name (argparse dest); None = not given."""
    import attrs

    from anchorage.benchmarking import Settings

    return tuple(f.name for f in attrs.fields(Settings))


def gather_requests(args: argparse.Namespace, suite_entries: Sequence[Any]) -> list:
    """Suite entries then command-line ones, with --set, --twin and --checkpoint applied."""
    import attrs

    from anchorage.benchmarking import EntryRequest
    from anchorage.benchmarking.entries import is_baseline

    requests = [*suite_entries, *(EntryRequest(source=e) for e in args.entries)]
    if args.only:
        keep = {_match(name, requests, "only") for name in args.only}
        requests = [r for r in requests if r.name in keep]
    extra: dict[str, dict[str, Any]] = {}
    for option, field in ((args.twin, "twin"), (args.checkpoint, "checkpoint")):
        for key, value in option:
            extra.setdefault(_match(key, requests, field), {})[field] = value
    out = []
    for r in requests:
        changes = dict(extra.get(r.name, {}))
        if args.overrides and not is_baseline(r.source):
            changes["overrides"] = (*r.overrides, *args.overrides)
        out.append(attrs.evolve(r, **changes) if changes else r)
    return out


def _match(key: str, requests: Sequence[Any], option: str) -> str:
    for r in requests:
        if key in (r.name, r.source):
            return r.name
    names = ", ".join(r.name for r in requests) or "none"
    shown = f"--{option} {key}" + ("" if option == "only" else "=...")
    raise AnchorageError(f"{shown}: no entry named {key!r} (entries: {names})")


def converters() -> Mapping[Any, Any]:
    """Weight converters of the benchmark's twins ({} when none installed).

    ``anchorage.plugins.models.convert.CONVERTERS`` maps (source, model type) → converter;
    the benchmark's twins are torchvision models (kept by model type) and transformers models
    (kept by ``("transformers", model type)``). Model modules register their converters when
    imported, so the plugins are loaded first.
    """
    from anchorage.core.plugins import ensure_plugins_loaded

    ensure_plugins_loaded()
    try:
        from anchorage.plugins.models.convert import CONVERTERS
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("anchorage.plugins.models"):
            return {}
        raise
    table: dict[Any, Any] = {mt: fn for (src, mt), fn in CONVERTERS.items() if src == "torchvision"}
    return table | {key: fn for key, fn in CONVERTERS.items() if key[0] == "transformers"}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from anchorage.benchmarking import (
        environment,
        load_suite,
        make_settings,
        markdown,
        plot,
        run_benchmark,
        to_json,
        write_json,
    )
    from anchorage.core import load_spec

    suite = load_suite(args.suite) if args.suite else None
    cli = {k: getattr(args, k) for k in setting_args()}  # an option missing here is a bug
    settings = make_settings(suite.settings if suite else {}, cli)
    requests = gather_requests(args, suite.entries if suite else ())
    dataset = args.dataset or (suite.dataset if suite else None)
    dataset_spec = load_spec(dataset) if dataset else None
    results = run_benchmark(requests, settings, converters=converters(), dataset_spec=dataset_spec)
    env = environment(settings.device)
    text = markdown(results, settings, env)
    print(text)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.json:
        write_json(to_json(results, settings, env), args.json)
    if args.plot:
        plot(results, settings, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
