"""A third-party box coder and postprocessor, written against the dense contract."""

import attrs
import torch
from torchvision.ops import batched_nms

from anchorage.core import (
    Anchors,
    BoxCoder,
    DensePostprocessConfig,
    DensePostprocessor,
    hookimpl,
)


class StrideLTRB(BoxCoder):
    """Distances from the anchor's centre to the four sides, in units of the anchor's stride
    (FCOS with ``norm_reg_targets``): ``[..., 4]`` xyxy pixels ↔ ``[..., 4]`` deltas."""

    needs_strides = True

    @attrs.frozen(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config) -> None:
        pass

    def _centre_and_stride(self, reference, strides):
        if strides is None:
            raise ValueError("stride_ltrb needs the anchors' strides")
        centre = (reference[..., :2] + reference[..., 2:]) / 2
        return centre, strides[..., None].to(reference.dtype)

    def encode(self, boxes, reference, strides=None):
        centre, stride = self._centre_and_stride(reference, strides)
        return torch.cat([centre - boxes[..., :2], boxes[..., 2:] - centre], -1) / stride

    def decode(self, deltas, reference, strides=None):
        centre, stride = self._centre_and_stride(reference, strides)
        d = deltas * stride
        return torch.cat([centre - d[..., :2], centre + d[..., 2:]], -1)


class ClassAgnosticNMS(DensePostprocessor):
    """Sigmoid ``cls_logits [B,A,C]``: each anchor keeps its best class; the ``topk`` best of
    each image above ``score_thresh`` go through one class-agnostic NMS for the whole batch
    (``batched_nms`` with the image as the group)."""

    @attrs.frozen(kw_only=True)
    class Config(DensePostprocessConfig):  # box_coder: injected by the skeleton
        score_thresh: float = 0.05
        nms_thresh: float = 0.5
        topk: int = 100

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    @classmethod
    def background_column(cls, cfg) -> bool:
        return False  # reads [B,A,C] logits

    def __call__(self, predictions, anchors: Anchors, image_sizes):
        boxes = self.cfg.box_coder.decode(
            predictions["bbox_deltas"].float(), anchors.boxes, anchors.anchor_strides()
        )  # [B,A,4]
        scores, labels = predictions["cls_logits"].float().sigmoid().max(-1)  # [B,A]
        top, index = scores.topk(min(self.cfg.topk, scores.shape[1]), dim=1)  # [B,K]
        boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4))
        hw = torch.tensor(image_sizes, dtype=boxes.dtype, device=boxes.device)  # [B,2]
        boxes = torch.minimum(boxes.clamp(min=0), hw.flip(-1).repeat(1, 2)[:, None])  # clip
        image = torch.arange(len(image_sizes), device=boxes.device)[:, None].expand_as(top)
        keep = (top > self.cfg.score_thresh).flatten()
        boxes, top, image = boxes.flatten(0, 1)[keep], top.flatten()[keep], image.flatten()[keep]
        labels = labels.gather(1, index).flatten()[keep] + 1  # classes are 1..C
        kept = batched_nms(boxes, top, image, self.cfg.nms_thresh)  # best first
        picks = [kept[image[kept] == b] for b in range(len(image_sizes))]
        return [{"boxes": boxes[p], "scores": top[p], "labels": labels[p]} for p in picks]


@hookimpl
def anchorage_register(registries):
    registries["box_coder"].register("stride_ltrb")(StrideLTRB)
    registries["postprocessor"].register("class_agnostic_nms")(ClassAgnosticNMS)
