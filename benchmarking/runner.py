"""Runs a benchmark: builds every entry, times them interleaved, gathers the results.

Order of work: resolve all entries (errors before anything is built; a transformers twin
finds the spec entry it mirrors) → build models with a fixed seed (baselines first, so that
anchorage entries can take their converted weights) → parameters, GFLOPs, twin output check →
interleaved timing rounds of every (entry, inference/train, batch size) → per-stage breakdown
of a forward and of a train step → train-step peak memory → AP.
An entry that fails at any point (out of memory, or a model error) is reported in its row with
the message; the others go on. User errors (a checkpoint that does not fit) stop the run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from anchorage.core.checkpoint import check_state_fits, model_state, read_checkpoint
from anchorage.core.errors import AnchorageError

from .entries import (
    HF_PREFIX,
    BenchEntry,
    Converters,
    EntryRequest,
    build_transformers_twin,
    check_baseline,
    convert_twin_weights,
    find_converter,
    find_entry,
    framework_of,
    hf_arch,
    resolve_entry,
)
from .measure import (
    compare_outputs,
    count_gflops,
    count_parameters,
    evaluate_checkpoint,
    make_batch,
    make_infer,
    make_train_step,
    peak_step_memory,
    primary_metric,
)
from .settings import Settings
from .stages import TRAIN_STEP_STAGE, measure_stages
from .timing import (
    CLOCKS,
    TimedTask,
    failure_message,
    is_out_of_memory,
    release_memory,
    run_interleaved,
)
from .timing import summarize as summarize_times


@attrs.define(kw_only=True)
class EntryResult:
    """Everything measured for one entry (milliseconds, MiB, GFLOPs per batch-1 forward).

    ``infer`` / ``train``: batch size → timing summary (``p50_ms``, ``p90_ms``, ``mean_ms``,
    ``min_ms``, ``images_per_s``, ``n``) or ``{"error": "OOM ..."}``; ``stages``: stage →
    exclusive ms of an eval forward at the first batch size; ``train_stages``: the same for
    a train step at the first train batch size (``backward_step``: backward and optimizer);
    ``twin``: the name of the entry whose weights were converted; ``weights``: where the
    weights came from.
    """

    name: str
    source: str
    kind: str
    task: str
    model_type: str | None = None
    twin: str | None = None
    weights: str = ""
    params: int | None = None
    trainable_params: int | None = None
    gflops: float | None = None
    infer: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    train: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    stages: dict[str, float] = attrs.field(factory=dict)
    train_stages: dict[str, float] = attrs.field(factory=dict)
    train_peak_mib: float | None = None
    train_peak_batch: int | None = None
    train_peak_method: str = ""
    metrics: dict[str, float] = attrs.field(factory=dict)
    ap: tuple[str, float] | None = None
    twin_check: dict[str, Any] = attrs.field(factory=dict)
    errors: list[str] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class _Live:
    """An entry's models during the run (the inference model and its train-mode copy)."""

    entry: BenchEntry
    result: EntryResult
    model: nn.Module | None = None
    train_model: nn.Module | None = None


def run_benchmark(
    requests: Sequence[EntryRequest],
    settings: Settings,
    *,
    converters: Converters | None = None,
    dataset_spec: Any = None,
) -> list[EntryResult]:
    """Measure every requested entry in one process; results in request order."""
    entries = _resolve(requests, settings, dataset_spec)
    device = torch.device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    live = [_Live(entry=e, result=_new_result(e)) for e in entries]
    order = sorted(live, key=lambda lv: lv.entry.kind == "spec")
    for lv in order:
        _guard(lv, device, "build", lambda lv=lv: _build(lv, live, settings, converters or {}))
    for lv in live:
        _guard(lv, device, "measure", lambda lv=lv: _describe(lv, live, settings, device))
    tasks = _timing_tasks(live, settings, device)
    run_interleaved(
        tasks,
        rounds=settings.rounds,
        warmup=settings.warmup,
        device=device,
        progress=settings.progress,
        clock=CLOCKS[settings.clock],
    )
    _collect(live, tasks)
    for lv in live:
        _guard(lv, device, "stages", lambda lv=lv: _stages(lv, settings, device))
        _guard(lv, device, "memory", lambda lv=lv: _memory(lv, settings, device))
        lv.model = lv.train_model = None
        release_memory(device)
    for lv in live:
        if lv.entry.request.checkpoint:
            _guard(lv, device, "AP", lambda lv=lv: _ap(lv, dataset_spec, settings, device))
    return [lv.result for lv in live]


