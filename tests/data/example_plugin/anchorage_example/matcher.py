# my_package/anchorage_plugin.py
import attrs
import torch

from anchorage.core import Anchors, Assignment, GroundTruth, Matcher, hookimpl


class CenterMatcher(Matcher):
    """Each anchor whose centre lies inside a gt box (scaled by ``radius``) takes the smallest."""

    @attrs.frozen(kw_only=True)
    class Config:
        radius: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))

    def __init__(self, cfg: Config) -> None:
        self.radius = cfg.radius

    def __call__(self, anchors: Anchors, gt: GroundTruth, *, predictions=None) -> Assignment:
        b, g = gt.valid.shape
        if g == 0:  # no boxes in the batch: all background
            return Assignment(gt.labels.new_full((b, anchors.boxes.shape[-2]), -1))
        xy = anchors.centres.expand(b, -1, -1)[:, None]  # [B,1,A,2]
        mid = (gt.boxes[..., :2] + gt.boxes[..., 2:])[:, :, None] / 2  # [B,G,1,2]
        half = (gt.boxes[..., 2:] - gt.boxes[..., :2])[:, :, None] / 2 * self.radius
        inside = ((xy - mid).abs() < half).all(dim=-1) & gt.valid[..., None]  # [B,G,A]
        area = half[..., 0] * half[..., 1]  # [B,G,1]
        best, index = torch.where(inside, -area, -torch.inf).max(dim=1)  # smallest wins
        return Assignment(torch.where(best > -torch.inf, index, -1))


@hookimpl
def anchorage_register(registries):
    registries["matcher"].register("center_matcher")(CenterMatcher)
