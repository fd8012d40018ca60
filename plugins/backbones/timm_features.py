"""``timm``: any timm model with ``features_only`` support as a multi-level backbone.

The network is ``timm.create_model(model_name, features_only=True, pretrained=False, ...)``;
nothing is downloaded. Weights come from a local file (``checkpoint_path``): a timm-format state
dict of the classifier (the ``model.safetensors`` / ``pytorch_model.bin`` of a timm model,
fetched beforehand) or of this backbone. timm is an optional dependency
(``pip install 'anchorage[timm]'``), imported only when a ``timm`` backbone is validated or built.

Levels. ``feature_info`` comes from timm's own ``feature_info`` (``channels()``,
``reduction()``) for the selected ``out_indices`` (timm's default when unset). Outputs are named
``c<k>`` with ``k = round(log2(stride))`` (``c2..c5`` for a ConvNeXt, ``c1..c5`` for an
EfficientNet, as for the ResNets); levels that share a stride (a plain ViT's blocks, all at
stride 16) are ``c<k>_<i>`` with ``i`` timm's level index (``c4_9, c4_10, c4_11``). Every
output is ``[B,C,h,w]``: models whose timm features are NHWC (Swin) are permuted.

Plain ViTs. Every block is at stride 16, so a detector puts the ``simple_feature_pyramid`` neck
(ViTDet) on the last one: ``out_indices: [11]`` (a 12-block ViT; one level, ``c4``), with
``img_size`` the detector's batch size (the position embedding is built for it) and
``model_kwargs: {dynamic_img_size: true}`` for other sizes (timm interpolates the embedding at
each forward). A checkpoint's position embedding must be of the same ``img_size`` (a 224
classifier's fits ``img_size`` left unset, with ``dynamic_img_size``); see
``specs/retinanet_vit_tiny_sfp_shapes.yaml``.

Stages, for ``frozen_stages``. timm's feature levels name modules (``stages.0``, ``blocks.2``,
``layers.1``, ``s3``...). Levels at stride <= 2 (a ResNet's ``act1``, a RegNet's ``stem``, an
EfficientNet's ``blocks.0``) belong to the stem; every other level ends a stage. The stem is
every parameter registered before the first stage's module; stage ``j`` runs from there to the
last parameter inside stage ``j``'s module (an EfficientNet's ``blocks.3`` goes with the stage
that ends at ``blocks.4``). ``frozen_stages: N`` freezes the stem and the first N stages
(``0``: the stem only, ``-1``: nothing; N = the number of stages freezes everything).

Norms. ``norm: frozen_bn`` replaces every ``BatchNorm2d`` by the project's
``FusedFrozenBatchNorm2d`` and every timm ``BatchNormAct2d`` by timm's ``FrozenBatchNormAct2d``
(which keeps the activation fused into the norm). LayerNorm / GroupNorm models (ConvNeXt, Swin,
ViT) are left as they are: freeze them with ``frozen_stages``. With ``norm: bn``, BatchNorm
layers inside frozen stages stay in eval mode when the model trains (their statistics stay).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import nn

from anchorage.core.errors import CheckpointError, SpecError
from anchorage.core.interfaces import Backbone, FeatureSpec
from anchorage.core.registry import BACKBONES
from anchorage.plugins.backbones.torchvision_features import freeze_batchnorm

MISSING_TIMM = "the timm backbone needs timm, which is not installed: pip install 'anchorage[timm]'"

RESERVED_KWARGS = frozenset(
    {
        "features_only",
        "out_indices",
        "checkpoint_path",
        "cache_dir",
        "feature_cfg",
        "feature_cls",
        "img_size",
        "drop_path_rate",
        "num_classes",
        "scriptable",
        "exportable",
        "no_jit",
        "device",
        "dtype",
    }
)
"""``model_kwargs`` keys refused: set by this backbone, or given their own parameter."""

Scalar = bool | int | float | str | None


def _import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise SpecError(MISSING_TIMM) from None
    return timm


def _check_model_name(_inst: object, _attr: attrs.Attribute, value: str) -> None:
    try:
        import timm
    except ImportError:
        raise ValueError(MISSING_TIMM) from None
    if timm.is_model(value):
        return
    names = timm.list_models()
    close = difflib.get_close_matches(value, names, n=5, cutoff=0.6)
    stem = value.split("_")[0]
    close += [n for n in timm.list_models(f"{stem}*") if n not in close][: 8 - len(close)]
    raise ValueError(
        f"unknown timm model {value!r} (timm {timm.__version__})"
        + (f"; close names: {', '.join(close)}" if close else "; see timm.list_models()")
    )


def _check_indices(_inst: object, _attr: attrs.Attribute, value: tuple[int, ...] | None) -> None:
    if value is not None and not value:
        raise ValueError("out_indices: expected at least one timm level index (or null)")


def _check_not_pretrained(_inst: object, _attr: attrs.Attribute, value: bool) -> None:
    if value:
        raise ValueError(
            "pretrained: true cannot be honoured: nothing is downloaded at run time; give "
            "checkpoint_path: a local timm state dict file (.pth/.pt/.bin or .safetensors)"
        )


def _check_model_kwargs(_inst: object, _attr: attrs.Attribute, value: Mapping[str, Any]) -> None:
    refused = sorted(k for k in value if k in RESERVED_KWARGS or k.startswith("pretrained"))
    if refused:
        raise ValueError(
            f"model_kwargs may not set {refused} (this backbone sets them, or they have their "
            "own parameter: out_indices, img_size, drop_path_rate, checkpoint_path)"
        )


@BACKBONES.register(
    "timm",
    examples=(
        {"model_name": "mobilenetv3_small_050"},
        {"model_name": "regnetx_002", "out_indices": (2, 3, 4), "frozen_stages": 1},
        {"model_name": "regnetx_002", "out_indices": (1, 2), "norm": "frozen_bn"},
    ),
)
class TimmFeatures(Backbone):
    """A timm network with ``features_only=True``; outputs ``c<k>`` fine → coarse.

    ``forward(x)``: ``x`` float32 ``[B,3,H,W]`` (normalized). Returns ``dict`` in
    ``feature_info`` order, each ``[B, channels, ~H/stride, ~W/stride]`` (NCHW for every model).
    ViT / Swin models built for a fixed size need ``img_size`` (or ``model_kwargs``
    ``{dynamic_img_size: true}`` for ViT, ``{strict_img_size: false}`` for Swin) to take the
    sizes a detector feeds them.

    ``model_name``: a timm architecture (``timm.list_models()``; a ``.tag`` suffix is allowed).
    ``out_indices``: timm level indices (``None``: timm's default). ``checkpoint_path``: a local
    state dict (``torch.load(weights_only=True)``, or ``safetensors`` for ``.safetensors``).
    ``model_kwargs``: further ``timm.create_model`` keywords (plain values; the ``pretrained*``,
    feature and download keywords are refused).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        model_name: str = attrs.field(validator=_check_model_name)
        out_indices: tuple[int, ...] | None = attrs.field(default=None, validator=_check_indices)
        pretrained: bool = attrs.field(default=False, validator=_check_not_pretrained)
        checkpoint_path: str | None = None
        frozen_stages: int = attrs.field(default=-1, validator=attrs.validators.ge(-1))
        norm: Literal["bn", "frozen_bn"] = "bn"
        drop_path_rate: float = attrs.field(
            default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)]
        )
        img_size: int | tuple[int, int] | None = None
        model_kwargs: dict[str, Scalar | tuple[Scalar, ...]] = attrs.field(
            factory=dict, validator=_check_model_kwargs
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        what = f"timm {cfg.model_name}"
        self.body = _create(cfg, what)
        levels = list(self.body.feature_info.info)
        if cfg.checkpoint_path is not None:
            load_timm_state(self.body, cfg.checkpoint_path, what)
        if cfg.norm == "frozen_bn":
            self.body = freeze_norms(self.body)
        if cfg.frozen_stages >= 0:
            freeze_stages(self.body, levels, cfg.frozen_stages, what)
        self._frozen_norms = frozen_batchnorm_names(self.body)
        self.feature_info = timm_feature_info(self.body)
        fmt = getattr(self.body, "output_fmt", "NCHW")
        self._nhwc = getattr(fmt, "value", fmt) == "NHWC"

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x [B,3,H,W]`` → ``{c<k>: [B,C,H/stride,W/stride]}`` in ``feature_info`` order."""
        out = self.body(x)
        if self._nhwc:
            out = [t.permute(0, 3, 1, 2) for t in out]
        return {f.name: t for f, t in zip(self.feature_info, out)}

    def train(self, mode: bool = True) -> TimmFeatures:
        """As ``nn.Module.train``; BatchNorm layers whose parameters are all frozen stay eval."""
        super().train(mode)
        if mode:
            for name in self._frozen_norms:
                self.body.get_submodule(name).eval()
        return self


def _create(cfg: TimmFeatures.Config, what: str) -> nn.Module:
    """``timm.create_model(features_only=True, pretrained=False)``; timm's refusals → SpecError."""
    timm = _import_timm()
    kwargs: dict[str, Any] = dict(cfg.model_kwargs)
    if cfg.out_indices is not None:
        kwargs["out_indices"] = tuple(cfg.out_indices)
    if cfg.img_size is not None:
        kwargs["img_size"] = cfg.img_size
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    try:
        body = timm.create_model(cfg.model_name, pretrained=False, features_only=True, **kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError, IndexError, KeyError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if cfg.out_indices is not None:
            message += _levels_hint(timm, cfg.model_name, kwargs)
        raise SpecError(f"{what}: timm.create_model({_show(kwargs)}) failed: {message}") from None
    indices = list(body.feature_info.out_indices)
    if indices != sorted(set(indices)):
        raise SpecError(
            f"{what}: out_indices {list(cfg.out_indices or ())} give levels {indices}; expected "
            "distinct levels fine to coarse (increasing)"
        )
    return body


def _levels_hint(timm: Any, model_name: str, kwargs: Mapping[str, Any]) -> str:
    """``"; the model's levels: 0 (stages.0, stride 4), ..."`` for an out_indices error."""
    rest = {k: v for k, v in kwargs.items() if k != "out_indices"}
    try:
        full = timm.create_model(model_name, pretrained=False, features_only=True, **rest)
    except Exception:  # the error being reported is the first one
        return ""
    levels = [
        f"{i} ({d['module']}, stride {d['reduction']})"
        for i, d in enumerate(full.feature_info.info)
    ]
    return f"; out_indices are timm level indices, this model's levels: {', '.join(levels)}"


def _show(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(["features_only=True", *(f"{k}={v!r}" for k, v in kwargs.items())])


def timm_feature_info(body: nn.Module) -> list[FeatureSpec]:
    """``FeatureSpec`` per selected level from timm's ``feature_info`` (names: ``level_names``)."""
    info = body.feature_info
    indices = list(info.out_indices)
    strides = [int(s) for s in info.reduction()]
    names = level_names(strides, indices)
    return [FeatureSpec(n, int(c), s) for n, c, s in zip(names, info.channels(), strides)]


def frozen_batchnorm_names(body: nn.Module) -> tuple[str, ...]:
    """Names of the BatchNorm modules (timm's BatchNormAct2d included) whose parameters are all
    frozen: kept in eval mode by ``TimmFeatures.train``."""
    return tuple(
        name
        for name, m in body.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and any(True for _ in m.parameters())
        and not any(p.requires_grad for p in m.parameters())
    )


def level_names(strides: list[int], indices: list[int]) -> list[str]:
    """``c<k>`` per level (``k = round(log2(stride))``); ``c<k>_<index>`` where strides repeat."""
    ks = [round(math.log2(s)) if s > 0 else 0 for s in strides]
    return [f"c{k}" if ks.count(k) == 1 else f"c{k}_{i}" for k, i in zip(ks, indices)]


def freeze_norms(module: nn.Module) -> nn.Module:
    """``BatchNorm2d`` → ``FusedFrozenBatchNorm2d``; timm's ``BatchNormAct2d`` →
    ``FrozenBatchNormAct2d`` (activation kept). Other norms are left alone. Returns the module."""
    from timm.layers import BatchNormAct2d, freeze_batch_norm_2d

    if isinstance(module, BatchNormAct2d):
        return freeze_batch_norm_2d(module)
    if isinstance(module, nn.BatchNorm2d):
        return freeze_batchnorm(module)
    for name, child in module.named_children():
        new = freeze_norms(child)
        if new is not child:
            setattr(module, name, new)
    return module


# --- names: timm's classifier keys vs its features_only wrappers ---------------------------
# FeatureListNet flattens ``stages.0`` into ``stages_0``; FeatureGetterNet (ViT) wraps the whole
# network as ``model``. Names are compared with the wrapper prefix dropped and '.' read as '_'.


def _wrapper(body: nn.Module) -> str:
    """``"model."`` when ``body`` wraps the whole network as ``model`` (FeatureGetterNet)."""
    names = list(body.state_dict())
    return "model." if names and all(n.startswith("model.") for n in names) else ""


def _wrapper_of(state: Mapping[str, Any]) -> str:
    """The wrapper prefix of a state dict saved from a FeatureGetterNet (``model.``), or ``""``."""
    return "model." if state and all(k.startswith("model.") for k in state) else ""


def _canonical(names: list[str], prefix: str) -> list[str]:
    """``names`` without the wrapper ``prefix`` (``model`` itself becomes the root, ``""``)."""
    if not prefix:
        return names
    return [n[len(prefix) :] if n.startswith(prefix) else "" for n in names]


def _flat(name: str) -> str:
    return name.replace(".", "_")


def _stage_spans(body: nn.Module, levels: list[dict], what: str) -> tuple[int, list[int]]:
    """(index of the first stage parameter, index past each stage's last parameter), over
    ``body.named_parameters()`` order. Stages are the levels at stride > 2 (see module doc)."""
    params = [n for n, _ in body.named_parameters()]
    names = [_flat(n) + "_" for n in _canonical(params, _wrapper(body))]
    stages = [_flat(d["module"]) + "_" for d in levels if d["reduction"] > 2]
    if not stages:
        raise SpecError(f"{what}: frozen_stages: timm declares no stage (no level at stride > 2)")
    ends = []
    for stage in stages:
        inside = [i for i, n in enumerate(names) if n.startswith(stage)]
        ends.append(inside[-1] + 1 if inside else len(names))  # cut off by out_indices
    first = next((i for i, n in enumerate(names) if n.startswith(stages[0])), len(names))
    return first, ends


def freeze_stages(body: nn.Module, levels: list[dict], n: int, what: str) -> None:
    """``requires_grad_(False)`` on the stem and the first ``n`` stages (``levels``: timm's
    ``feature_info.info``, all levels)."""
    first, ends = _stage_spans(body, levels, what)
    if n > len(ends):
        stages = [d["module"] for d in levels if d["reduction"] > 2]
        raise SpecError(
            f"{what}: frozen_stages={n}, but the model has {len(ends)} stages ({stages}); "
            f"expected -1..{len(ends)}"
        )
    stop = first if n == 0 else ends[n - 1]
    if n == len(ends):
        stop = sum(1 for _ in body.parameters())
    for i, param in enumerate(body.parameters()):
        if i < stop:
            param.requires_grad_(False)


# --- checkpoints --------------------------------------------------------------------------


def read_state_dict(path: str, what: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: ``.safetensors`` via safetensors, else ``torch.load``
    (``weights_only=True``); a ``state_dict`` / ``model`` entry of a training checkpoint is
    unwrapped. Missing, unreadable or non-state-dict files raise ``CheckpointError``."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{what}: checkpoint_path {path}: file not found")
    try:
        if file.suffix == ".safetensors":
            state = _load_safetensors(file, what)
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # pickle, zip, safetensors header errors: all mean "unreadable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        how = "safetensors" if file.suffix == ".safetensors" else "torch.load(weights_only=True)"
        raise CheckpointError(
            f"{what}: checkpoint_path {path}: {how} cannot read it as a state dict of tensors "
            f"({type(exc).__name__}: {first[:160]})"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"{what}: checkpoint_path {path}: expected a state dict (name → tensor), got "
            f"{type(state).__name__}"
        )
    return _strip_prefixes(dict(state))


def _load_safetensors(file: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"{what}: checkpoint_path {file}: reading .safetensors needs the safetensors "
            "package (pip install safetensors), which is not installed"
        ) from None
    return load_file(str(file), device="cpu")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` (DDP) and ``body.`` (this backbone's own state dict) prefixes."""
    for prefix in ("module.", "body."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_timm_state(body: nn.Module, path: str, what: str) -> None:
    """Load a timm-format state dict file into the features model ``body``.

    Keys are matched with timm's wrapper renaming undone (see above). Every key of ``body``
    must be in the file (``num_batches_tracked`` counters excepted) with the same shape; keys
    of modules that the features model does not keep or has emptied (the classifier head, a
    ViT's final norm, stages after the last ``out_indices`` level) are ignored; a key of a module
    the features model holds tensors in but does not know is unexpected. On the meta device
    (a size estimate) only the file's existence is checked.
    """
    if any(p.is_meta for p in body.parameters()):  # a size estimate (check_model_fits)
        if not Path(path).is_file():
            raise CheckpointError(f"{what}: checkpoint_path {path}: file not found")
        return
    state = read_state_dict(path, what)
    prefix = _wrapper(body)
    own = list(body.state_dict())
    by_flat = {_flat(k): k for k in _canonical(list(state), _wrapper_of(state))}
    originals = dict(zip(_canonical(list(state), _wrapper_of(state)), state))
    matched = {
        o: originals[by_flat[f]]
        for o, f in zip(own, map(_flat, _canonical(own, prefix)))
        if f in by_flat
    }
    missing = [o for o in own if o not in matched and not o.endswith("num_batches_tracked")]
    holders = [n for n, m in body.named_modules() if _holds_tensors(m)]
    modules = {_flat(n) for n in _canonical(holders, prefix)}
    used = set(matched.values())
    unexpected = [
        k for k, o in originals.items() if o not in used and _flat(k.rpartition(".")[0]) in modules
    ]
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: checkpoint_path {path} does not fit (expected a timm state dict of this "
            f"model): missing {_first(missing)}, unexpected {_first(unexpected)}"
        )
    target = body.state_dict()
    wrong = [
        f"{o}: file {tuple(state[k].shape)} vs model {tuple(target[o].shape)}"
        for o, k in matched.items()
        if state[k].shape != target[o].shape
    ]
    if wrong:
        raise CheckpointError(f"{what}: checkpoint_path {path}: shape mismatch: {_first(wrong)}")
    body.load_state_dict({o: state[k] for o, k in matched.items()}, strict=False)


def _holds_tensors(module: nn.Module) -> bool:
    """Whether ``module`` has parameters or buffers of its own (not only in children)."""
    own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return bool(own)


def _first(keys: list[str], n: int = 5) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + "]" + more
