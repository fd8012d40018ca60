"""Pictures that explain: enlargement of small images, ground truth drawn beside predictions,
and a note on the picture when no detection passes the score threshold.

Shared by ``tools/infer.py``, ``tools/browse_dataset.py`` and the trainer's prediction PNGs,
so every drawing of a small image is enlarged the same way.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

GT_COLOUR = (40, 220, 40)


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


MAX_DRAWN_SIDE = 4096
"""Longest side (pixels) an enlargement may produce: a 1x5000 image is not blown up to
384x1,920,000 (gigabytes, and a PNG that PIL refuses to open); it is drawn at its own size."""


def enlargement(size: tuple[int, int], min_size: int) -> int:
    """The integer factor ``enlarge`` applies to an ``(H, W)`` image (1: none): the smallest
    that brings the short side to ``min_size``, capped so the long side stays within
    ``MAX_DRAWN_SIDE``."""
    wanted = math.ceil(min_size / max(1, min(size)))
    return max(1, min(wanted, MAX_DRAWN_SIDE // max(size)))


def enlarge(image: torch.Tensor, min_size: int) -> tuple[torch.Tensor, int]:
    """``image`` [C,H,W] enlarged by ``enlargement`` (nearest neighbour, so pixels stay
    sharp), and that factor ``s`` (1: unchanged; also when ``min_size`` is 0). Pixel
    coordinates drawn on the result must be multiplied by ``s``.
    """
    scale = enlargement(tuple(image.shape[-2:]), min_size)
    if scale > 1:
        image = image.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return image, scale


def nothing_passes(output: Any, score_thresh: float) -> str | None:
    """ "0 of 100 detections ≥ 0.30; best 0.16" when ``output`` has ``scores`` and none reaches
    ``score_thresh`` ("0 detections" when the model returned none); None otherwise (also for
    a classifier's output, whose top-1 class is an answer whatever its probability)."""
    if not isinstance(output, Mapping) or "scores" not in output:
        return None
    if "probs" in output and "boxes" not in output:  # a classifier's top-k: always an answer
        return None
    scores = output["scores"].detach().float().reshape(-1)
    if len(scores) == 0:
        return "0 detections"
    best = float(scores.max())
    if best >= score_thresh:
        return None
    return f"0 of {len(scores)} detections \u2265 {score_thresh:.2f}; best {best:.2f}"


def draw_note(image: torch.Tensor, text: str) -> torch.Tensor:
    """uint8 ``image`` [3,H,W] with ``text`` written on a white band along its top edge
    (``≥`` written ``>=``: the default bitmap font has no such glyph)."""
    h, w = image.shape[-2:]
    return _caption(image, text.replace("\u2265", ">="), [0.0, 0.0, w - 1, min(h - 1, 14)])


def draw_lines(
    image: torch.Tensor, lines: Sequence[str], colours: Sequence[tuple[int, int, int]]
) -> torch.Tensor:
    """uint8 ``image`` [3,H,W] with ``lines`` written top-left, one band each (a classifier's
    top-k, a classification target), each band in its colour; lines that do not fit are
    left out."""
    h, w = image.shape[-2:]
    for i, (text, colour) in enumerate(zip(lines, colours)):
        top = i * 15
        if top + 14 > h - 1:
            break
        box = [0.0, float(top), float(min(w - 1, 6 * len(text) + 8)), float(top + 14)]
        image = draw_bounding_boxes(
            image,
            torch.tensor([box]),
            labels=[text],
            colors=[colour],
            width=1,
            fill_labels=True,
            label_colors="black",
        )
    return image


def draw_target(
    image: torch.Tensor,
    target: Mapping[str, Any],
    class_names: Sequence[str],
    scale: int = 1,
    colour: Callable[[int], tuple[int, int, int]] | None = None,
) -> torch.Tensor:
    """uint8 ``image`` [3,sH,sW] with a target's ground truth drawn: instance masks
    (``masks`` [G,H,W]) or a ``semantic_mask`` [H,W] overlaid, ``boxes`` [G,4] xyxy (pixels of
    the unscaled image, multiplied by ``scale``) with class names ("(crowd)" when marked), or
    a classification target's ``label`` as its class name top-left.
    ``colour(label)`` picks each class's colour (default: green for every class)."""
    colour = colour or (lambda _label: GT_COLOUR)
    if "label" in target and "boxes" not in target:  # a classification target
        c = int(target["label"])
        name = class_names[c - 1] if 0 < c <= len(class_names) else str(c)
        return draw_lines(image, [name], [colour(c)])
    labels = target.get("labels", torch.zeros(0, dtype=torch.int64))
    labels = labels.as_subclass(torch.Tensor).reshape(-1).tolist()
    if "semantic_mask" in target:
        sem = _scaled(target["semantic_mask"].as_subclass(torch.Tensor), scale)
        present = [c for c in sem.unique().tolist() if 0 < c < 255]
        if present:
            masks = torch.stack([sem == c for c in present])
            image = draw_segmentation_masks(image, masks, 0.45, [colour(c) for c in present])
    if "masks" in target and labels:
        masks = _scaled(target["masks"].as_subclass(torch.Tensor).bool(), scale)
        image = draw_segmentation_masks(image, masks, 0.45, [colour(c) for c in labels])
    if not labels:
        return image
    crowd = target.get("iscrowd", torch.zeros(len(labels))).reshape(-1).tolist()
    names = [
        (class_names[c - 1] if 0 < c <= len(class_names) else str(c)) + (" (crowd)" if k else "")
        for c, k in zip(labels, crowd)
    ]
    boxes = target["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4) * scale
    return draw_bounding_boxes(  # black captions on a filled band, as the predictions
        image,
        boxes,
        names,
        [colour(c) for c in labels],
        width=2,
        fill_labels=True,
        label_colors="black",
    )


def _scaled(mask: torch.Tensor, scale: int) -> torch.Tensor:
    if scale == 1:
        return mask
    return mask.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def beside(left: torch.Tensor, right: torch.Tensor, gap: int = 4) -> torch.Tensor:
    """Two uint8 images [3,H,W] side by side (white gap, the shorter padded at the bottom)."""
    h = max(left.shape[-2], right.shape[-2])
    parts = []
    for part in (left, right):
        pad = torch.full((3, h, part.shape[-1]), 255, dtype=torch.uint8)
        pad[:, : part.shape[-2]] = part
        parts.append(pad)
    return torch.cat([parts[0], torch.full((3, h, gap), 255, dtype=torch.uint8), parts[1]], -1)


def label_panel(image: torch.Tensor, text: str) -> torch.Tensor:
    """``image`` with a small caption ("ground truth", "prediction") in its bottom-left."""
    h, w = image.shape[-2:]
    return _caption(image, text, [0.0, max(0, h - 15), min(w - 1, 6 * len(text) + 8), h - 1])


def _caption(image: torch.Tensor, text: str, box: list[float]) -> torch.Tensor:
    """Black ``text`` on a white band filling ``box`` (xyxy pixels) of uint8 ``image``."""
    return draw_bounding_boxes(
        image,
        torch.tensor([box], dtype=torch.float32),
        labels=[text],
        colors=[(255, 255, 255)],
        width=1,
        fill_labels=True,
        label_colors="black",
    )


def with_ground_truth(
    image: torch.Tensor,
    target: Mapping[str, Any],
    drawn: torch.Tensor,
    class_names: Sequence[str],
    min_size: int,
) -> torch.Tensor:
    """``drawn`` (a prediction drawn on ``image`` enlarged for ``min_size``) to the right of
    the same image with ``target``'s ground truth drawn (each class in the colour its
    predictions get); both panels captioned."""
    base, scale = enlarge(to_uint8(image), min_size)
    colours = palette(len(class_names) + 1)  # the prediction drawer's colour per class
    truth = draw_target(base, target, class_names, scale, lambda c: colours[c % len(colours)])
    return beside(label_panel(truth, "ground truth"), label_panel(drawn, "prediction"))


def targets_from_coco(path: str | Any) -> dict[str, dict[str, torch.Tensor]]:
    """Ground truth of a COCO annotation file by image file name (its last path part):
    ``{"boxes": [G,4] xyxy, "labels": [G] (1..C in category-id order), "iscrowd": [G]}``."""
    import json
    from pathlib import Path

    from ..errors import DataError

    try:
        coco = json.loads(Path(path).read_text(encoding="utf-8"))
        categories = sorted(c["id"] for c in coco["categories"])
        images = {im["id"]: Path(im["file_name"]).name for im in coco["images"]}
        anns = coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a readable COCO annotation file ({exc})") from None
    label = {cat: i + 1 for i, cat in enumerate(categories)}
    rows: dict[str, list[list[float]]] = {name: [] for name in images.values()}
    for a in anns:
        x, y, w, h = a["bbox"]
        rows[images[a["image_id"]]].append(
            [x, y, x + w, y + h, label[a["category_id"]], a.get("iscrowd", 0)]
        )
    out = {}
    for name, r in rows.items():
        t = torch.tensor(r, dtype=torch.float64).reshape(-1, 6)
        out[name] = {"boxes": t[:, :4].float(), "labels": t[:, 4].long(), "iscrowd": t[:, 5].long()}
    return out
