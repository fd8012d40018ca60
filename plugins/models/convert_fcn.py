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

from anchorage.core.errors import CheckpointError

PREFIXES = (
    ("backbone.", "backbone.body."),
    ("classifier.", "head.layers."),
    ("aux_classifier.", "aux_head.layers."),
)


def convert_fcn(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision FCN-ResNet state dict for anchorage's ``semantic_segmentation``.

    ``state``: torchvision ``fcn_resnet50().state_dict()`` (with or without ``aux_classifier``).
    Returns a new dict (same tensors). Unknown keys raise ``CheckpointError``. To load it into
    a model without an auxiliary head, drop the ``aux_head.*`` keys (or load non-strictly).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for old, new in PREFIXES:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise CheckpointError(
                f"fcn conversion: unexpected key {key!r} (expected keys starting with "
                f"{', '.join(p for p, _ in PREFIXES)}); is this a torchvision FCN state dict?"
            )
    return out
