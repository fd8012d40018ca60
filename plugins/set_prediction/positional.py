"""Position embeddings of feature maps: ``sine`` (DETR's, normalised) and ``learned``.

Both take the padding mask of one feature level (bool ``[B,h,w]``, True at padding) and give
float ``[B,D,h,w]``: D/2 channels encode y, then D/2 encode x. torchvision has no 2-D
position embedding, so these are written here.
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import nn

from anchorage.core.fields import injected
from anchorage.core.interfaces import PositionalEncoding
from anchorage.core.registry import POSITIONAL_ENCODINGS


def _even(_inst: object, attr: attrs.Attribute, value: int) -> None:
    if value <= 0 or value % 2:
        raise ValueError(f"{attr.name} must be a positive even number, got {value}")


@POSITIONAL_ENCODINGS.register(
    "sine", examples=({"dim": 32}, {"dim": 16, "offset": -0.5, "normalize": False})
)
class SinePositionalEncoding(PositionalEncoding):
    """DETR's sine embedding of the valid-pixel coordinates.

    The row (column) index of a pixel is its count of valid pixels above (left of) it and
    itself; with ``normalize`` it is ``(index + offset) / (valid extent + eps) * scale``, so
    an image keeps the same embedding whatever padding surrounds it. Each coordinate becomes
    D/2 channels ``sin, cos`` of ``coordinate / temperature ** (2 * (k // 2) / (D/2))``,
    interleaved. ``offset: -0.5`` is Deformable DETR's variant (pixel centres).
    """

    @attrs.frozen(kw_only=True)
    class Config:
        dim: int = injected(validator=_even)
        temperature: float = attrs.field(default=10000.0, validator=attrs.validators.gt(0))
        normalize: bool = True
        scale: float = 2 * math.pi
        offset: float = 0.0
        eps: float = 1e-6

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        valid = (~mask).to(torch.float32)
        y = valid.cumsum(1)
        x = valid.cumsum(2)
        if cfg.normalize:
            y = (y + cfg.offset) / (y[:, -1:, :] + cfg.eps) * cfg.scale
            x = (x + cfg.offset) / (x[:, :, -1:] + cfg.eps) * cfg.scale
        feats = cfg.dim // 2
        k = torch.arange(feats, dtype=torch.int64, device=mask.device).to(torch.float32)
        dim_t = cfg.temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / feats)
        return torch.cat((sin_cos(y, dim_t), sin_cos(x, dim_t)), dim=3).permute(0, 3, 1, 2)


def sin_cos(coord: torch.Tensor, dim_t: torch.Tensor) -> torch.Tensor:
    """``[B,h,w]`` coordinates → ``[B,h,w,F]``: sin of the even channels, cos of the odd ones,
    interleaved."""
    pos = coord[..., None] / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(3)


@POSITIONAL_ENCODINGS.register("learned", examples=({"dim": 32},))
class LearnedPositionalEncoding(PositionalEncoding):
    """Learned row and column embeddings (DETR's ``learned`` option), up to ``max_size`` cells.

    Channels: D/2 column embedding, then D/2 row embedding (DETR's order), the same for every
    image; padding does not change them. A map larger than ``max_size`` is a ``ValueError``.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        dim: int = injected(validator=_even)
        max_size: int = attrs.field(default=50, validator=attrs.validators.ge(1))

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.row_embed = nn.Embedding(cfg.max_size, cfg.dim // 2)
        self.col_embed = nn.Embedding(cfg.max_size, cfg.dim // 2)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        b, h, w = mask.shape
        if max(h, w) > self.cfg.max_size:
            raise ValueError(
                f"learned positional encoding: a {h}x{w} feature map exceeds max_size "
                f"{self.cfg.max_size}; raise max_size or use the sine encoding"
            )
        cols = self.col_embed(torch.arange(w, device=mask.device))
        rows = self.row_embed(torch.arange(h, device=mask.device))
        pos = torch.cat((cols[None].expand(h, w, -1), rows[:, None].expand(h, w, -1)), dim=-1)
        return pos.permute(2, 0, 1)[None].expand(b, -1, -1, -1)
