"""Dense-detector roles: head, loss, box-regression loss and postprocessor, and their targets.

A dense detector (SSD, RetinaNet, FCOS, ...) predicts for every anchor or point of every feature
level. Its slots take these roles:

- ``DenseHead`` (``dense_head``): features → ``cls_logits [B,A,K]`` (K = C+1 with a background
  column 0 for softmax scoring, or C for sigmoid scoring), ``bbox_deltas [B,A,4]`` (+ optional
  extra keys, e.g. ``centerness [B,A,1]``), flattened in the anchor generator's order.
- ``DenseLoss`` (``dense_loss``): ``forward(predictions, targets: DenseTargets)`` → scalar
  ``loss_*`` terms.
- ``BoxLoss`` (``box_loss``): the box-regression term a dense loss delegates to, per anchor.
- ``DensePostprocessor`` (``dense_postprocessor``): ``__call__(predictions, anchors: Anchors,
  image_sizes)`` → detections, decoding with the injected ``box_coder``.

The skeleton hands the head's whole dict to the matcher, the loss and the postprocessor, so
the three must agree on its layout. Each declares it (``DenseLayout``): ``prediction_keys``,
the keys beyond ``cls_logits``/``bbox_deltas`` it produces or reads,
``background_column(cfg)``, whether ``cls_logits`` carry the background column 0, and
``kit_box_coder``, the coder it is designed for (the conformance kit exercises it with that one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import torch

from ..fields import injected
from .matching import Anchors, Assignment, BoxCoder, GroundTruth, Matcher, gather_rows
from .prediction import Head, Loss, Postprocessor


@attrs.frozen
class DenseTargets:
    """Per-anchor training targets of a dense detector (what a ``DenseLoss`` receives).

    - ``anchors``: the ``Anchors`` the head predicts for (``boxes [A,4]`` or ``[B,A,4]`` xyxy
      batch pixels, per-level counts, strides).
    - ``assignment``: the matcher's ``Assignment`` (``matched [B,A]``, optional ``weights``).
    - ``labels``: int64 ``[B,A]``: class 1..C for positives, 0 background, -1 ignore.
    - ``boxes``: float ``[B,A,4]`` xyxy: the matched gt box of positives, the anchor itself
      elsewhere (so every row is a valid box).
    - ``box_targets``: float ``[B,A,4]``: ``box_coder.encode(boxes, anchors.boxes, strides)``
      with ``strides = anchors.anchor_strides()`` (``[A]``, or None without strides).
    - ``box_coder``: the ``BoxCoder`` of the model; ``decode(deltas)`` uses it.
    - ``num_classes``: C (background not counted).
    """

    anchors: Anchors
    assignment: Assignment
    labels: torch.Tensor
    boxes: torch.Tensor
    box_targets: torch.Tensor
    box_coder: BoxCoder
    num_classes: int

    @classmethod
    def from_assignment(
        cls,
        anchors: Anchors,
        gt: GroundTruth,
        assignment: Assignment,
        box_coder: BoxCoder,
        num_classes: int,
    ) -> DenseTargets:
        """Gather the matched gt labels and boxes per anchor and encode them."""
        matched = assignment.matched
        reference = anchors.boxes.expand(matched.shape[0], -1, -1)
        positive = matched >= 0
        ignore = torch.where(matched == Matcher.IGNORE, -1, 0)
        labels = torch.where(positive, gather_rows(gt.labels, matched), ignore)
        boxes = torch.where(positive[..., None], gather_rows(gt.boxes, matched), reference)
        return cls(
            anchors=anchors,
            assignment=assignment,
            labels=labels,
            boxes=boxes,
            box_targets=box_coder.encode(boxes, reference, anchors.anchor_strides()),
            box_coder=box_coder,
            num_classes=num_classes,
        )

    @property
    def positive(self) -> torch.Tensor:
        """bool ``[B,A]``: anchors matched to a gt box."""
        return self.labels > 0

    def num_positive(self) -> torch.Tensor:
        """float scalar: positives in the batch, at least 1 (the usual normaliser; no sync)."""
        return self.positive.sum().clamp(min=1).to(self.box_targets.dtype)

    def decode(self, deltas: torch.Tensor) -> torch.Tensor:
        """``[B,A,4]`` deltas → xyxy boxes ``[B,A,4]`` relative to ``anchors``."""
        return self.box_coder.decode(deltas, self.anchors.boxes, self.anchors.anchor_strides())


class DenseLayout:
    """The prediction layout a dense head produces, or a dense loss / postprocessor reads.

    ``prediction_keys``: extra keys → their shape after ``[B,A]`` (``()`` for ``[B,A]``,
    ``(1,)`` for ``[B,A,1]``); a head lists every extra key it returns, a loss or
    postprocessor every extra key it reads. ``extra_keys(cfg)`` gives them for one config
    (default: ``prediction_keys``; override when a config option turns a key on).
    ``background_column(cfg)``: ``True`` when ``cls_logits`` are ``[B,A,C+1]`` with column 0
    the background, ``False`` for ``[B,A,C]``, ``None`` when either is accepted (default: the
    config's ``background_column`` field, if any); the skeleton refuses a loss and a
    postprocessor that declare different answers. ``kit_box_coder``: the spec of the registered
    box coder the component is designed for. The conformance kit builds its inputs from these
    declarations and checks a head against them.
    """

    prediction_keys: ClassVar[Mapping[str, tuple[int, ...]]] = {}
    kit_box_coder: ClassVar[dict[str, Any]] = {"type": "delta_xywh"}

    @classmethod
    def extra_keys(cls, cfg: Any) -> Mapping[str, tuple[int, ...]]:
        return cls.prediction_keys

    @classmethod
    def background_column(cls, cfg: Any) -> bool | None:
        value = getattr(cfg, "background_column", None)
        return None if value is None else bool(value)


class ObjectnessLayout(DenseLayout):
    """YOLO's layout: an ``objectness [B,A]`` logit beside sigmoid ``cls_logits [B,A,C]`` (no
    background column). The head, loss and postprocessor that share it declare it by
    subclassing this next to their role's interface."""

    prediction_keys: ClassVar[Mapping[str, tuple[int, ...]]] = {"objectness": ()}
    kit_box_coder: ClassVar[dict[str, Any]] = {"type": "yolo"}

    @classmethod
    def background_column(cls, cfg: Any) -> bool:
        return False


