"""Role interfaces: the typed slots of the two-stage, segmentation and style-transfer models.

A *role* is an interface class with a ``role`` class attribute. A slot declares the role it
takes (``component("loss", role="rpn_loss")``) and validation refuses a registered component
whose class does not derive from that role's interface, before anything is built. Each class
below states the one signature its slot calls: argument shapes, box formats, dict keys, and the
parameters the parent injects at build time. The dense-detector roles (``dense_head``,
``dense_loss``, ``box_loss``, ``dense_postprocessor``) live beside the dense skeleton.

Notation: B images, A anchors (all levels, level by level), R sampled RoIs of the batch
(concatenated image by image), P positive RoIs, C classes without background, M the mask
resolution. Boxes are float32 xyxy in pixels of the padded batch tensor.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .matching import Anchors
from .prediction import Head, Loss, Postprocessor

Tensor = torch.Tensor

# ------------------------------------------------------------------------------------ heads


class RPNHead(Head):
    """Region-proposal head, shared by every feature level.

    Injected: ``in_channels`` (the common width of the levels), ``num_anchors`` (anchors per
    location, the same on every level). ``forward(features)``: dict fine → coarse of
    ``[B, in_channels, h_l, w_l]``. Returns ``objectness`` float ``[B,A]`` (logits),
    ``bbox_deltas`` float ``[B,A,4]`` (to be decoded against the anchors) and
    ``num_anchors_per_level`` (list of L ints summing to A), flattened in the anchor
    generator's order (level, row, column, anchor).
    """

    role: ClassVar[str] = "rpn_head"

    def forward(self, features: dict[str, Tensor]) -> dict[str, Any]:
        raise NotImplementedError


class RoIBoxHead(Head):
    """RoI classification and class-specific box regression.

    Injected: ``in_channels``, ``resolution`` (pooled size h = w), ``num_classes`` (C).
    ``forward(x)``: pooled RoI features float ``[R, in_channels, resolution, resolution]``.
    Returns ``cls_logits [R, C+1]`` (column 0 background) and ``bbox_deltas [R, (C+1)*4]``
    (4 deltas per class, background included). R may be 0.
    """

    role: ClassVar[str] = "roi_box_head"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


class RoIMaskHead(Head):
    """Per-RoI, per-class mask logits.

    Injected: ``in_channels``, ``num_classes`` (C). ``forward(x)``: pooled RoI features float
    ``[R, in_channels, m, m]``. Returns ``mask_logits [R, C+1, M, M]`` (M = the head's output
    resolution, typically 2m). R may be 0.
    """

    role: ClassVar[str] = "roi_mask_head"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


class SegmentationHead(Head):
    """Per-pixel class logits from one feature map.

    Injected: ``in_channels``, ``num_classes`` (C), ``stride`` and ``in_feature`` (name) of
    the feature map it reads. ``forward(features, image_size=None)``: ``features`` dict with
    ``features[in_feature]`` float ``[B, in_channels, h, w]``; ``image_size`` ``(H, W)`` of the
    output (default: ``(h, w) * stride``). Returns ``{"logits": [B, C+1, H, W]}``.
    """

    role: ClassVar[str] = "segmentation_head"

    def forward(
        self, features: dict[str, Tensor], image_size: tuple[int, int] | None = None
    ) -> dict[str, Tensor]:
        raise NotImplementedError


# ----------------------------------------------------------------------------------- losses


class RPNLoss(Loss):
    """Objectness and proposal-box regression over the sampled anchors.

    ``forward(objectness, bbox_deltas, positive, negative, regression_targets)``:
    ``objectness`` float ``[B,A]`` logits, ``bbox_deltas`` and ``regression_targets`` float
    ``[B,A,4]`` (box-coder deltas; targets only read at positives), ``positive`` /
    ``negative`` bool ``[B,A]`` (the sampler's disjoint choice). Returns scalar
    ``loss_objectness`` and ``loss_rpn_box_reg``, finite (zero with a gradient path) when
    nothing is sampled or no anchor is positive.
    """

    role: ClassVar[str] = "rpn_loss"

    def forward(
        self,
        objectness: Tensor,
        bbox_deltas: Tensor,
        positive: Tensor,
        negative: Tensor,
        regression_targets: Tensor,
    ) -> dict[str, Tensor]:
        raise NotImplementedError


class RoIBoxLoss(Loss):
    """Classification and class-specific box regression of the sampled RoIs.

    ``forward(cls_logits, bbox_deltas, labels, regression_targets)``: ``cls_logits``
    ``[R, C+1]``, ``bbox_deltas`` ``[R, (C+1)*4]`` (the RoI box head's outputs), ``labels``
    int64 ``[R]`` (0 background, 1..C), ``regression_targets`` float ``[R,4]`` (deltas of the
    matched gt box, read at positives). Returns scalar ``loss_classifier`` and
    ``loss_box_reg``, finite when R = 0 or every RoI is background.
    """

    role: ClassVar[str] = "roi_box_loss"

    def forward(
        self, cls_logits: Tensor, bbox_deltas: Tensor, labels: Tensor, regression_targets: Tensor
    ) -> dict[str, Tensor]:
        raise NotImplementedError


class MaskLoss(Loss):
    """Mask loss of the positive RoIs.

    ``forward(mask_logits, labels, mask_targets)``: ``mask_logits`` ``[P, C+1, M, M]``,
    ``labels`` int64 ``[P]`` (gt class 1..C), ``mask_targets`` float ``[P, M, M]`` in 0..1 (gt
    masks cropped to each RoI and resized). Returns scalar ``loss_mask``, finite when P = 0.
    """

    role: ClassVar[str] = "mask_loss"

    def forward(
        self, mask_logits: Tensor, labels: Tensor, mask_targets: Tensor
    ) -> dict[str, Tensor]:
        raise NotImplementedError


class SegmentationLoss(Loss):
    """Per-pixel classification loss.

    ``forward(logits, target)``: ``logits`` float ``[B, C+1, H, W]``, ``target`` int64
    ``[B, H, W]`` in 0..C or the loss's ``cfg.ignore_index`` (pixels that do not count).
    Returns exactly one scalar ``loss_*`` term (the model scales it for auxiliary heads),
    finite when every pixel is ignored.
    """

    role: ClassVar[str] = "segmentation_loss"

    def forward(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


class StyleLoss(Loss):
    """A feature-matching term of neural style transfer (content or style).

    ``prepare(features)``: the reference image's features (dict layer → ``[B, C, H, W]``) →
    the targets the loss compares against (computed once, detached). ``forward(features,
    targets)``: the synthesized image's features for the layers of ``targets``. Returns one
    scalar ``loss_*`` term, already weighted.
    """

    role: ClassVar[str] = "style_loss"

    def prepare(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def forward(self, features: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError


class ImagePriorLoss(Loss):
    """A prior on the synthesized image itself (e.g. total variation).

    ``forward(image)``: float ``[B, C, H, W]``. Returns one scalar ``loss_*`` term, already
    weighted.
    """

    role: ClassVar[str] = "image_prior_loss"

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError


# ---------------------------------------------------------------------------- postprocessors


class ProposalGenerator(Postprocessor):
    """RPN outputs → per-image proposals: the class-agnostic dense postprocessor.

    Injected: ``box_coder`` (the RPN's). ``__call__(predictions, anchors, image_sizes, *,
    training=False)``: ``predictions`` the RPN head's ``objectness`` float ``[B,A]`` (logits)
    and ``bbox_deltas`` float ``[B,A,4]``; ``anchors`` the ``Anchors`` (``[A,4]`` level by
    level, per-level counts, strides); ``image_sizes`` ``(h, w)`` per image; ``training``
    selects the train-time candidate counts. Returns B dicts ``boxes [R_i,4]``, ``scores
    [R_i]``, best first (R_i may be 0). Not differentiable.
    """

    role: ClassVar[str] = "rpn_proposals"

    def __call__(  # type: ignore[override]
        self,
        predictions: dict[str, Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
        *,
        training: bool = False,
    ) -> list[dict[str, Tensor]]:
        raise NotImplementedError


class RCNNPostprocessor(Postprocessor):
    """RoI box head outputs → per-image detections.

    Injected: ``box_coder`` (the box stage's). ``__call__(predictions, anchors, image_sizes)``:
    ``predictions`` has ``cls_logits [B,R,C+1]``, ``bbox_deltas [B,R,(C+1)*4]`` and ``valid``
    bool ``[B,R]`` (False for padding); ``anchors`` the proposals as ``Anchors`` (``boxes
    [B,R,4]``, one level, no strides); ``image_sizes`` ``(h, w)`` per image. Returns B dicts
    ``boxes [K,4]``, ``scores [K]``, ``labels [K]`` int64 in 1..C, best first.
    """

    role: ClassVar[str] = "rcnn_postprocessor"

    def __call__(  # type: ignore[override]
        self,
        predictions: dict[str, Tensor],
        anchors: Anchors,
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        raise NotImplementedError


class MaskPostprocessor(Postprocessor):
    """RoI mask probabilities → full-image masks.

    ``__call__(results, image_sizes)``: ``results`` B dicts with ``masks`` float
    ``[K,1,M,M]`` (0..1) and ``boxes [K,4]`` xyxy in output-image pixels; ``image_sizes`` the
    output ``(H, W)`` per image. Returns the same dicts with ``masks [K,1,H,W]``.
    """

    role: ClassVar[str] = "mask_postprocessor"

    def __call__(  # type: ignore[override]
        self, results: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        raise NotImplementedError


ROLE_INTERFACES: tuple[type, ...] = (
    RPNHead,
    RoIBoxHead,
    RoIMaskHead,
    SegmentationHead,
    RPNLoss,
    RoIBoxLoss,
    MaskLoss,
    SegmentationLoss,
    StyleLoss,
    ImagePriorLoss,
    ProposalGenerator,
    RCNNPostprocessor,
    MaskPostprocessor,
)
"""The role interfaces defined here (the dense ones live beside the dense skeleton)."""
