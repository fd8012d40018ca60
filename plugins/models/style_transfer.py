"""Neural style transfer (Gatys et al. 2016; d2l.ai ch. 14.12) as a spec-driven pipeline.

A frozen feature extractor — VGG-19's ``features`` through the ``torchvision_features``
backbone by default, or any registered backbone — gives the features of the content, style
and synthesized images. The synthesized image (pixels in 0..1, initialised from the content
image or from noise) is the only trained parameter; Adam or L-BFGS minimises the weighted
sum of the ``content`` loss, the ``gram_style`` loss and (optionally) ``total_variation``.

The spec's top-level ``style_transfer`` section (declared here) configures everything::

    style_transfer:
      content_layers: [conv4_2]
      style_layers: [conv1_1, conv2_1, conv3_1, conv4_1, conv5_1]
      style_loss: {type: gram_style, weight: 1.0e+4}
      steps: 500

With the default extractor, layer names are VGG-19 names (``conv4_2``, ``relu1_1``, ``pool3``
→ ``features.<i>``, see ``VGG19_LAYERS``) or graph nodes of ``vgg19`` (``features.25``); with
an explicit ``extractor`` they are keys of its output dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.core import register_section
from anchorage.core.build import build_child
from anchorage.core.config import component
from anchorage.core.errors import SpecError


def _vgg19_layer_table() -> dict[str, int]:
    """VGG-19 layer names (conv/relu ``b_i``, ``pool b``) → index in ``vgg19().features``."""
    table, index = {}, 0
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, convs + 1):
            table[f"conv{block}_{i}"] = index
            table[f"relu{block}_{i}"] = index + 1
            index += 2
        table[f"pool{block}"] = index
        index += 1
    return table


VGG19_LAYERS: dict[str, int] = _vgg19_layer_table()
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GATYS_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")

LossTerms = dict[str, torch.Tensor]


@attrs.frozen(kw_only=True)
class StyleTransferConfig:
    """The ``style_transfer`` spec section (see the module docstring).

    ``size``: longest side (pixels) at which the optimisation runs; None keeps the content
    image's size. The result is returned at the content image's own size. ``style_size``:
    longest side of the style image (None: the working size of the content image).
    ``lr_decay_every`` > 0 multiplies the learning rate by ``lr_decay`` every that many steps.
    ``log_every``: how often the tool records intermediate images.
    """

    extractor: Any = component("backbone", optional=True)
    weights_path: str | None = None
    content_layers: tuple[str, ...] = attrs.field(
        default=("conv4_2",), validator=attrs.validators.min_len(1)
    )
    style_layers: tuple[str, ...] = attrs.field(
        default=GATYS_STYLE_LAYERS, validator=attrs.validators.min_len(1)
    )
    content_loss: Any = component("loss", optional=True)
    style_loss: Any = component("loss", optional=True)
    tv_loss: Any = component("loss", optional=True)
    optimizer: Literal["adam", "lbfgs"] = "adam"
    lr: float = attrs.field(default=0.02, validator=attrs.validators.gt(0.0))
    lr_decay_every: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    lr_decay: float = attrs.field(default=0.8, validator=attrs.validators.gt(0.0))
    steps: int = attrs.field(default=500, validator=attrs.validators.ge(1))
    init: Literal["content", "noise"] = "content"
    size: int | None = attrs.field(
        default=512, validator=attrs.validators.optional(attrs.validators.ge(16))
    )
    style_size: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(16))
    )
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    log_every: int = attrs.field(default=50, validator=attrs.validators.ge(1))
    seed: int = 0


register_section(
    "style_transfer", StyleTransferConfig, doc="neural style transfer (tools/style_transfer.py)"
)


def default_extractor_spec(cfg: StyleTransferConfig) -> dict[str, Any]:
    """Plain ``torchvision_features`` spec of VGG-19 cut at the configured layers."""
    nodes: dict[str, str] = {}
    for name in dict.fromkeys((*cfg.style_layers, *cfg.content_layers)):
        if name in VGG19_LAYERS:
            nodes[f"features.{VGG19_LAYERS[name]}"] = name
        elif name.startswith("features.") and name[9:].isdigit():
            nodes[name] = name
        else:
            raise SpecError(
                f"style_transfer: layer {name!r} is neither a VGG-19 layer name "
                f"(conv1_1 .. conv5_4, relu*_*, pool1..5) nor a vgg19 node 'features.<i>'"
            )
    order = sorted(nodes, key=lambda n: int(n.split(".")[1]))  # fine → coarse
    spec = {"type": "torchvision_features", "model": "vgg19"}
    spec["return_nodes"] = {n: nodes[n] for n in order}
    if cfg.weights_path is not None:
        spec["weights_path"] = cfg.weights_path
    return spec


def build_extractor(cfg: StyleTransferConfig) -> nn.Module:
    """The frozen feature extractor (eval mode, no gradients for its parameters).

    In-place ReLUs are switched off: a graph node cut *before* an in-place op (a conv
    followed by ``ReLU(inplace=True)``) would otherwise come back already rectified.
    """
    if cfg.extractor is not None and cfg.weights_path is not None:
        raise SpecError(
            "style_transfer: weights_path is for the default VGG-19 extractor; with an explicit "
            "extractor, set the weights in the extractor's own parameters"
        )
    extractor = build_child("backbone", cfg.extractor or default_extractor_spec(cfg))
    for module in extractor.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    extractor.eval().requires_grad_(False)
    names = [f.name for f in extractor.feature_info]
    missing = [n for n in (*cfg.content_layers, *cfg.style_layers) if n not in names]
    if missing:
        raise SpecError(f"style_transfer: layers {missing} are not extractor outputs {names}")
    return extractor


def working_size(size: tuple[int, int], longest: int | None) -> tuple[int, int]:
    """``(H, W)`` scaled so that the longer side is ``longest`` (unchanged for None)."""
    if longest is None:
        return size
    scale = longest / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of ``[3,H,W]`` to ``size``; identity when equal."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)
    return out[0].clamp(0, 1)


@attrs.frozen
class StyleTransferResult:
    """The synthesized image float ``[3,H,W]`` in 0..1 (content size) and per-step losses."""

    image: torch.Tensor
    history: list[dict[str, float]]


StepCallback = Callable[[int, dict[str, float], torch.Tensor], None]
"""Called after every step with (step 1..N, loss terms incl. ``total``, image ``[3,h,w]``)."""


class StyleTransfer:
    """Runs the optimisation configured by a ``StyleTransferConfig`` on one device.

    ``run(content, style)``: float ``[3,H,W]`` and ``[3,h,w]`` in 0..1 (any sizes). Returns a
    ``StyleTransferResult`` whose image has the content image's size ``(H, W)``.
    """

    def __init__(self, cfg: StyleTransferConfig, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.extractor = build_extractor(cfg).to(self.device)
        self.content_loss = build_child("loss", cfg.content_loss or {"type": "content"})
        self.style_loss = build_child(
            "loss", cfg.style_loss or {"type": "gram_style", "weight": 1e4}
        )
        self.tv_loss = None if cfg.tv_loss is None else build_child("loss", cfg.tv_loss)
        self.mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extractor outputs for ``image`` ``[3,H,W]`` in 0..1 (normalised here)."""
        return self.extractor((image[None] - self.mean) / self.std)

    def losses(self, image: torch.Tensor, targets: tuple[dict, dict]) -> LossTerms:
        """Weighted loss terms (``loss_content``, ``loss_style``, ``loss_tv``) of ``image``."""
        feats = self.features(image)
        content_targets, style_targets = targets
        terms = dict(self.content_loss({k: feats[k] for k in content_targets}, content_targets))
        terms.update(self.style_loss({k: feats[k] for k in style_targets}, style_targets))
        if self.tv_loss is not None:
            terms.update(self.tv_loss(image[None]))
        return terms

    def prepare(self, content: torch.Tensor, style: torch.Tensor) -> tuple[dict, dict]:
        """Targets of the content and style losses (computed once)."""
        with torch.no_grad():
            c = self.features(content)
            s = self.features(style)
        return (
            self.content_loss.prepare({k: c[k] for k in self.cfg.content_layers}),
            self.style_loss.prepare({k: s[k] for k in self.cfg.style_layers}),
        )

    def initial_image(self, content: torch.Tensor) -> torch.Tensor:
        """The starting image: a copy of the content image, or uniform noise (``seed``)."""
        if self.cfg.init == "content":
            return content.clone()
        g = torch.Generator().manual_seed(self.cfg.seed)
        return torch.rand(content.shape, generator=g).to(self.device)

    def run(
        self,
        content: torch.Tensor,
        style: torch.Tensor,
        *,
        steps: int | None = None,
        callback: StepCallback | None = None,
    ) -> StyleTransferResult:
        """Optimise the synthesized image for ``steps`` (default ``cfg.steps``) steps."""
        cfg = self.cfg
        original = (content.shape[-2], content.shape[-1])
        size = working_size(original, cfg.size)
        content = resize(content.to(self.device, torch.float32), size)
        style_size = working_size((style.shape[-2], style.shape[-1]), cfg.style_size or max(size))
        style = resize(style.to(self.device, torch.float32), style_size)
        targets = self.prepare(content, style)
        image = self.initial_image(content).requires_grad_(True)
        step_fn = self._stepper(image, targets)
        history = []
        for step in range(1, (steps or cfg.steps) + 1):
            terms = step_fn()
            history.append(terms)
            if callback is not None:
                callback(step, terms, image.detach())
        return StyleTransferResult(image=resize(image.detach(), original), history=history)

    def _stepper(
        self, image: torch.Tensor, targets: tuple[dict, dict]
    ) -> Callable[[], dict[str, float]]:
        """A function doing one optimisation step and returning its loss terms as floats."""
        cfg = self.cfg
        terms: dict[str, float] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            losses = self.losses(image, targets)
            total = sum(losses.values())
            total.backward()
            terms.clear()
            terms.update({k: float(v.detach()) for k, v in losses.items()})
            terms["total"] = float(total.detach())
            return total

        if cfg.optimizer == "lbfgs":
            optimizer: torch.optim.Optimizer = torch.optim.LBFGS([image], lr=cfg.lr, max_iter=1)
        else:
            optimizer = torch.optim.Adam([image], lr=cfg.lr)
        scheduler = None
        if cfg.lr_decay_every > 0:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_decay_every, cfg.lr_decay)

        def step() -> dict[str, float]:
            optimizer.step(closure)
            with torch.no_grad():
                image.clamp_(0, 1)
            if scheduler is not None:
                scheduler.step()
            return dict(terms)

        return step
