"""Where a detector may make the host wait for the GPU: shared by the CPU and CUDA sync tests.

Keys are (file name, innermost function) as ``anchorage.core.host_sync`` and the CUDA sync
warnings report them. ``tiny_batch`` and ``train_step`` are the inputs and step both run.
"""

from __future__ import annotations

import torch

ALLOWED = {
    # torchvision: NMS itself (its CUDA kernel copies the suppression mask to the host)
    ("boxes.py", "nms"),
    ("boxes.py", "batched_nms"),
    ("boxes.py", "_batched_nms_vanilla"),
    ("boxes.py", "_batched_nms_coordinate_trick"),
    # our multiscale RoIAlign: the per-level group sizes (one read)
    ("extractors.py", "forward"),
    # postprocessors: the one compaction before NMS, NMS over group segments (one read for
    # the segment sizes) and the one read that cuts the final per-image lists
    ("rpn_proposals.py", "__call__"),
    ("rcnn_detections.py", "__call__"),
    ("multiclass_nms.py", "_select"),
    ("batching.py", "grouped_nms"),
    ("batching.py", "per_image_top_n"),
    # the sampled RoIs per image of a train step (one read of the per-image counts)
    ("rcnn_stages.py", "sample"),
    # the hungarian matcher: one copy of the costs to the host for scipy's solver (every
    # decoder layer stacked along the batch, and a two-stage model's encoder proposals, in
    # one match_groups call)
    ("hungarian.py", "_solve"),
}

# Seen by the CPU recorder only: values that are on the host on a GPU run too.
HOST_ONLY = {
    # torchvision's GeneralizedRCNNTransform draws the train size from a CPU tensor
    ("transform.py", "torch_choice"),
    # the target value check runs on CPU targets only (skipped for GPU targets)
    ("detection_batch.py", "check_targets"),
}


def tiny_batch(device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], list[dict]]:
    """Two images of different sizes, one and two boxes."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 96, generator=g), torch.rand(3, 80, 112, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 50, 60]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[5.0, 5, 40, 30], [30, 20, 90, 70]]),
            "labels": torch.tensor([2, 1]),
        },
    ]
    moved = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return [i.to(device) for i in images], moved


def train_step(model: torch.nn.Module, images: list, targets: list) -> None:
    """Forward with targets, summed loss, backward, one SGD step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    losses = model(images, targets)
    sum(losses.values()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
