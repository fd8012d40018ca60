"""Base class of file-backed detection datasets: validated records → (image, target).

A loader plugin (coco, voc, shapes) parses its files into ``RawImage`` records, validates them
(``anchorage.core.data.validation``) and hands the kept ``ImageRecord`` list to
``DetectionDataset``, which decodes images, builds target dicts and applies the transform
pipeline that ``build_dataset`` attaches.

Sample contract (``__getitem__``): ``(image, target)`` with image ``tv_tensors.Image`` float32
[3,H,W] in 0..1 and target keys ``boxes`` (``tv_tensors.BoundingBoxes`` float32 [N,4] XYXY
absolute pixels), ``labels`` int64 [N] in 1..C, ``image_id`` int, ``iscrowd`` int64 [N],
``area`` float32 [N], ``orig_size`` (H, W), ``masks`` (``tv_tensors.Mask`` uint8 [N,H,W], when
built with ``masks=True``), ``semantic_mask`` (``tv_tensors.Mask`` int64 [H,W]: 0 background,
1..C classes, 255 ignore (crowd regions); when built with ``semantic_masks=True``).
A sample whose image file cannot be decoded is ``None`` when ``max_bad_samples`` allows the
skip (``collate_detection`` drops it); otherwise ``DataError`` names the file and image id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from .validation import ImageRecord, ValidationReport, bad_sample

LOG = logging.getLogger("anchorage.data")

Sample = tuple[tv_tensors.Image, dict[str, Any]]


DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
"""What PIL raises for a file it cannot decode (truncated, not an image, a decompression bomb)."""


def decode_rgb(path: Any) -> torch.Tensor:
    """An image file fully decoded to RGB float32 ``[3,H,W]`` in 0..1 (PIL, as every anchorage
    reader does); raises one of ``DECODE_ERRORS``."""
    with Image.open(path) as pil:
        pil.load()  # decodes fully: a truncated file raises here
        rgb = pil.convert("RGB")
    return F.to_dtype(F.pil_to_tensor(rgb), torch.float32, scale=True)


class DetectionDataset(torch.utils.data.Dataset):
    """Validated image records as (image, target) samples; see the module docstring.

    ``class_names[i - 1]`` names label ``i``. ``label_to_category`` maps labels back to the
    annotation file's category ids (for writing COCO-format results). ``report`` holds the
    load-time validation summary; runtime skips of undecodable images are added to it
    (counted per process: each DataLoader worker keeps its own count).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        *,
        report: ValidationReport,
        label_to_category: dict[int, Any] | None = None,
        masks: bool = False,
        semantic_masks: bool = False,
        max_bad_samples: int = 0,
    ) -> None:
        self.records = list(records)
        self.class_names = list(class_names)
        self.label_to_category = label_to_category or {
            i + 1: i + 1 for i in range(len(self.class_names))
        }
        self.report = report
        self.masks = masks
        self.semantic_masks = semantic_masks
        self.max_bad_samples = max_bad_samples
        self.transforms: Callable[[Any, Any], Sample] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample | None:
        record = self.records[index]
        image = self.load_image(record)
        if image is None:
            return None
        target = self.make_target(record)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    @property
    def num_classes(self) -> int:
        """C, the number of classes (background not counted)."""
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int]:
        """Image ids in index order."""
        return [r.image_id for r in self.records]

    def set_transforms(self, transforms: Callable[[Any, Any], Sample] | None) -> None:
        """Attach the (image, target) transform pipeline applied by ``__getitem__``."""
        self.transforms = transforms

    def load_image(self, record: ImageRecord) -> tv_tensors.Image | None:
        """Decode ``record.file`` to float32 [3,H,W] in 0..1; None when skipped as bad."""
        try:
            image = decode_rgb(record.file)
        except DECODE_ERRORS as exc:
            return self._skip(record, f"cannot decode image file {record.file}: {exc}")
        h, w = image.shape[-2:]
        if (h, w) != (record.height, record.width):
            return self._skip(
                record,
                f"image file {record.file} is {h}x{w} (HxW) but the annotations say "
                f"{record.height}x{record.width}",
            )
        return tv_tensors.Image(image)

    def _skip(self, record: ImageRecord, reason: str) -> None:
        where = f"{record.name} (image id {record.image_id})"
        message = f"{self.report.source}: {reason} (image id {record.image_id})"
        bad_sample(self.report, "unreadable_image", where, message, self.max_bad_samples)
        LOG.warning(
            "skipping bad sample %s (%d/%d allowed)",
            message,
            self.report.bad_samples,
            self.max_bad_samples,
        )
        return None

    def make_target(self, record: ImageRecord) -> dict[str, Any]:
        """The target dict of ``record`` (see the module docstring for keys and dtypes)."""
        size = (record.height, record.width)
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(record.boxes.copy()), format="XYXY", canvas_size=size
            ),
            "labels": torch.from_numpy(record.labels.copy()),
            "image_id": record.image_id,
            "iscrowd": torch.from_numpy(record.iscrowd.copy()),
            "area": torch.from_numpy(record.area.copy()),
            "orig_size": size,
        }
        if self.masks or self.semantic_masks:
            instance = decode_masks(record)
            if self.masks:
                target["masks"] = tv_tensors.Mask(torch.from_numpy(instance))
            if self.semantic_masks:
                semantic = semantic_from_instances(instance, record.labels, record.iscrowd)
                target["semantic_mask"] = tv_tensors.Mask(torch.from_numpy(semantic))
        return target


def decode_masks(record: ImageRecord) -> np.ndarray:
    """Instance masks uint8 [N,H,W] from COCO segmentations (polygons or RLE).

    An annotation without a segmentation gets its filled box as mask.
    """
    h, w = record.height, record.width
    out = np.zeros((len(record.labels), h, w), dtype=np.uint8)
    rles, where = [], []
    for i, segm in enumerate(record.segmentations):
        if not segm:
            x1, y1, x2, y2 = np.round(record.boxes[i]).astype(int)
            out[i, y1:y2, x1:x2] = 1
            continue
        if isinstance(segm, list):  # polygons
            rles.append(mask_utils.merge(mask_utils.frPyObjects(segm, h, w)))
        elif isinstance(segm.get("counts"), list):  # uncompressed RLE
            rles.append(mask_utils.frPyObjects(segm, h, w))
        else:
            rles.append(segm)
        where.append(i)
    if rles:  # one batched decode: [H,W,K]
        out[where] = mask_utils.decode(rles).transpose(2, 0, 1)
    return out


def semantic_from_instances(
    masks: np.ndarray, labels: np.ndarray, iscrowd: np.ndarray
) -> np.ndarray:
    """Semantic mask int64 [H,W] painted in annotation order (later on top).

    0 background, label for each instance pixel, 255 (ignore) for crowd regions.
    """
    semantic = np.zeros(masks.shape[1:], dtype=np.int64)
    for m, label, crowd in zip(masks, labels, iscrowd):
        semantic[m.astype(bool)] = 255 if crowd else int(label)
    return semantic
