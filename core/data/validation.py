"""Annotation validation at load time, shared by every file-backed dataset (COCO, VOC).

Loaders turn their files into ``RawImage`` records (boxes already ``xyxy`` absolute pixels)
and call ``validate_images``. Two classes of problems are told apart:

- box problems a dataset may plausibly contain (degenerate boxes with w or h <= 0, NaN/Inf
  coordinates, boxes wholly outside the image, polygons with fewer than 3 points): handled by
  ``policy``: ``"drop"`` (default) drops the annotation, ``"strict"`` raises ``DataError``.
  Boxes partly outside the image are clamped to it (a fix, reported, never an error).
- broken references (unknown category id, duplicate image or annotation id, missing image
  file) and unreadable files: these are *bad samples*. They raise ``DataError`` naming the
  file and id unless the spec's ``max_bad_samples`` allows skipping them; skips are counted.

Images left without annotations stay in the dataset (negatives). One summary with counts and
example ids is logged once per dataset and kept as ``ValidationReport``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ..errors import DataError

LOG = logging.getLogger("anchorage.data")
_LOGGED: set[str] = set()
"""Reports logged in this process: a run reads one annotation file several times (the spec
checks, the training set, evaluation), and its report is logged once."""

BOX_PROBLEMS = ("nan_box", "degenerate_box", "outside_image", "bad_polygon")
"""Problems handled by ``policy`` (drop or strict)."""
BAD_SAMPLE_PROBLEMS = (
    "unknown_category",
    "unknown_image",
    "duplicate_image_id",
    "duplicate_annotation_id",
    "missing_file",
    "unreadable_annotation",
    "unreadable_image",
)
"""Problems that count against ``max_bad_samples``."""
FIXES = ("clamped_box", "dropped_polygon_part")
"""Problems fixed in place (reported, never an error)."""
MAX_EXAMPLES = 5


@attrs.define
class RawAnnotation:
    """One annotation as read from a file: ``bbox`` xyxy absolute pixels (floats)."""

    ann_id: int | str
    category_id: Any
    bbox: tuple[float, float, float, float]
    iscrowd: int = 0
    area: float | None = None
    segmentation: Any = None


@attrs.define
class RawImage:
    """One image as read from an annotation file, before validation."""

    image_id: int
    file: Path
    height: int
    width: int
    name: str
    annotations: list[RawAnnotation] = attrs.Factory(list)


@attrs.define
class ImageRecord:
    """A validated image: arrays ready to become a target dict.

    boxes float32 [N,4] xyxy inside the image; labels int64 [N] in 1..C; iscrowd int64 [N];
    area float32 [N]; segmentations: N COCO segmentations (polygon lists / RLE dicts / None).
    """

    image_id: int
    file: Path
    height: int
    width: int
    name: str
    boxes: np.ndarray
    labels: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray
    segmentations: list[Any]


@attrs.define
class ValidationReport:
    """Counts and example ids of every problem found in one dataset (``source``)."""

    source: str
    num_images: int = 0
    num_annotations: int = 0
    counts: dict[str, int] = attrs.Factory(dict)
    examples: dict[str, list[str]] = attrs.Factory(dict)

    def add(self, problem: str, example: str) -> None:
        """Count one ``problem``; keep the first few ``example`` ids."""
        self.counts[problem] = self.counts.get(problem, 0) + 1
        shown = self.examples.setdefault(problem, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(example)

    @property
    def bad_samples(self) -> int:
        """Number of problems counting against ``max_bad_samples``."""
        return sum(self.counts.get(p, 0) for p in BAD_SAMPLE_PROBLEMS)

    def __str__(self) -> str:
        head = f"{self.source}: {self.num_images} images, {self.num_annotations} annotations kept"
        if not self.counts:
            return head + "; no annotation problems"
        lines = [head + "; annotation problems:"]
        for problem, n in sorted(self.counts.items()):
            lines.append(f"  {problem}: {n} (e.g. {', '.join(self.examples[problem])})")
        return "\n".join(lines)


def bad_sample(
    report: ValidationReport, problem: str, example: str, message: str, max_bad_samples: int
) -> None:
    """Count a bad sample; raise ``DataError(message)`` once the count exceeds the limit."""
    report.add(problem, example)
    if report.bad_samples > max_bad_samples:
        raise DataError(
            f"{message} (bad samples so far: {report.bad_samples}; max_bad_samples="
            f"{max_bad_samples} allows skipping that many)"
        )


def validate_images(
    images: Iterable[RawImage],
    category_to_label: Mapping[Any, int],
    *,
    source: str,
    policy: str = "drop",
    max_bad_samples: int = 0,
    check_files: bool = True,
    report: ValidationReport | None = None,
) -> tuple[list[ImageRecord], ValidationReport]:
    """Validate raw images and annotations; return kept records and the report.

    ``category_to_label`` maps file category ids (or VOC names) to labels 1..C. Raises
    ``DataError`` under ``policy="strict"`` for box problems, and for bad samples beyond
    ``max_bad_samples``. The report is logged once per process (warning when problems were found).
    """
    if policy not in ("drop", "strict"):
        raise DataError(f"{source}: policy must be 'drop' or 'strict', got {policy!r}")
    report = report or ValidationReport(source)
    seen_images: set[int] = set()
    seen_anns: set[Any] = set()
    records = []
    for img in images:
        where = f"{img.name} (image id {img.image_id})"
        if img.image_id in seen_images:
            msg = f"{source}: duplicate image id {img.image_id} ({img.name})"
            bad_sample(report, "duplicate_image_id", where, msg, max_bad_samples)
            continue
        seen_images.add(img.image_id)
        if check_files and not img.file.is_file():
            msg = f"{source}: image file not found: {img.file} (image id {img.image_id})"
            bad_sample(report, "missing_file", where, msg, max_bad_samples)
            continue
        kept = []
        for ann in img.annotations:
            ok = _check_annotation(
                img, ann, category_to_label, seen_anns, report, source, max_bad_samples
            )
            if ok:
                kept.append(ann)
        records.append(_to_record(img, kept, category_to_label))
    report.num_images = len(records)
    report.num_annotations = sum(len(r.labels) for r in records)
    dropped = {p: report.counts[p] for p in BOX_PROBLEMS if p in report.counts}
    if policy == "strict" and dropped:
        raise DataError(f"policy 'strict' refuses annotation problems:\n{report}")
    text = str(report)
    if text not in _LOGGED:  # the same file is read by the checks, training and evaluation
        _LOGGED.add(text)
        (LOG.warning if report.counts else LOG.info)("%s", text)
    return records, report


def _check_annotation(
    img: RawImage,
    ann: RawAnnotation,
    category_to_label: Mapping[Any, int],
    seen_anns: set[Any],
    report: ValidationReport,
    source: str,
    max_bad_samples: int,
) -> bool:
    """Check (and clamp/fix in place) one annotation; False when it is dropped."""
    where = f"{img.name} (image id {img.image_id}, annotation {ann.ann_id})"
    if ann.category_id not in category_to_label:
        known = ", ".join(map(repr, list(category_to_label)[:20]))
        msg = (
            f"{source}: {where}: category {ann.category_id!r} is not a known class (known: {known})"
        )
        bad_sample(report, "unknown_category", where, msg, max_bad_samples)
        return False
    if ann.ann_id in seen_anns:
        msg = f"{source}: duplicate annotation id {ann.ann_id} in {img.name}"
        bad_sample(report, "duplicate_annotation_id", where, msg, max_bad_samples)
        return False
    seen_anns.add(ann.ann_id)
    x1, y1, x2, y2 = ann.bbox
    if not all(math.isfinite(v) for v in ann.bbox):
        report.add("nan_box", where)
        return False
    if x2 <= x1 or y2 <= y1:
        report.add("degenerate_box", where)
        return False
    clamped = (
        min(max(x1, 0.0), img.width),
        min(max(y1, 0.0), img.height),
        min(max(x2, 0.0), img.width),
        min(max(y2, 0.0), img.height),
    )
    if clamped != tuple(ann.bbox):
        if clamped[2] <= clamped[0] or clamped[3] <= clamped[1]:
            report.add("outside_image", where)
            return False
        report.add("clamped_box", where)
        ann.bbox = clamped
    return _check_polygons(ann, where, report)


def _check_polygons(ann: RawAnnotation, where: str, report: ValidationReport) -> bool:
    """Drop polygon parts with fewer than 3 points; False when none is left."""
    segm = ann.segmentation
    if not isinstance(segm, list):
        return True  # RLE dict or no segmentation
    parts = [p for p in segm if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0]
    if len(parts) == len(segm) and segm:
        return True
    if not parts:
        report.add("bad_polygon", where)
        return False
    report.add("dropped_polygon_part", where)
    ann.segmentation = parts
    return True


def _to_record(
    img: RawImage, anns: list[RawAnnotation], category_to_label: Mapping[Any, int]
) -> ImageRecord:
    boxes = np.asarray([a.bbox for a in anns], dtype=np.float32).reshape(-1, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    area = np.asarray(
        [
            a.area if a.area is not None and a.area > 0 else float(w * h)
            for a, (w, h) in zip(anns, wh)
        ],
        dtype=np.float32,
    )
    return ImageRecord(
        image_id=img.image_id,
        file=img.file,
        height=img.height,
        width=img.width,
        name=img.name,
        boxes=boxes,
        labels=np.asarray([category_to_label[a.category_id] for a in anns], dtype=np.int64),
        iscrowd=np.asarray([int(bool(a.iscrowd)) for a in anns], dtype=np.int64),
        area=area,
        segmentations=[a.segmentation for a in anns],
    )
