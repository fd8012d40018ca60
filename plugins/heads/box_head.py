"""R-CNN box head (``two_mlp_box_head``): torchvision's ``TwoMLPHead`` + ``FastRCNNPredictor``.

Pooled RoI features are flattened, go through two fully connected layers with ReLU (``fc6``,
``fc7``), then a classifier over C+1 classes (``cls_score``, index 0 = background) and
class-specific box deltas (``bbox_pred``, 4 per class incl. background). Parameter names match
torchvision's ``roi_heads.box_head.*`` / ``roi_heads.box_predictor.*`` after the converter's
prefix mapping.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from anchorage.core import injected
from anchorage.core.interfaces import roles
from anchorage.core.registry import HEADS


@HEADS.register(
    "two_mlp_box_head",
    examples=({"in_channels": 4, "resolution": 7, "num_classes": 3, "representation_size": 16},),
)
class TwoMLPBoxHead(roles.RoIBoxHead):
    """RoI features → class logits and class-specific box deltas.

    ``forward(x)``: float ``[R, in_channels, resolution, resolution]``. Returns
    ``cls_logits`` ``[R, C+1]`` and ``bbox_deltas`` ``[R, (C+1)*4]``; R may be 0.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        in_channels: int = injected()
        resolution: int = injected()
        num_classes: int = injected()
        representation_size: int = attrs.field(default=1024, validator=attrs.validators.gt(0))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        n = cfg.representation_size
        self.fc6 = nn.Linear(cfg.in_channels * cfg.resolution**2, n)
        self.fc7 = nn.Linear(n, n)
        self.cls_score = nn.Linear(n, cfg.num_classes + 1)
        self.bbox_pred = nn.Linear(n, (cfg.num_classes + 1) * 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.flatten(start_dim=1)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))
        return {"cls_logits": self.cls_score(x), "bbox_deltas": self.bbox_pred(x)}