def _resolve(
    requests: Sequence[EntryRequest], settings: Settings, dataset_spec: Any
) -> list[BenchEntry]:
    """Check the whole request before anything is built (user errors raise AnchorageError)."""
    if not requests:
        raise AnchorageError("nothing to benchmark: give at least one entry or a --suite")
    names = [r.name for r in requests]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AnchorageError(
            f"entry names must be unique, {dupes} appear more than once; give each a label "
            "(suite key 'label')"
        )
    entries = _resolve_entries(requests)
    if any(e.request.checkpoint for e in entries) and dataset_spec is None:
        raise AnchorageError("--checkpoint needs --dataset SPEC (the data and metrics for AP)")
    if settings.clock == "cpu" and settings.device.startswith("cuda"):
        raise AnchorageError("clock 'cpu' measures host CPU time; use clock 'wall' on CUDA")
    return entries


def _resolve_entries(requests: Sequence[EntryRequest]) -> list[BenchEntry]:
    """Specs and torchvision baselines first, then each transformers twin with the spec it
    mirrors; every twin a spec names must be an entry of the run or a known baseline."""
    names, sources = [r.name for r in requests], [r.source for r in requests]
    done = {
        i: resolve_entry(r) for i, r in enumerate(requests) if not r.source.startswith(HF_PREFIX)
    }
    for e in done.values():
        ref = e.request.twin
        if ref and find_entry(ref, names, sources) is None:
            check_baseline(ref, f"{e.name}: twin {ref!r}: ")
    claimed: set[int] = set()
    for i, r in enumerate(requests):
        if r.source.startswith(HF_PREFIX):
            done[i] = resolve_entry(r, mirror=_mirror(i, requests, done, claimed))
    return [done[i] for i in range(len(requests))]


def _mirror(
    i: int, requests: Sequence[EntryRequest], done: Mapping[int, BenchEntry], claimed: set[int]
) -> Any:
    """The spec the transformers entry ``i`` mirrors: the spec entry naming it as its twin,
    else the first spec entry without a twin that it can mirror (None when there is none)."""
    from .transformers_twins import mirrors

    names, sources = [r.name for r in requests], [r.source for r in requests]
    specs = {j: e for j, e in sorted(done.items()) if e.kind == "spec"}
    names_twin = lambda e: find_entry(e.request.twin, names, sources) == i  # noqa: E731
    naming = [j for j, e in specs.items() if e.request.twin and names_twin(e)]
    if len(naming) > 1:
        which = ", ".join(specs[j].name for j in naming)
        raise AnchorageError(
            f"{requests[i].name} is the twin of several spec entries ({which}); a transformers "
            "twin mirrors one spec: give each its own hf: entry with a label and name that"
        )
    if naming:
        return specs[naming[0]].spec
    arch = hf_arch(requests[i].source)
    for j, e in specs.items():
        if not e.request.twin and j not in claimed and mirrors(arch, e.spec):
            claimed.add(j)
            return e.spec
    return None


def _new_result(e: BenchEntry) -> EntryResult:
    return EntryResult(
        name=e.name,
        source=e.request.source,
        kind=e.kind,
        task=e.task,
        model_type=e.model_type,
        twin=e.request.twin,
    )


def _guard(lv: _Live, device: torch.device, what: str, fn: Any) -> None:
    """Run one step of an entry; a failure (OOM or a model error) ends the entry, not the run.

    Steps after a failed build or measurement are skipped for that entry."""
    if what in ("measure", "stages", "memory") and lv.model is None:
        return
    try:
        fn()
    except AnchorageError:
        raise  # a user error (bad checkpoint, spec): the tool reports it and exits 2
    except Exception as exc:  # reported in the entry's row; the other entries go on
        lv.result.errors.append(failure_message(exc, what))
        if what != "AP":
            lv.model = lv.train_model = None
        release_memory(device)


