"""Anchors, matching, box coding and sampling: the target-assignment interfaces.

The matcher contract: a ``Matcher`` takes the ``Anchors`` of the batch (anchor boxes or points
with their per-level counts and strides), the padded ``GroundTruth`` and, when it needs them,
the head's predictions, and returns an ``Assignment`` (matched gt index per anchor, optional
per-anchor weights). ``IoUMatcher`` is the base of matchers that only look at IoU.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torchvision.ops import box_area, box_iou

from ..host_sync import from_host


class AnchorGenerator:
    """Anchors (default boxes, priors) for one image size and its feature maps.

    ``__call__(image_size, feature_sizes)``: ``image_size`` is ``(H, W)`` of the (padded) batch
    tensor, ``feature_sizes`` a list of ``(h, w)`` per level, fine → coarse. Returns float32
    ``[A,4]`` xyxy anchors in absolute pixels of that tensor, level by level, location by
    location (row-major), ``num_anchors_per_location()[level]`` per location — the order a
    head's flattened predictions use. ``per_level=True`` returns the list of per-level tensors.
    ``device`` selects where the anchors live.
    """

    def num_anchors_per_location(self) -> list[int]:
        """Anchors at each location, per level."""
        raise NotImplementedError

    def __call__(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        *,
        device: torch.device | str = "cpu",
        per_level: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        raise NotImplementedError

    def anchors(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        strides: tuple[int, ...],
        *,
        device: torch.device | str = "cpu",
    ) -> Anchors:
        """``Anchors`` for one batch: ``[A,4]`` boxes level by level, their per-level counts and
        the feature ``strides`` (one per level, from the backbone or neck ``feature_info``).

        The one place a skeleton turns an anchor generator's levels into ``Anchors``.
        """
        levels = self(image_size, feature_sizes, device=device, per_level=True)
        counts = tuple(int(level.shape[0]) for level in levels)
        return Anchors(torch.cat(list(levels)), counts, strides)


def _tensor(name: str, dims: tuple[int, ...]) -> Any:
    def check(_inst: object, _attr: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, torch.Tensor) or value.dim() not in dims:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"{name}: expected a tensor with {' or '.join(map(str, dims))} dims, got {got}"
            )

    return check


@attrs.frozen
class Anchors:
    """The reference boxes (or points) a dense prediction or a proposal refers to.

    ``boxes``: float xyxy absolute pixels of the batch tensor, ``[A,4]`` shared by every image
    (anchor generators) or ``[B,A,4]`` per image (proposals). A point (FCOS) is a box centred on
    it; matchers that need points use ``centres``. ``num_per_level``: anchors per feature level,
    fine → coarse, summing to A (``(A,)`` for a single level). ``strides``: the feature stride of
    each level in pixels, or None when unknown (e.g. proposals).
    """

    boxes: torch.Tensor = attrs.field(validator=_tensor("Anchors.boxes", (2, 3)))
    num_per_level: tuple[int, ...] = attrs.field(converter=tuple)
    strides: tuple[int, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )

    def __attrs_post_init__(self) -> None:
        if self.boxes.shape[-1] != 4 or sum(self.num_per_level) != self.boxes.shape[-2]:
            raise ValueError(
                f"Anchors: boxes {tuple(self.boxes.shape)} must be [...,A,4] with A = "
                f"sum(num_per_level) = {sum(self.num_per_level)}"
            )
        if self.strides is not None and len(self.strides) != len(self.num_per_level):
            raise ValueError(
                f"Anchors: {len(self.strides)} strides for {len(self.num_per_level)} levels"
            )

    @classmethod
    def single_level(cls, boxes: torch.Tensor) -> Anchors:
        """``[A,4]`` or ``[B,A,4]`` reference boxes as one level without a stride."""
        return cls(boxes, (boxes.shape[-2],))

    @property
    def centres(self) -> torch.Tensor:
        """float ``[...,A,2]`` box centres ``(x, y)``."""
        return (self.boxes[..., :2] + self.boxes[..., 2:]) / 2

    def level_index(self) -> torch.Tensor:
        """int64 ``[A]``: the level of each anchor."""
        counts = from_host(self.num_per_level, device=self.boxes.device)
        levels = torch.arange(len(counts), device=counts.device)
        return torch.repeat_interleave(levels, counts, output_size=sum(self.num_per_level))

    def per_level(self, values: list[float] | tuple[float, ...]) -> torch.Tensor:
        """One value per level → float ``[A]`` (each anchor gets its level's value)."""
        table = from_host(values, dtype=self.boxes.dtype, device=self.boxes.device)
        return table[self.level_index()]

    def split_levels(self) -> list[Anchors]:
        """One single-level ``Anchors`` per level: its boxes (split along A), count, stride."""
        boxes = self.boxes.split(list(self.num_per_level), dim=-2)
        strides = self.strides or (None,) * len(boxes)
        return [
            Anchors(b, (n,), None if s is None else (s,))
            for b, n, s in zip(boxes, self.num_per_level, strides)
        ]

    def anchor_strides(self) -> torch.Tensor | None:
        """float ``[A]``: the feature stride of each anchor's level, or None without strides.

        What a ``BoxCoder`` that needs per-anchor geometry receives (``strides=``).
        """
        return None if self.strides is None else self.per_level(self.strides)


@attrs.frozen
class GroundTruth:
    """Ground truth of a batch, padded to the largest box count G.

    ``boxes`` float ``[B,G,4]`` xyxy batch pixels (zeros where padded); ``labels`` int64
    ``[B,G]`` in 1..C (-1 where padded); ``valid`` bool ``[B,G]``, False for padding and for
    boxes that must never be matched (crowd boxes). G may be 0.
    """

    boxes: torch.Tensor = attrs.field(validator=_tensor("GroundTruth.boxes", (3,)))
    labels: torch.Tensor = attrs.field(validator=_tensor("GroundTruth.labels", (2,)))
    valid: torch.Tensor = attrs.field(validator=_tensor("GroundTruth.valid", (2,)))

    def __attrs_post_init__(self) -> None:
        if self.labels.shape != self.boxes.shape[:2] or self.valid.shape != self.labels.shape:
            raise ValueError(
                f"GroundTruth: boxes {tuple(self.boxes.shape)}, labels {tuple(self.labels.shape)} "
                f"and valid {tuple(self.valid.shape)} must be [B,G,4], [B,G], [B,G]"
            )

    def to(self, device: torch.device | str) -> GroundTruth:
        """On ``device``; a copy from the host to a GPU does not wait for it (``non_blocking``;
        a copy to the host does, so that its values are there when read)."""
        to_gpu = torch.device(device).type != "cpu"
        boxes, labels, valid = (
            t.to(device, non_blocking=to_gpu) for t in (self.boxes, self.labels, self.valid)
        )
        return GroundTruth(boxes, labels, valid)

    def class_agnostic(self) -> GroundTruth:
        """The same boxes with every valid label 1 (one foreground class, as an RPN sees it)."""
        return GroundTruth(self.boxes, torch.where(self.valid, 1, -1), self.valid)

    def slice(self, start: int, stop: int) -> GroundTruth:
        """Images ``start:stop`` of the batch (G unchanged)."""
        return GroundTruth(self.boxes[start:stop], self.labels[start:stop], self.valid[start:stop])


@attrs.frozen
class Assignment:
    """What a matcher returns.

    ``matched`` int64 ``[B,A]``: gt index in 0..G-1, ``-1`` (``Matcher.BACKGROUND``) or ``-2``
    (``Matcher.IGNORE``). ``weights``: optional float ``[B,A]`` per-anchor loss weights (e.g.
    soft labels); None means 1 everywhere.
    """

    matched: torch.Tensor
    weights: torch.Tensor | None = None


class Matcher:
    """Target assignment: anchors + padded ground truth (+ predictions) → ``Assignment``.

    ``__call__(anchors, gt, *, predictions=None)``: ``anchors`` an ``Anchors`` (``[A,4]`` or
    ``[B,A,4]`` boxes, per-level counts, strides); ``gt`` a ``GroundTruth`` (``[B,G,4]`` boxes,
    ``[B,G]`` labels and valid); ``predictions`` the head's dict for matchers that use them
    (e.g. ``cls_logits [B,A,K]``). Returns an ``Assignment`` whose ``matched [B,A]`` holds a
    valid gt's index, ``-1`` background or ``-2`` ignore; invalid (padded, crowd) gt rows never
    match, and with G = 0 every anchor is ``-1``. Vectorized over the padded batch (no per-image
    loop); runs on the inputs' device.

    ``reads_set_predictions``: True for a matcher of set-prediction models, whose
    ``predictions`` are one decoder layer's ``logits [B,Q,K]`` and ``boxes [B,Q,4]`` (cxcywh
    0..1), whose ``gt`` is normalised (xyxy 0..1) and whose anchors are the predicted boxes.
    """

    BACKGROUND = -1
    IGNORE = -2
    reads_set_predictions: bool = False

    def __call__(
        self,
        anchors: Anchors,
        gt: GroundTruth,
        *,
        predictions: dict[str, torch.Tensor] | None = None,
    ) -> Assignment:
        raise NotImplementedError


class IoUMatcher(Matcher):
    """A matcher deciding from IoU alone: ``batched_box_iou`` then ``match_iou``.

    ``match_iou(iou)``: float ``[B,G,A]`` (invalid gt rows hold -1) → int64 ``[B,A]``.
    """

    def __call__(
        self,
        anchors: Anchors,
        gt: GroundTruth,
        *,
        predictions: dict[str, torch.Tensor] | None = None,
    ) -> Assignment:
        iou = batched_box_iou(gt.boxes, gt.valid, anchors.boxes)
        return Assignment(self.match_iou(iou))

    def match_iou(self, iou: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def batched_box_iou(gt: torch.Tensor, valid: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of padded gt boxes with reference boxes (``torchvision.ops.box_iou`` over a batch).

    Args:
        gt: float ``[B,G,4]`` xyxy boxes (rows where ``valid`` is False are ignored).
        valid: bool ``[B,G]``; False for padding and for boxes that must not be matched.
        anchors: float ``[A,4]`` xyxy, shared by all images, or ``[B,A,4]`` per image.

    Returns:
        float ``[B,G,A]``: IoU in 0..1 for valid rows, ``-1`` for invalid rows. Same values
        as ``torchvision.ops.box_iou`` per image (bit for bit in the shared-anchor case).
    """
    if gt.dim() != 3 or gt.shape[-1] != 4 or valid.shape != gt.shape[:2]:
        raise ValueError(
            f"batched_box_iou: expected gt [B,G,4] and valid [B,G], got {tuple(gt.shape)} "
            f"and {tuple(valid.shape)}"
        )
    b, g = valid.shape
    if anchors.dim() == 2:
        iou = box_iou(gt.reshape(b * g, 4), anchors).view(b, g, anchors.shape[0])
    elif anchors.dim() == 3 and anchors.shape[0] == b:
        iou = _per_image_iou(gt, anchors)
    else:
        raise ValueError(
            f"batched_box_iou: anchors must be [A,4] or [B,A,4] with B={b}, got "
            f"{tuple(anchors.shape)}"
        )
    return iou.masked_fill(~valid[:, :, None], -1.0)


def _per_image_iou(gt: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    # torchvision.ops.box_iou is 2-D only; this is its arithmetic, broadcast over the batch
    # (same operations in the same order, so the values agree with a per-image box_iou).
    area1 = box_area(gt.flatten(0, 1)).view(gt.shape[:2])
    area2 = box_area(ref.flatten(0, 1)).view(ref.shape[:2])
    lt = torch.max(gt[:, :, None, :2], ref[:, None, :, :2])
    rb = torch.min(gt[:, :, None, 2:], ref[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, :, None] + area2[:, None, :] - inter
    return inter / union


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, n]]`` for ``values [B,G,...]`` and ``index [B,N]`` (clamped >= 0).

    The matched gt box / label per anchor. With G = 0 the result is zeros.
    """
    b, n = index.shape
    if values.shape[1] == 0:
        return values.new_zeros((b, n, *values.shape[2:]))
    rows = torch.arange(b, device=index.device)[:, None]
    return values[rows, index.clamp(min=0)]


class BoxCoder:
    """Boxes ↔ regression targets relative to reference boxes (anchors or proposals).

    ``encode(boxes, reference, strides=None)``: both ``[..., 4]`` xyxy absolute pixels,
    broadcastable; returns deltas of the same shape. ``decode(deltas, reference, strides=None)``
    is its exact inverse (up to float error), returning xyxy boxes. Empty inputs give empty
    outputs. ``strides``: float ``[...]`` broadcastable to ``reference.shape[:-1]``, the feature
    stride of each reference in pixels (``Anchors.anchor_strides()``, gathered like the
    references), or None where the references have none (proposals). A coder that needs it
    (``needs_strides = True``) raises ``ValueError`` without it; no coder infers geometry from
    box positions.
    """

    needs_strides: bool = False

    def encode(
        self, boxes: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def decode(
        self, deltas: torch.Tensor, reference: torch.Tensor, strides: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise NotImplementedError


class Sampler:
    """Matched labels → which anchors/proposals train.

    ``__call__(matched)``: int64 ``[B,N]`` as a Matcher returns it (>= 0 positive, -1
    negative, -2 ignore). Returns bool ``(positive [B,N], negative [B,N])``, disjoint; with no
    positives the negatives may still be sampled. Random choices use torch's global RNG.
    """

    def __call__(self, matched: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
