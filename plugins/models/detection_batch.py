"""The batch every detection model works on, checked once: ``prepare_batch``; its anchors.

``prepare_batch`` checks the targets (labels, boxes, masks), runs the model's
``ImagePreprocessor`` (normalize, resize, pad) and pads the ground truth into a
``GroundTruth`` (``[B,G,...]``), so single-shot and two-stage models share one copy of the
target checks, the padding and the proposal rescaling. ``batch_anchors`` gives a dense stage
(a single-shot head, the RPN) the ``Anchors`` of the batch, strides included.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from anchorage.core.data.batching import pad_targets
from anchorage.core.errors import DataError
from anchorage.core.host_sync import from_host
from anchorage.core.interfaces import AnchorGenerator, Anchors, GroundTruth
from anchorage.plugins.models.preprocess import ImagePreprocessor
from anchorage.plugins.models.preprocess import _check_inputs as check_inputs


@attrs.frozen
class DetectionBatch:
    """A preprocessed detection batch.

    ``images`` float ``[B,3,H,W]`` (normalized, resized, zero-padded); ``image_sizes`` the
    ``(h, w)`` of each image inside it; ``original_sizes`` the ``(H, W)`` given; ``targets`` the
    resized target dicts (or None); ``gt`` the padded ``GroundTruth`` on the images' device
    (train mode, else None); ``masks`` per-image gt masks ``[N_i,h,w]`` (when asked for);
    ``proposals`` per-image boxes ``[R_i,4]`` xyxy batch pixels (when asked for).
    """

    images: torch.Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    targets: list[dict[str, Any]] | None = None
    gt: GroundTruth | None = None
    masks: list[torch.Tensor] | None = None
    proposals: list[torch.Tensor] | None = None


def prepare_batch(
    preprocess: ImagePreprocessor,
    images: list[torch.Tensor],
    targets: list[dict[str, Any]] | None,
    *,
    model: str,
    num_classes: int,
    training: bool,
    masks: bool = False,
    proposals: bool = False,
) -> DetectionBatch:
    """Check, preprocess and pad one batch (see ``DetectionBatch``).

    Train mode needs ``targets``: dicts with ``boxes [N,4]`` xyxy pixels (positive width and
    height), ``labels [N]`` int64 in 1..``num_classes``, optional ``iscrowd [N]`` (never
    matched), ``masks [N,H,W]`` with ``masks=True``. ``proposals=True`` reads
    ``targets[i]["proposals"]`` ``[R,4]`` (original pixels) in both modes. Errors are
    ``DataError``s naming the target and key, prefixed with ``model``.
    """
    if training:
        if targets is None:
            raise DataError(f"{model}: train mode needs targets (one dict per image)")
        check_targets(images, targets, num_classes, masks=masks)
    elif not proposals:
        targets = None
    batch = preprocess(images, targets)
    gt = found_masks = found_proposals = None
    if training:
        gt = GroundTruth(*pad_targets(batch.targets)).to(batch.images.device)
        found_masks = [t["masks"] for t in batch.targets] if masks else None
    if proposals:
        found_proposals = _scaled_proposals(batch.targets, batch.image_sizes, batch.original_sizes)
    return DetectionBatch(
        batch.images,
        batch.image_sizes,
        batch.original_sizes,
        batch.targets,
        gt,
        found_masks,
        found_proposals,
    )


def check_targets(
    images: list[torch.Tensor],
    targets: list[dict[str, Any]],
    num_classes: int,
    *,
    masks: bool = False,
) -> None:
    """Images and boxes (``[3,H,W]`` float, ``[N,4]``), labels (int64, one per box, in 1..C),
    boxes of positive size and masks (one per box, image size).

    Label and box *values* are checked when the targets are on the CPU. Targets already on a
    GPU get the type and shape checks only: reading their values would make the host wait for
    the GPU at every train step. The datasets check the values when they load them, on the
    host, so a training run still names a bad box; a caller feeding GPU tensors directly can
    run this check on their CPU copies.
    """
    check_inputs(images, targets)
    for i, t in enumerate(targets):  # types and counts: no tensor values read
        labels = t.get("labels")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
            raise DataError(f"targets[{i}]['labels']: expected an int64 tensor [N]")
        if labels.shape[0] != t["boxes"].shape[0]:
            raise DataError(
                f"targets[{i}]: {t['boxes'].shape[0]} boxes but {labels.shape[0]} labels"
            )
        if masks:
            _check_masks(i, images[i], t)
    if not targets or any(t["labels"].device.type != "cpu" for t in targets):
        return
    # Values: one pass over the whole batch; the per-image pass only names what failed.
    labels = torch.cat([t["labels"].reshape(-1) for t in targets])
    boxes = torch.cat([t["boxes"].reshape(-1, 4).to(labels.device) for t in targets])
    bad_label = (labels < 1) | (labels > num_classes)
    bad_box = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
    if bool(torch.cat([bad_label, bad_box.to(bad_label.device)]).any()):
        _name_bad_values(targets, num_classes)


def _name_bad_values(targets: list[dict[str, Any]], num_classes: int) -> None:
    """Raise the ``DataError`` for the first target with a label or box out of range."""
    for i, t in enumerate(targets):
        labels, boxes = t["labels"], t["boxes"]
        if labels.numel() and (labels.min() < 1 or labels.max() > num_classes):
            raise DataError(
                f"targets[{i}]['labels']: labels must be in 1..{num_classes}, got "
                f"{labels.tolist()[:10]}"
            )
        bad = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if bad.any():
            k = int(bad.nonzero()[0, 0])
            raise DataError(
                f"targets[{i}]: box {k} {boxes[k].tolist()} has non-positive width or height "
                "(expected xyxy with x2 > x1, y2 > y1)"
            )


def _check_masks(i: int, image: torch.Tensor, target: dict[str, Any]) -> None:
    m, n = target.get("masks"), target["boxes"].shape[0]
    want = (n, int(image.shape[-2]), int(image.shape[-1]))
    if m is None or tuple(m.shape) != want:
        got = None if m is None else tuple(m.shape)
        raise DataError(
            f"targets[{i}]['masks']: expected {want} (one mask per box, image size), got {got}"
        )


def _scaled_proposals(
    targets: list[dict[str, Any]] | None,
    image_sizes: list[tuple[int, int]],
    original_sizes: list[tuple[int, int]],
) -> list[torch.Tensor]:
    """``targets[i]["proposals"]`` (original pixels) → batch pixels, ``[R_i,4]`` each."""
    if targets is None or any("proposals" not in t for t in targets):
        raise DataError(
            "a two_stage model without an rpn needs targets[i]['proposals'] ([R,4] xyxy) in "
            "train and eval mode (or proposals_file and targets[i]['image_id'])"
        )
    scaled = []
    for t, size, orig in zip(targets, image_sizes, original_sizes):
        boxes = t["proposals"].as_subclass(torch.Tensor).float().reshape(-1, 4)
        ratio = from_host([size[1] / orig[1], size[0] / orig[0]] * 2, device=boxes.device)
        scaled.append(boxes * ratio)
    return scaled


def batch_anchors(
    generator: AnchorGenerator,
    image_size: tuple[int, int],
    features: dict[str, torch.Tensor],
    strides: tuple[int, ...],
    predicted: int,
    where: str,
) -> Anchors:
    """The ``Anchors`` of a padded batch of ``image_size`` for ``features`` (fine → coarse),
    with the levels' ``strides``; ``predicted`` is the A the head produced, and a generator
    giving another count is a ``ValueError`` naming ``where`` (the stage's key path)."""
    device = next(iter(features.values())).device
    sizes = [tuple(f.shape[-2:]) for f in features.values()]
    anchors = generator.anchors(image_size, sizes, strides, device=device)
    if anchors.boxes.shape[0] != predicted:
        raise ValueError(
            f"{where}: the anchor generator gives {anchors.boxes.shape[0]} anchors but the head "
            f"predicts {predicted}"
        )
    return anchors
