"""Composition checks: parts that validate one by one but do not fit together.

Validation checks each value against its own declared type; whether an RoI extractor's
``featmap_names`` are features the neck produces, whether the anchor generator has as many
levels as the features, or whether ``num_classes`` agrees with the dataset is only known once
the parts are built. Models raise ``CompositionError`` while they build (naming both key
paths), and ``check_spec`` — which ``tools/print_spec.py`` and ``tools/train.py`` run before
anything is trained or written — builds the model (first on the meta device, to refuse one
larger than the machine's memory before anything is allocated), adds the file or ``--set``
that set the offending key, and compares ``model.num_classes`` with every data split's
classes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import AnchorageError, DataError, SpecError


class CompositionError(SpecError):
    """Two parts of a spec disagree; the message starts with the first key path.

    ``paths`` are the key paths involved (the first is the one to change, the others what it
    disagrees with).
    """

    def __init__(self, message: str, *paths: str) -> None:
        super().__init__(message)
        self.paths = paths


def node_path(node: Any, default: str) -> str:
    """Key path of a nested component (a validated ``ComponentSpec``), else ``default``."""
    path = getattr(node, "path", None)
    return path if isinstance(path, str) and path else default


def parent_path(path: str) -> str:
    """``"model.rpn.head"`` → ``"model.rpn"``."""
    return path.rpartition(".")[0]


def _names(info: Iterable[Any]) -> str:
    return ", ".join(getattr(f, "name", str(f)) for f in info)


def check_feature_names(
    names: Sequence[str] | None, names_path: str, info: Sequence[Any], info_path: str
) -> None:
    """``names`` (a slot's feature names) must all be names in ``info`` (FeatureSpecs)."""
    if names is None:
        return
    known = {f.name for f in info}
    missing = [n for n in names if n not in known]
    if missing:
        raise CompositionError(
            f"{names_path}: {missing} {'is' if len(missing) == 1 else 'are'} not "
            f"{'a feature' if len(missing) == 1 else 'features'} of {info_path} ({_names(info)})",
            names_path,
            info_path,
        )


def check_levels(
    count: int, count_path: str, what: str, info: Sequence[Any], info_path: str
) -> None:
    """A per-level component (``count`` levels of ``what``) must have one level per feature."""
    if count != len(info):
        raise CompositionError(
            f"{count_path}: {count} {what}, but {info_path} gives {len(info)} feature levels "
            f"({_names(info)}); give one per feature level",
            count_path,
            info_path,
        )


def check_spec(spec: Any, *, build_datasets: bool = False) -> Any:
    """Build ``spec``'s model and check how its parts and the data fit; return the model.

    Errors are ``SpecError`` prefixed with the file or ``--set`` that set the first key path
    involved. With ``build_datasets`` a data split whose dataset does not declare ``classes``
    in its config (e.g. COCO, whose classes are in the annotation file) is built to read its
    ``class_names``; otherwise such splits are not compared. A spec without a ``model``
    section gives None.
    """
    if spec.get("model") is None:  # e.g. a style-transfer spec: nothing to compose
        return None
    try:
        check_model_fits(spec)  # composition errors surface here first, on the meta device
        model = spec.model.build()
    except CompositionError as exc:
        raise SpecError(
            f"{_where(spec, exc.paths[0]) if exc.paths else spec.path}: {exc}"
        ) from None
    check_num_classes(spec, build_datasets=build_datasets)
    if build_datasets:
        check_training_data(spec, model)
    return model


def check_training_data(spec: Any, model: Any) -> None:
    """A model that bounds what it can learn from (``check_training_data(dataset, where)``,
    e.g. a set-prediction model's objects per image) checks the training split before
    anything is written; its ``DataError`` is prefixed with the file that set the model."""
    check = getattr(model, "check_training_data", None)
    data = spec.get("data")
    train = None if data is None else getattr(data, "train", None)
    if check is None or train is None or train.dataset is None:
        return
    try:
        check(train.dataset.build(), f"data.train ({_where(spec, 'data.train.dataset')})")
    except DataError as exc:
        raise SpecError(f"{_where(spec, 'model')}: {exc}") from None


def check_model_fits(spec: Any, memory: int | None = None) -> None:
    """Refuse a model whose parameters and buffers exceed ``memory`` bytes (default: this
    machine's physical memory) before anything is allocated: the model is built on the meta
    device, which records shapes and allocates nothing. The error names the largest tensor and
    the largest number in the ``model`` section (usually the culprit: a class count, a width).
    A component that cannot be built on the meta device is left to the real build."""
    import torch

    try:
        with torch.device("meta"):
            model = spec.model.build()
    except AnchorageError:
        raise
    except Exception:  # e.g. a constructor that reads tensor values: no estimate
        return
    tensors = [*model.named_parameters(), *model.named_buffers()]
    size = sum(t.numel() * t.element_size() for _, t in tensors)
    memory = physical_memory() if memory is None else memory
    if size <= memory:
        return
    name, largest = max(tensors, key=lambda item: item[1].numel())
    key, value = _largest_number(spec.to_dict()["model"], "model")
    shape = "x".join(map(str, largest.shape))
    raise SpecError(
        f"{_where(spec, key)}: {key}: {value} makes a model of {human_bytes(size)} (parameters "
        f"and buffers; largest {name} {shape}), more than this machine's "
        f"{human_bytes(memory)} of memory; nothing was allocated"
    )


def physical_memory() -> int:
    """Bytes of physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def human_bytes(n: float) -> str:
    """``4608000000004608`` → ``"4.6 PB"`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _largest_number(value: Any, path: str) -> tuple[str, Any]:
    """The key path and value of the largest number under ``value`` (a spec section)."""
    if isinstance(value, bool):
        return path, None
    if isinstance(value, int | float):
        return path, value
    if isinstance(value, dict):
        items = [(f"{path}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    else:
        return path, None
    best: tuple[str, Any] = (path, None)
    for sub, item in items:
        found = _largest_number(item, sub)
        if found[1] is not None and (best[1] is None or found[1] > best[1]):
            best = found
    return best


def _where(spec: Any, path: str) -> str:
    """Who set ``path`` or a key under it: a ``--set`` override if one did, else the file."""
    overrides = [
        v
        for k, v in spec.sources.items()
        if (k == path or k.startswith(path + ".") or k.startswith(path + "["))
        and v.startswith("--set")
    ]
    return overrides[-1] if overrides else spec.where(path)


def check_num_classes(spec: Any, *, build_datasets: bool = False) -> None:
    """``model.num_classes`` equals the number of classes of every data split's dataset."""
    num_classes = spec.model.params.get("num_classes")
    data = spec.get("data")
    if not isinstance(num_classes, int) or data is None:
        return
    for split in ("train", "val", "test"):
        cfg = getattr(data, split, None)
        dataset = None if cfg is None else cfg.dataset
        if dataset is None:
            continue
        names = dataset_classes(dataset, build=build_datasets)
        if names is None or len(names) == num_classes:
            continue
        path = f"data.{split}.dataset"
        raise SpecError(
            f"{_where(spec, 'model.num_classes')}: model.num_classes: {num_classes}, but {path} "
            f"({_where(spec, path)}) has {len(names)} classes ({', '.join(map(str, names))}); "
            "num_classes counts the classes without background"
        )


def dataset_classes(node: Any, *, build: bool = False) -> tuple[str, ...] | None:
    """Class names a dataset component declares (its config's ``classes``, defaults included).

    None when the config has no ``classes`` and ``build`` is False; with ``build`` the dataset
    is built and its ``class_names`` read.
    """
    from .registry import registry_for

    entry = registry_for(node.kind).get(node.type)
    try:
        config = entry.config(**node.params)
    except (TypeError, ValueError):
        config = None
    classes = getattr(config, "classes", None)
    if isinstance(classes, (list, tuple)) and classes and isinstance(classes[0], str):
        return tuple(classes)
    if not build:
        return None
    names = getattr(node.build(), "class_names", None)
    return None if names is None else tuple(names)


def declared_config(node: Any, kind: str) -> Any:
    """A slot's parameters as a config-like namespace (the type's defaults, then the node's
    values), for layout declarations read before build-time injections exist."""
    import types

    import attrs

    from .registry import registry_for

    params = dict(getattr(node, "params", None) or {})
    name = getattr(node, "type", None)
    if name is None and isinstance(node, dict):
        name = node.get("type")
        params = {k: v for k, v in node.items() if k != "type"}
    values: dict[str, Any] = {}
    config = registry_for(kind).get(name).config
    if attrs.has(config):
        for field in attrs.fields(config):
            if field.default is not attrs.NOTHING:
                default = field.default
                values[field.name] = (
                    default.factory() if isinstance(default, attrs.Factory) else default
                )
    values.update(params)
    return types.SimpleNamespace(**values)


def check_background_column(*slots: tuple[str, Any, Any]) -> None:
    """The dense head, loss and postprocessor must agree on whether ``cls_logits`` carry the
    background column 0 (each declares it: ``DenseLayout.background_column``; ``None`` accepts
    either). ``slots``: ``(kind, spec node, built component)``, the key path ``model.<kind>``
    unless the node carries its own."""
    declared = []
    for kind, node, component in slots:
        declare = getattr(type(component), "background_column", None)
        value = declare(declared_config(node, kind)) if declare is not None else None
        if value is not None:
            declared.append((kind, node_path(node, f"model.{kind}"), value))

    def says(kind: str, v: bool) -> str:
        verb = "gives" if kind == "head" else "reads"
        return f"{verb} {'[B,A,C+1] logits with background column 0' if v else '[B,A,C] logits'}"

    for (kind_a, path_a, a), (kind_b, path_b, b) in itertools.pairwise(declared):
        if a != b:
            raise CompositionError(
                f"{path_a}: {says(kind_a, a)} but {path_b} {says(kind_b, b)}; set "
                "background_column (or the score) so all read the head's layout the same way",
                path_a,
                path_b,
            )
