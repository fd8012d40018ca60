"""torchvision Faster / Mask R-CNN state dicts → anchorage ``two_stage`` state dicts.

torchvision's ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` (and the other
``resnet_fpn_backbone`` variants) map onto a ``two_stage`` model with a ``resnet*`` backbone, an
``fpn`` neck, ``rpn_head``, ``two_mlp_box_head`` and ``mask_head`` by renaming key prefixes
only; every tensor is kept as it is. Old-format torchvision keys (``rpn.head.conv.weight``,
``roi_heads.mask_head.mask_fcn1.weight``) are upgraded first, as torchvision's own
``_load_from_state_dict`` hooks do. Registered as the ``("torchvision", "two_stage")``
converter of ``tools/convert_weights.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from anchorage.plugins.models.convert import register_converter, rename_prefixes

RCNN_PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone.body.", "backbone.body."),
    ("backbone.fpn.", "neck.fpn."),
    ("rpn.head.", "rpn.head."),
    ("roi_heads.box_head.", "roi_box.head."),
    ("roi_heads.box_predictor.", "roi_box.head."),
    ("roi_heads.mask_head.", "roi_mask.head.convs."),
    ("roi_heads.mask_predictor.", "roi_mask.head."),
)
"""torchvision prefix → anchorage prefix, first match wins."""

_LEGACY = (
    (re.compile(r"^rpn\.head\.conv\.(weight|bias)$"), r"rpn.head.conv.0.0.\1"),
    (
        re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$"),
        lambda m: f"roi_heads.mask_head.{int(m.group(1)) - 1}.0.{m.group(2)}",
    ),
)


@register_converter("torchvision", "two_stage")
def convert_torchvision_rcnn(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision Faster/Mask R-CNN ResNet-FPN state dict → ``two_stage`` (prefix renames).

    ``state``: ``model.state_dict()`` of a torchvision ``FasterRCNN`` / ``MaskRCNN`` (or the
    file torchvision publishes). Returns a new dict with the same tensors under anchorage names.
    Keys no prefix covers (keypoint heads, ...) raise ``CheckpointError``.
    """
    upgraded = {}
    for key, value in state.items():
        for pattern, repl in _LEGACY:
            key = pattern.sub(repl, key)
        upgraded[key] = value
    return rename_prefixes(upgraded, RCNN_PREFIXES, "torchvision R-CNN state dict")
