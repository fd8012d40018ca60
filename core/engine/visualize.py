"""Drawing one image's model output on the image.

Every model returns one dict per image in eval mode; ``draw_prediction(image, output,
class_names)`` draws the fields that dict has, as layers, whatever the model's task:
``sem_seg`` logits ``[C+1,H,W]`` as a colour overlay of the arg-max class, instance ``masks``
``[K,1,H,W]`` as overlays, ``boxes`` (with ``labels``, ``scores``) as boxes with "class score"
captions, and a classifier's top-k (``probs`` without boxes: ``labels [k]``, ``scores [k]``)
as "1. class 0.93" lines top-left. An output with none of them is an error naming its keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from .pictures import draw_lines, draw_note, enlarge, nothing_passes, palette, to_uint8

LEGIBLE_SIZE = 384
"""Short side (pixels) below which saved and logged drawings are enlarged: the caption font
is fixed-size, so on a 128-pixel image it would cover the objects it names."""


def draw_prediction(
    image: torch.Tensor,
    output: Any,
    class_names: Sequence[str],
    score_thresh: float = 0.3,
    min_size: int = 0,
) -> torch.Tensor:
    """``image`` [3,H,W] with ``output`` (one image's prediction) drawn: uint8 [3,sH,sW].

    ``s`` is 1 unless the short side is below ``min_size``: then the image is enlarged by the
    smallest integer ``s`` that reaches it (nearest neighbour, so pixels stay sharp), which
    keeps captions legible on small inputs such as 128-pixel synthetic shapes; ``s`` never takes
    the long side past ``pictures.MAX_DRAWN_SIDE`` (memory stays bounded on odd shapes). When no
    detection reaches ``score_thresh``, a note says so on the picture ("0 of 100 detections
    ≥ 0.30; best 0.16").
    """
    image, scale = enlarge(to_uint8(image), min_size)
    if not isinstance(output, Mapping) or not ({"sem_seg", "boxes", "probs"} & set(output)):
        keys = sorted(output) if isinstance(output, Mapping) else type(output).__name__
        raise TypeError(
            f"nothing to draw in a model output with {keys}: expected a per-image "
            "dict with 'sem_seg', 'boxes' and/or 'probs'"
        )
    if "boxes" not in output and "sem_seg" not in output:
        return draw_classes(image, output, class_names)
    if "sem_seg" in output:
        image = draw_semantic(image, output["sem_seg"])
    if "boxes" in output:
        image = draw_detections(image, output, class_names, score_thresh, scale)
    note = nothing_passes(output, score_thresh)
    return image if note is None else draw_note(image, note)


def draw_classes(
    image: torch.Tensor, output: Mapping[str, torch.Tensor], class_names: Sequence[str]
) -> torch.Tensor:
    """A classifier's top-k (``labels [k]``, ``scores [k]``) as "1. name 0.93" lines
    top-left, best first, each in its class's colour."""
    labels = output["labels"].detach().cpu().reshape(-1).tolist()
    scores = output["scores"].detach().float().cpu().reshape(-1).tolist()
    colours = palette(max(len(class_names), max(labels, default=0)) + 1)
    lines = [
        f"{i + 1}. {_label_text(lb, class_names)} {s:.2f}"
        for i, (lb, s) in enumerate(zip(labels, scores))
    ]
    return draw_lines(image, lines, [colours[lb] for lb in labels])


def _label_text(label: int, class_names: Sequence[str]) -> str:
    return class_names[label - 1] if 1 <= label <= len(class_names) else str(label)


def draw_detections(
    image: torch.Tensor,
    output: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    score_thresh: float,
    scale: int,
) -> torch.Tensor:
    """Boxes (xyxy pixels) with "name 0.87" captions; instance masks [N,1,H,W] (probabilities)
    overlaid when present."""
    boxes = output["boxes"].detach().float().cpu() * scale
    labels = output["labels"].detach().cpu().long()
    scores = output.get("scores")
    scores = scores.detach().float().cpu() if scores is not None else torch.ones(len(boxes))
    keep = scores >= score_thresh
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    colours = palette(max(len(class_names), int(labels.max()) if len(labels) else 0) + 1)
    if "masks" in output and keep.any():
        masks = output["masks"].detach().float().cpu()[keep]
        if masks.shape[-2:] != image.shape[-2:]:
            masks = torch.nn.functional.interpolate(masks, size=tuple(image.shape[-2:]))
        masks = masks[:, 0] > 0.5
        image = draw_segmentation_masks(
            image, masks, alpha=0.4, colors=[colours[int(lb)] for lb in labels]
        )
    if len(boxes) == 0:
        return image
    captions = [f"{_label_text(int(lb), class_names)} {s:.2f}" for lb, s in zip(labels, scores)]
    return draw_bounding_boxes(  # black captions on a box-coloured band: legible on any image
        image,
        boxes,
        labels=captions,
        colors=[colours[int(lb)] for lb in labels],
        width=2,
        fill_labels=True,
        label_colors="black",
    )


def draw_semantic(image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Colour overlay of the arg-max class per pixel of ``logits`` ``[C+1,H,W]`` (class 0 =
    background, left clear), resized to ``image`` (uint8 ``[3,sH,sW]``) when they differ."""
    logits = logits.detach().float().cpu()
    if logits.shape[1:] != image.shape[1:]:  # the drawing is enlarged
        logits = torch.nn.functional.interpolate(
            logits[None], size=tuple(image.shape[1:]), mode="bilinear", align_corners=False
        )[0]
    pred = logits.argmax(0)
    classes = torch.arange(1, logits.shape[0])
    masks = pred[None] == classes[:, None, None]
    present = masks.flatten(1).any(1)
    if not present.any():
        return image
    colours = palette(logits.shape[0])
    return draw_segmentation_masks(
        image, masks[present], alpha=0.5, colors=[colours[int(c)] for c in classes[present]]
    )
