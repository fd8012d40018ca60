"""``multibox_prior``: d2l's multibox priors (sizes × ratios, n + m − 1 per location)."""

from __future__ import annotations

import attrs
import torch

from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import AnchorGenerator
from anchorage.core.registry import ANCHOR_GENERATORS

TINY_SSD_SIZES = ((0.2, 0.272), (0.37, 0.447), (0.54, 0.619), (0.71, 0.79), (0.88, 0.961))


def _check(inst: MultiboxPrior.Config) -> None:
    for name in ("sizes", "ratios"):
        value = getattr(inst, name)
        if not value or any(not v for v in value) or any(x <= 0 for v in value for x in v):
            raise ValueError(f"{name}: expected non-empty lists of values > 0, got {value}")
    if len(inst.ratios) not in (1, len(inst.sizes)):
        raise ValueError(
            f"ratios: expected one list for all levels or one per level ({len(inst.sizes)}), "
            f"got {len(inst.ratios)}"
        )


@ANCHOR_GENERATORS.register(
    "multibox_prior", examples=({}, {"sizes": ((0.3,), (0.6, 0.8)), "ratios": ((1.0,), (1.0, 2.0))})
)
class MultiboxPrior(AnchorGenerator):
    """Priors of d2l's ``multibox_prior`` (Dive into Deep Learning §14.4), level by level.

    For level l with sizes ``s_1..s_n`` (fractions of the image) and ratios ``r_1..r_m``, each
    location gets ``n + m − 1`` boxes: every size with ``r_1``, then ``s_1`` with ``r_2..r_m``
    (width ``s·√r·h_l/w_l``, height ``s/√r`` of the image, where ``h_l × w_l`` is the feature
    map, as d2l does), centred at ``((j + 0.5)/w_l, (i + 0.5)/h_l)``, then scaled to pixels.
    ``ratios`` holds one list for every level or one per level. ``clip`` clamps to the image.
    """

    @attrs.frozen(kw_only=True)
    class Config:
        sizes: tuple[tuple[float, ...], ...] = TINY_SSD_SIZES
        ratios: tuple[tuple[float, ...], ...] = ((1.0, 2.0, 0.5),)
        clip: bool = False

        def __attrs_post_init__(self) -> None:
            _check(self)

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        n = len(cfg.sizes)
        self.ratios = cfg.ratios if len(cfg.ratios) == n else cfg.ratios * n
        self._cache: dict[tuple, list[torch.Tensor]] = {}

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) + len(r) - 1 for s, r in zip(self.cfg.sizes, self.ratios)]

    def __call__(
        self,
        image_size: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        *,
        device: torch.device | str = "cpu",
        per_level: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        if len(feature_sizes) != len(self.cfg.sizes):
            raise ValueError(
                f"multibox_prior: {len(feature_sizes)} feature maps but sizes for "
                f"{len(self.cfg.sizes)} levels"
            )
        sizes = tuple((int(h), int(w)) for h, w in feature_sizes)
        key = (tuple(image_size), sizes, str(device))
        levels = self._cache.get(key)
        if levels is None:
            levels = [
                self._level(image_size, hw, s, r, device)
                for hw, s, r in zip(sizes, self.cfg.sizes, self.ratios)
            ]
            self._cache = {key: levels}  # one entry: fixed-size models reuse it every step
        return list(levels) if per_level else torch.cat(levels)

    def _level(self, image_size, feature_size, sizes, ratios, device) -> torch.Tensor:
        fh, fw = feature_size
        s = from_host(sizes, dtype=torch.float32, device=device)
        r = from_host(ratios, dtype=torch.float32, device=device)
        w = torch.cat((s * torch.sqrt(r[0]), s[0] * torch.sqrt(r[1:]))) * fh / fw
        h = torch.cat((s / torch.sqrt(r[0]), s[0] / torch.sqrt(r[1:])))
        cy = (torch.arange(fh, device=device, dtype=torch.float32) + 0.5) / fh
        cx = (torch.arange(fw, device=device, dtype=torch.float32) + 0.5) / fw
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")
        centres = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)  # [hw,1,4]
        half = torch.stack((-w, -h, w, h), dim=-1) / 2  # [k,4]
        boxes = (centres + half).reshape(-1, 4)
        if self.cfg.clip:
            boxes = boxes.clamp(0.0, 1.0)
        ih, iw = image_size
        return boxes * from_host([iw, ih, iw, ih], dtype=torch.float32, device=device)
