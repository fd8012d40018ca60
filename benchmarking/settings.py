"""Benchmark settings and suite files.

A suite is a YAML file (safe loader) with a list of entries and the settings to run them
with; command-line options override its settings and command-line entries are added after
its own::

    settings: {batch_sizes: [1, 2], image_size: 300, rounds: 20, train: true}
    entries:
      - tv:ssd300_vgg16                      # a plain entry string
      - entry: specs/ssd300_vgg16_coco.yaml  # or a mapping
        twin: tv:ssd300_vgg16                # load the twin's converted weights
        set: [model.num_classes=91]          # --set overrides of this spec
      - entry: tv:fcn_resnet50
        kwargs: {num_classes: 81, aux_loss: true}   # torchvision builder arguments
      - {entry: hf:detr, label: hf:detr_small}      # a transformers twin, labelled
      - {entry: detr_r18_shapes.yaml, twin: hf:detr_small}  # ... which mirrors this spec
    dataset: specs/tiny_ssd_shapes.yaml      # data + metrics for AP (with checkpoints)

Spec paths are found relative to the suite file, the working directory or the spec zoo.
Every value is validated like a spec (errors name the file and the key path).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import validators as v

from anchorage.core.config import validate_section
from anchorage.core.errors import SpecError
from anchorage.core.spec import read_yaml, resolve_spec_path

from .entries import FRAMEWORKS, EntryRequest, is_baseline

_sizes = v.deep_iterable(member_validator=v.ge(1), iterable_validator=v.min_len(1))


def _device(_inst: Any, _attr: Any, value: str) -> None:
    if value != "cpu" and not value.startswith("cuda"):
        raise ValueError(f"expected 'cpu', 'cuda' or 'cuda:N', got {value!r}")


@attrs.frozen(kw_only=True)
class Settings:
    """How entries are measured.

    ``batch_sizes``: inference batch sizes; ``train_batch_sizes``: train-step batch sizes
    (default: the inference ones); ``image_size``: side S of the square input images (the
    models still resize as they are configured to, e.g. R-CNN to min_size 800);
    ``rounds``/``warmup``: timed and discarded interleaved rounds; ``stage_iters``: forwards
    averaged for the stage breakdown (0 = none); ``threads``: torch intra-op threads (None =
    torch's default); ``clock``: ``wall`` elapsed time or ``cpu`` process CPU time (robust on a
    shared CPU machine, see ``timing.CLOCKS``); ``convert_twins``: give anchorage entries
    their twin's weights; ``twin_target``: the largest time ratio to the twin the Twins table
    accepts.
    """

    batch_sizes: tuple[int, ...] = attrs.field(default=(1,), validator=_sizes)
    train_batch_sizes: tuple[int, ...] | None = attrs.field(
        default=None, validator=v.optional(_sizes)
    )
    image_size: int = attrs.field(default=300, validator=v.ge(16))
    device: str = attrs.field(default="cpu", validator=_device)
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    train: bool = False
    clock: Literal["wall", "cpu"] = "wall"
    rounds: int = attrs.field(default=10, validator=v.ge(1))
    warmup: int = attrs.field(default=2, validator=v.ge(0))
    stage_iters: int = attrs.field(default=3, validator=v.ge(0))
    seed: int = 0
    threads: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    convert_twins: bool = True
    twin_target: float = attrs.field(default=1.05, validator=v.gt(0))
    progress: bool = True

    def train_sizes(self) -> tuple[int, ...]:
        """Batch sizes of the train step (none without ``train``)."""
        if not self.train:
            return ()
        return self.train_batch_sizes or self.batch_sizes


@attrs.frozen(kw_only=True)
class SuiteEntry:
    """One entry of a suite (see ``EntryRequest`` for the meaning of each key)."""

    entry: str
    label: str = ""
    twin: str | None = attrs.field(default=None)
    set: tuple[str, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    checkpoint: str | None = None

    @twin.validator
    def _twin(self, _attr: Any, value: str | None) -> None:
        if value is not None and not is_baseline(value):
            raise ValueError(
                f"a twin is a baseline 'tv:NAME' or 'hf:NAME' (or the label of one, starting "
                f"with {' or '.join(FRAMEWORKS)}), got {value!r}"
            )


@attrs.frozen(kw_only=True)
class Suite:
    """A loaded suite: validated settings (plain data, merged later), entries, dataset."""

    settings: dict[str, Any]
    entries: tuple[EntryRequest, ...]
    dataset: str | None = None
    path: str = ""


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file."""
    file = Path(path)
    raw = read_yaml(file)
    where = lambda _key: str(file)  # noqa: E731 - every value comes from this file
    if not isinstance(raw, Mapping):
        raise SpecError(f"{file}: a suite is a mapping with 'entries' and 'settings'")
    unknown = sorted(set(raw) - {"settings", "entries", "dataset"})
    if unknown:
        raise SpecError(
            f"{file}: unknown suite keys {unknown}; expected settings, entries, dataset"
        )
    settings_data = raw.get("settings") or {}
    validate_section(Settings, settings_data, "settings", where)
    items = raw.get("entries") or []
    if not isinstance(items, list):
        raise SpecError(f"{file}: entries: expected a list, got {type(items).__name__}")
    entries = []
    for i, item in enumerate(items):
        data = {"entry": item} if isinstance(item, str) else item
        e = validate_section(SuiteEntry, data, f"entries[{i}]", where)
        entries.append(_request(e, file.parent))
    dataset = raw.get("dataset")
    if dataset is not None:
        dataset = str(resolve_spec_path(str(dataset), file.parent))
    return Suite(
        settings=dict(settings_data), entries=tuple(entries), dataset=dataset, path=str(file)
    )


def _request(e: SuiteEntry, base: Path) -> EntryRequest:
    source = e.entry
    if not is_baseline(source):
        found = resolve_spec_path(source, base)
        source = _short(found) if found.is_file() else source
    checkpoint = e.checkpoint
    if checkpoint is not None and not Path(checkpoint).is_absolute():
        near = base / checkpoint
        checkpoint = str(near) if near.exists() else checkpoint
    return EntryRequest(
        source=source,
        label=e.label or (Path(e.entry).stem if not is_baseline(e.entry) else ""),
        twin=e.twin,
        overrides=tuple(e.set),
        kwargs=dict(e.kwargs),
        checkpoint=checkpoint,
    )


def _short(path: Path) -> str:
    """``path`` relative to the working directory when below it (records name no machine)."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def make_settings(suite_settings: Mapping[str, Any], cli: Mapping[str, Any]) -> Settings:
    """Suite settings overridden by the command-line values that were given (not None)."""
    merged = {**suite_settings, **{k: val for k, val in cli.items() if val is not None}}
    return validate_section(Settings, merged, "settings", lambda _k: "command line / suite")
