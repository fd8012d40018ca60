"""Drawing model outputs on images, dispatched on the output's type.

``draw_prediction(image, output, class_names)`` picks the first registered drawer whose
predicate accepts ``output``: detection dicts (``boxes``/``scores``/``labels``, optional
``masks``) get boxes with "class score" captions; semantic segmentation (``{"out":
logits [C+1,H,W]}``) gets a colour overlay. A new output type needs one
``register_drawer`` call, not an edit to ``tools/infer.py``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

LEGIBLE_SIZE = 384
"""Short side (pixels) below which saved and logged drawings are enlarged: the caption font
is fixed-size, so on a 128-pixel image it would cover the objects it names."""

Drawer = Callable[[torch.Tensor, Any, Sequence[str], float, int], torch.Tensor]
_DRAWERS: list[tuple[Callable[[Any], bool], Drawer]] = []


def register_drawer(predicate: Callable[[Any], bool]) -> Callable[[Drawer], Drawer]:
    """Register ``fn(image_uint8 [3,H,W], output, class_names, score_thresh, scale) -> uint8
    image`` for outputs where ``predicate(output)`` is true (later registrations are tried
    first). ``image`` is the model's input enlarged ``scale`` times (an integer, 1 when not
    enlarged): pixel coordinates in ``output`` must be multiplied by it."""

    def decorator(fn: Drawer) -> Drawer:
        _DRAWERS.insert(0, (predicate, fn))
        return fn

    return decorator


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours (golden-ratio hues), deterministic."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A [3,H,W] image (float 0..1 or uint8) as uint8 on the CPU."""
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        return image
    return (image.float().clamp(0, 1) * 255).round().to(torch.uint8)


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
    from .pictures import draw_note, enlarge, nothing_passes

    image, scale = enlarge(to_uint8(image), min_size)
    for predicate, fn in _DRAWERS:
        if predicate(output):
            drawn = fn(image, output, class_names, score_thresh, scale)
            note = nothing_passes(output, score_thresh)
            return drawn if note is None else draw_note(drawn, note)
    keys = sorted(output) if isinstance(output, Mapping) else type(output).__name__
    raise TypeError(f"no drawer for a model output of this kind ({keys})")


def split_outputs(outputs: Any, n: int) -> list[Any]:
    """Per-image outputs from what a model returned for a batch of ``n`` images.

    Detection models return a list already; ``{"out": [B,...]}`` is split along B.
    """
    if isinstance(outputs, Mapping):
        return [{k: v[i] for k, v in outputs.items()} for i in range(n)]
    return list(outputs)


def _label_text(label: int, class_names: Sequence[str]) -> str:
    return class_names[label - 1] if 1 <= label <= len(class_names) else str(label)


@register_drawer(lambda o: isinstance(o, Mapping) and "boxes" in o)
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


@register_drawer(lambda o: isinstance(o, Mapping) and "out" in o and "boxes" not in o)
def draw_semantic(
    image: torch.Tensor,
    output: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    score_thresh: float,
    scale: int,
) -> torch.Tensor:
    """Colour overlay of the arg-max class per pixel (class 0 = background, left clear).

    ``output["out"]``: logits [C+1,H,W] (or [1,C+1,H,W]), resized to the image if needed.
    """
    logits = output["out"].detach().float().cpu()
    if logits.dim() == 4:
        logits = logits[0]
    if logits.shape[1:] != image.shape[1:]:  # the input pipeline resized the image
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
