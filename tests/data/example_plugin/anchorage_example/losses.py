"""A third-party GIoU box loss and a focal dense loss, written against the dense contract."""

import attrs
import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from anchorage.core import BoxLoss, DenseLoss, DenseTargets, build_child, component, hookimpl


class ExampleGIoU(BoxLoss):
    """``1 - GIoU`` of the decoded boxes and the matched gt boxes, per anchor ``[B,A]``."""

    @attrs.frozen(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config) -> None:
        super().__init__()

    def forward(self, deltas: torch.Tensor, targets: DenseTargets) -> torch.Tensor:
        boxes = targets.decode(deltas)
        loss = generalized_box_iou_loss(
            boxes.flatten(0, -2), targets.boxes.flatten(0, -2), reduction="none"
        )
        return loss.view(boxes.shape[:-1])


class ExampleFocal(DenseLoss):
    """Sigmoid focal loss on the C class logits + a box loss, over the batch's positives."""

    @attrs.frozen(kw_only=True)
    class Config:
        gamma: float = 2.0
        box_loss: object = component(
            "loss", role="box_loss", factory=lambda: {"type": "example_giou"}
        )

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.gamma = cfg.gamma
        self.box_loss = build_child("loss", cfg.box_loss)

    def forward(self, predictions: dict, targets: DenseTargets) -> dict:
        logits = predictions["cls_logits"][..., -targets.num_classes :]  # no background column
        labels = targets.labels
        onehot = F.one_hot(labels.clamp(min=0), targets.num_classes + 1)[..., 1:].to(logits)
        focal = sigmoid_focal_loss(logits, onehot, gamma=self.gamma, reduction="none").sum(-1)
        box = self.box_loss(predictions["bbox_deltas"], targets)
        n = targets.num_positive()
        return {
            "loss_focal": torch.where(labels >= 0, focal, 0.0).sum() / n,
            "loss_giou": torch.where(targets.positive, box, 0.0).sum() / n,
        }


@hookimpl
def anchorage_register(registries):
    registries["loss"].register("example_giou")(ExampleGIoU)
    registries["loss"].register("example_focal")(ExampleFocal)
