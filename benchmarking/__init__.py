"""Side-by-side benchmarks of pipelines (spec files), torchvision baselines and transformers
twins (``hf:``, built to mirror a set-prediction spec).

``run_benchmark(requests, settings)`` measures every entry in one process: parameters,
GFLOPs, inference latency percentiles and images/s per batch size (interleaved round-robin
rounds after warm-up, CUDA-synchronised, fixed seeds), a per-stage breakdown of a forward and
of a train step (the matcher's share), train-step time and peak memory, and AP from a
checkpoint. ``report`` turns the results into Markdown, JSON
(with an environment fingerprint) and a PNG plot. ``tools/benchmark.py`` is the command line.
"""

from .entries import (
    BenchEntry,
    EntryRequest,
    SegmentationAdapter,
    resolve_entry,
    torchvision_baselines,
)
from .report import cpu_model, environment, markdown, plot, to_json, twin_pairs, write_json
from .runner import EntryResult, run_benchmark
from .settings import Settings, Suite, load_suite, make_settings
from .stages import measure_stages, stage_targets
from .transformers_twins import HF_BASELINES, TransformersDetector, build_transformers_twin

__all__ = [
    "BenchEntry",
    "EntryRequest",
    "EntryResult",
    "HF_BASELINES",
    "SegmentationAdapter",
    "Settings",
    "Suite",
    "TransformersDetector",
    "build_transformers_twin",
    "cpu_model",
    "environment",
    "load_suite",
    "make_settings",
    "markdown",
    "measure_stages",
    "plot",
    "resolve_entry",
    "run_benchmark",
    "stage_targets",
    "to_json",
    "torchvision_baselines",
    "twin_pairs",
    "write_json",
]