def _build(lv: _Live, live: list[_Live], settings: Settings, converters: Converters) -> None:
    """Build the entry's model with the run's seed and load its weights (twin or random)."""
    torch.manual_seed(settings.seed)
    model = lv.entry.build()
    lv.result.weights = f"random (seed {settings.seed})"
    if lv.entry.kind == "spec" and settings.convert_twins:
        _load_twin(lv, model, live, settings, converters)
    elif lv.entry.request.checkpoint:
        _load_weights(model, lv.entry.request.checkpoint)
        lv.result.weights = f"checkpoint {lv.entry.request.checkpoint}"
    lv.model = model.to(torch.device(settings.device)).eval()
    if settings.channels_last:
        lv.model = lv.model.to(memory_format=torch.channels_last)


def _load_twin(
    lv: _Live,
    model: nn.Module,
    live: list[_Live],
    settings: Settings,
    converters: Converters,
) -> None:
    """Explicit twin (an entry's label or source, else a baseline outside the run): convert
    its weights (an error is noted in the row). No twin named: try the run's baselines that
    have a converter for the model type, keep the first whose converted weights fit."""
    req, model_type = lv.entry.request, lv.entry.model_type or ""
    names = [o.entry.request.name for o in live]
    sources = [o.entry.request.source for o in live]
    if req.twin:
        found = find_entry(req.twin, names, sources)
        candidates = [(req.twin, req.twin) if found is None else (names[found], sources[found])]
    else:  # a transformers twin built to mirror this very spec goes first
        guesses = sorted(
            (o for o in live if o.entry.kind != "spec"),
            key=lambda o: o.entry.spec is not lv.entry.spec,
        )
        candidates = [
            (o.entry.request.name, o.entry.request.source)
            for o in guesses
            if find_converter(converters, framework_of(o.entry.request.source), model_type)
        ]
    for name, source in candidates:
        twin = next((o.model for o in live if o.entry.request.name == name), None)
        try:
            if twin is None:
                twin = _build_twin(source, lv.entry, settings)
            convert_twin_weights(model, twin, model_type, converters, name, source)
        except Exception as exc:  # an explicit twin reports why; a guess moves on
            if is_out_of_memory(exc):
                raise
            if req.twin:
                lv.result.errors.append(f"weights not converted from {name}: {exc}")
            continue
        lv.result.twin = name
        lv.result.weights = f"converted from {name}"
        return


def _build_twin(source: str, entry: BenchEntry, settings: Settings) -> nn.Module:
    """A twin outside the run, built only to give ``entry`` its weights."""
    torch.manual_seed(settings.seed)
    if source.startswith(HF_PREFIX):
        assert entry.spec is not None
        return build_transformers_twin(source, entry.spec)
    return resolve_entry(EntryRequest(source=source)).build()


def _load_weights(model: nn.Module, path: str) -> None:
    data = read_checkpoint(path)
    state = model_state(data)
    check_state_fits(model, state, path)
    model.load_state_dict(state)


def _describe(lv: _Live, live: list[_Live], settings: Settings, device: torch.device) -> None:
    """Parameters, GFLOPs of a batch-1 forward, and the twin output check."""
    assert lv.model is not None
    lv.result.params, lv.result.trainable_params = count_parameters(lv.model)
    images, _ = make_batch(1, settings.image_size, settings.seed, device)
    lv.result.gflops = count_gflops(lv.model, images)
    twin = next((o for o in live if o.entry.request.name == lv.result.twin), None)
    if twin is not None and twin.model is not None and lv.result.weights.startswith("converted"):
        ours = make_infer(lv.model, images, seed=settings.seed, amp=settings.amp, device=device)()
        theirs = make_infer(
            twin.model, images, seed=settings.seed, amp=settings.amp, device=device
        )()
        lv.result.twin_check = compare_outputs(ours, theirs)


