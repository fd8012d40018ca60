"""torchvision ``fcn_resnet50`` / ``fcn_resnet101`` state dicts → ``semantic_segmentation``.

The anchorage model of ``specs/fcn_resnet50_coco.yaml`` (dilated ``resnet50`` backbone with
``norm: bn``, ``tv_fcn_head`` + auxiliary ``tv_fcn_head``) holds the same tensors under other
names:

==========================  ==========================
torchvision                 anchorage
==========================  ==========================
``backbone.<p>``            ``backbone.body.<p>``
``classifier.<i>.<p>``      ``head.layers.<i>.<p>``
``aux_classifier.<i>.<p>``  ``aux_head.layers.<i>.<p>``
==========================  ==========================
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .convert import register_converter, rename_prefixes

PREFIXES = (
    ("backbone.", "backbone.body."),
    ("classifier.", "head.layers."),
    ("aux_classifier.", "aux_head.layers."),
)


@register_converter("torchvision", "semantic_segmentation")
def convert_fcn(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision FCN-ResNet state dict for anchorage's ``semantic_segmentation``.

    ``state``: torchvision ``fcn_resnet50().state_dict()`` (with or without ``aux_classifier``;
    the spec must then have, or lack, an ``aux_head`` alike). Returns a new dict sharing the
    tensors. Unknown keys raise ``CheckpointError``. Used by ``tools/convert_weights.py
    --source torchvision`` with ``specs/fcn_resnet50_coco.yaml``.
    """
    return rename_prefixes(state, PREFIXES, "torchvision FCN state dict")
