"""``FusedFrozenBatchNorm2d``: torchvision's ``FrozenBatchNorm2d`` as one ``F.batch_norm`` call.

torchvision's module computes ``x * scale + bias`` from its four buffers with four elementwise
ops on every call (on CPU about twice ``BatchNorm2d.eval()``'s time on a ``[4,256,100,100]``
tensor). Here the same buffers go to ``F.batch_norm`` in inference mode: one fused kernel,
the same arithmetic (``x * w / sqrt(var + eps) + (b - mean * w / sqrt(var + eps))``).

It subclasses ``FrozenBatchNorm2d``: the buffers, their state-dict keys (``weight``, ``bias``,
``running_mean``, ``running_var``; a ``num_batches_tracked`` key is dropped on load) and
``isinstance`` checks are torchvision's, so converters and checkpoints are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import FrozenBatchNorm2d


class FusedFrozenBatchNorm2d(FrozenBatchNorm2d):
    """Frozen BatchNorm over ``[N,C,H,W]`` (any float dtype; the buffers follow the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=False,
            momentum=0.0,
            eps=self.eps,
        )