class DenseHead(DenseLayout, Head):
    """A dense detector's head (see the module docstring for its outputs).

    Built with injected ``in_channels`` (tuple, one per level), ``num_anchors`` (tuple of anchors
    per location, one per level) and ``num_classes`` (C): a head's ``Config`` subclasses
    ``DenseHeadConfig``, which declares the three.
    """

    role: ClassVar[str] = "dense_head"


@attrs.frozen(kw_only=True)
class DenseHeadConfig:
    """The fields every ``DenseHead`` config has, injected by the skeleton from the neck (or
    backbone) and the anchor generator: ``in_channels`` and ``num_anchors`` (one per level),
    ``num_classes`` (C, background not counted)."""

    in_channels: tuple[int, ...] = injected()
    num_anchors: tuple[int, ...] = injected()
    num_classes: int = injected()

    def levels(self, name: str) -> list[tuple[int, int]]:
        """``(in_channels, num_anchors)`` of each level, for heads with per-level layers.

        ValueError naming the head ``name`` when the features and the anchor generator give
        different numbers of levels.
        """
        if len(self.in_channels) != len(self.num_anchors):
            raise ValueError(
                f"{name}: {len(self.in_channels)} feature levels but anchor counts for "
                f"{len(self.num_anchors)} levels ({list(self.num_anchors)}); the backbone (or "
                "neck) and the anchor generator must have the same number of levels"
            )
        return list(zip(self.in_channels, self.num_anchors))


class DenseLoss(DenseLayout, Loss):
    """``forward(predictions, targets)`` → ``dict[str, Tensor]`` of scalar ``loss_*`` terms.

    ``predictions``: the dense head's dict (``cls_logits [B,A,K]``, ``bbox_deltas [B,A,4]``);
    ``targets``: ``DenseTargets``. Every term is finite when no image has a box.
    """

    role: ClassVar[str] = "dense_loss"

    def forward(  # type: ignore[override]
        self, predictions: dict[str, torch.Tensor], targets: DenseTargets
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class BoxLoss(Loss):
    """Per-anchor box-regression loss: ``forward(deltas, targets)`` → float ``[B,A]``.

    ``deltas``: the head's ``bbox_deltas [B,A,4]``; ``targets``: ``DenseTargets`` (encoded
    ``box_targets``, matched gt ``boxes``, ``decode``). Returns the loss of every anchor, summed
    over its coordinates, finite everywhere (non-positive anchors included: the dense loss
    masks and normalises).
    """

    role: ClassVar[str] = "box_loss"

    def forward(  # type: ignore[override]
        self, deltas: torch.Tensor, targets: DenseTargets
    ) -> torch.Tensor:
        raise NotImplementedError


class DensePostprocessor(DenseLayout, Postprocessor):
    """``__call__(predictions, anchors, image_sizes)`` → one detection dict per image.

    ``predictions`` the dense head's dict; ``anchors`` the ``Anchors`` (``boxes [A,4]`` or
    ``[B,A,4]``, per-level counts, strides: decode with ``box_coder.decode(deltas, boxes,
    strides)``, gathering ``anchors.anchor_strides()`` like the boxes); ``image_sizes``
    ``(h, w)`` per image. Built with the skeleton's ``box_coder`` injected (a config subclasses
    ``DensePostprocessConfig``). Output as ``Postprocessor``.
    """

    role: ClassVar[str] = "dense_postprocessor"

    def __call__(  # type: ignore[override]
        self,
        predictions: dict[str, torch.Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError


@attrs.frozen(kw_only=True)
class DensePostprocessConfig:
    """The field every box postprocessor config has: ``box_coder``, injected by the skeleton
    (the one its matcher's targets were encoded with). Subclass it."""

    box_coder: Any = injected()