def _timing_tasks(live: list[_Live], settings: Settings, device: torch.device) -> list[TimedTask]:
    """One task per (entry, mode, batch size); train tasks use a train-mode copy."""
    batches = {
        bs: make_batch(bs, settings.image_size, settings.seed, device)
        for bs in sorted({*settings.batch_sizes, *settings.train_sizes()})
    }
    tasks: list[TimedTask] = []
    for lv in live:
        if lv.model is None:
            continue
        model = torch.compile(lv.model) if settings.compile else lv.model
        for bs in settings.batch_sizes:
            fn = make_infer(
                model, batches[bs][0], seed=settings.seed, amp=settings.amp, device=device
            )
            tasks.append(TimedTask(key=(lv.result.name, "infer", bs), fn=fn))
        if not settings.train:
            continue
        lv.train_model = copy.deepcopy(lv.model).train()
        train_model = torch.compile(lv.train_model) if settings.compile else lv.train_model
        for bs in settings.train_sizes():
            images, targets = batches[bs]
            step, _ = make_train_step(
                train_model, images, targets, seed=settings.seed, amp=settings.amp, device=device
            )
            tasks.append(TimedTask(key=(lv.result.name, "train", bs), fn=step))
    return tasks


def _collect(live: list[_Live], tasks: list[TimedTask]) -> None:
    by_name = {lv.result.name: lv for lv in live}
    for task in tasks:
        name, mode, bs = task.key
        out = by_name[name].result.infer if mode == "infer" else by_name[name].result.train
        out[bs] = {"error": task.error} if task.error else summarize_times(task.times, bs)
        if task.error:
            by_name[name].result.errors.append(task.error)


def _stages(lv: _Live, settings: Settings, device: torch.device) -> None:
    if lv.model is None or not settings.stage_iters:
        return
    bs = settings.batch_sizes[0]
    if "error" in lv.result.infer.get(bs, {}):
        return
    images, _ = make_batch(bs, settings.image_size, settings.seed, device)
    call = make_infer(lv.model, images, seed=settings.seed, amp=settings.amp, device=device)
    clock = CLOCKS[settings.clock]
    lv.result.stages = measure_stages(lv.model, call, device, settings.stage_iters, clock)
    ok = [b for b in settings.train_sizes() if "error" not in lv.result.train.get(b, {})]
    if lv.train_model is None or not ok:
        return
    images, targets = make_batch(ok[0], settings.image_size, settings.seed, device)
    step, _ = make_train_step(
        lv.train_model, images, targets, seed=settings.seed, amp=settings.amp, device=device
    )
    step()  # creates the optimizer state: the measured steps are steady-state ones
    lv.result.train_stages = measure_stages(
        lv.train_model, step, device, settings.stage_iters, clock, step_stage=TRAIN_STEP_STAGE
    )


def _memory(lv: _Live, settings: Settings, device: torch.device) -> None:
    if lv.train_model is None:
        return
    ok = [bs for bs in settings.train_sizes() if "error" not in lv.result.train.get(bs, {})]
    if not ok:
        return
    bs = ok[0]
    images, targets = make_batch(bs, settings.image_size, settings.seed, device)
    step, opt = make_train_step(
        lv.train_model, images, targets, seed=settings.seed, amp=settings.amp, device=device
    )
    step()  # creates the optimizer state, so the measured step is a steady-state one
    mib, method = peak_step_memory(step, opt, device)
    lv.result.train_peak_mib = mib
    lv.result.train_peak_batch = bs
    lv.result.train_peak_method = method


def _ap(lv: _Live, dataset_spec: Any, settings: Settings, device: torch.device) -> None:
    torch.manual_seed(settings.seed)
    model = lv.entry.build()
    _load_weights(model, lv.entry.request.checkpoint or "")
    metrics = evaluate_checkpoint(model.to(device), dataset_spec, device, settings.progress)
    lv.result.metrics.update(metrics)
    lv.result.ap = primary_metric(metrics)
