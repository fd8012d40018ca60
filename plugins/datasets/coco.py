"""``coco`` dataset: COCO-format JSON annotations with boxes and instance masks.

Boxes ``[x, y, w, h]`` become ``xyxy`` absolute pixels; masks come from polygons or RLE through
``pycocotools.mask``. Category ids map to contiguous labels 1..C in sorted category-id order;
``label_to_category`` keeps the inverse map for writing COCO-format results. Annotations are
validated at load (``anchorage.core.data.validation``) after a type check of every field read
here (ids, sizes, ``file_name``, ``iscrowd``, ``area``, ``segmentation``). A ``file_name`` must
stay inside ``img_dir`` (no ``..`` out of it, no absolute path elsewhere) unless the dataset
sets ``allow_outside_img_dir: true``; symlinks inside ``img_dir`` are followed as usual.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import attrs

from anchorage.core.data import DetectionDataset, RawAnnotation, RawImage, validate_images
from anchorage.core.data.validation import ImageRecord, ValidationReport, bad_sample
from anchorage.core.errors import DataError
from anchorage.core.registry import DATASETS

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
"""A two-image COCO file and a one-image VOC folder used as registry examples."""


@attrs.frozen
class CocoIndex:
    """What ``load_coco`` read: kept records, class names, label → category id, report."""

    records: list[ImageRecord]
    class_names: list[str]
    label_to_category: dict[int, Any]
    report: ValidationReport


def read_json(path: Path) -> Any:
    """Parse a JSON file; ``DataError`` naming the file (and position) when it is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read annotation file: {exc}") from None


def _require(item: Any, keys: tuple[str, ...], what: str, path: Path) -> None:
    if not isinstance(item, dict) or any(k not in item for k in keys):
        got = sorted(item) if isinstance(item, dict) else type(item).__name__
        ident = item.get("id") if isinstance(item, dict) else None
        raise DataError(f"{path}: {what} (id {ident}) needs keys {list(keys)}, got {got}")


_ID = (int, str)
_NUMBER = (int, float)


def _expect(value: Any, types: tuple[type, ...], expected: str, where: str, key: str) -> Any:
    """``value`` when it is one of ``types`` (bool is never a number); else DataError."""
    if isinstance(value, types) and not isinstance(value, bool):
        return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise DataError(f"{where}: {key}: expected {expected}, got {shown} ({type(value).__name__})")


def _check_image_fields(im: dict, path: Path) -> None:
    ident = _expect(im["id"], _ID, "an integer or string id", f"{path}: image", "id")
    where = f"{path}: image {ident}"
    _expect(im["file_name"], (str,), "a string", where, "file_name")
    for key in ("height", "width"):
        value = _expect(im[key], _NUMBER, "a positive integer", where, key)
        if value != int(value) or value <= 0:
            raise DataError(f"{where}: {key}: expected a positive integer, got {value!r}")


def _check_annotation_fields(ann: dict, path: Path) -> None:
    ident = _expect(ann["id"], _ID, "an integer or string id", f"{path}: annotation", "id")
    where = f"{path}: annotation {ident}"
    _expect(ann["image_id"], _ID, "an integer or string image id", where, "image_id")
    _expect(ann["category_id"], _ID, "an integer or string category id", where, "category_id")
    crowd = ann.get("iscrowd")
    if crowd is not None and (crowd not in (0, 1) or isinstance(crowd, float)):
        _expect(crowd, (), "0 or 1", where, "iscrowd")  # always raises: names the value
    if ann.get("area") is not None:
        _expect(ann["area"], _NUMBER, "a number", where, "area")
    seg = ann.get("segmentation")
    if seg is not None:
        _expect(seg, (list, dict), "a polygon list or an RLE mapping", where, "segmentation")


def _inside(root: Path, file_name: str) -> bool:
    """``root / file_name`` stays inside ``root`` once ``..`` is resolved (lexically, so a
    symlinked folder inside ``root`` is still inside)."""
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(base, file_name))
    return os.path.commonpath([base, full]) == base


def load_coco(
    ann_file: str | Path,
    img_dir: str | Path | None = None,
    *,
    policy: str = "drop",
    max_bad_samples: int = 0,
    allow_outside_img_dir: bool = False,
) -> CocoIndex:
    """Read and validate a COCO JSON file; images are looked up under ``img_dir``.

    ``img_dir`` defaults to the annotation file's folder. A field of the wrong type, or a
    ``file_name`` leading outside ``img_dir`` (unless ``allow_outside_img_dir``), is a
    DataError naming the file, the image or annotation id and the field.
    """
    path = Path(ann_file)
    data = read_json(path)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "categories")
    ):
        raise DataError(f"{path}: a COCO file is a mapping with 'images' and 'categories' lists")
    root = Path(img_dir) if img_dir is not None else path.parent
    for cat in data["categories"]:
        _require(cat, ("id", "name"), "category", path)
        _expect(cat["id"], _ID, "an integer or string id", f"{path}: category", "id")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    dup = [a["id"] for a, b in zip(cats, cats[1:]) if a["id"] == b["id"]]
    if dup:
        raise DataError(f"{path}: duplicate category id {dup[0]} in 'categories'")
    cat_to_label = {c["id"]: i + 1 for i, c in enumerate(cats)}
    report = ValidationReport(str(path))
    raws = [_raw_image(im, root, path, allow_outside_img_dir) for im in data["images"]]
    images: dict[Any, RawImage] = {}
    for raw in raws:  # duplicates first: an annotation may name the id a duplicate hides
        if raw.image_id in images:
            msg = f"{path}: duplicate image id {raw.image_id} ({raw.name})"
            where = f"{raw.name} (image id {raw.image_id})"
            bad_sample(report, "duplicate_image_id", where, msg, max_bad_samples)
            continue
        images[raw.image_id] = raw
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DataError(f"{path}: 'annotations': expected a list, got {type(anns).__name__}")
    for ann in anns:
        _require(ann, ("id", "image_id", "category_id", "bbox"), "annotation", path)
        _check_annotation_fields(ann, path)
        owner = images.get(ann["image_id"])
        if owner is None:
            where = f"annotation {ann['id']}"
            msg = f"{path}: annotation {ann['id']}: no image has id {ann['image_id']}"
            bad_sample(report, "unknown_image", where, msg, max_bad_samples)
            continue
        owner.annotations.append(_raw_annotation(ann, path))
    records, report = validate_images(
        list(images.values()),
        cat_to_label,
        source=str(path),
        policy=policy,
        max_bad_samples=max_bad_samples,
        report=report,
    )
    return CocoIndex(
        records=records,
        class_names=[str(c["name"]) for c in cats],
        label_to_category={label: cid for cid, label in cat_to_label.items()},
        report=report,
    )


def _raw_image(im: Any, root: Path, path: Path, allow_outside: bool) -> RawImage:
    _require(im, ("id", "file_name", "height", "width"), "image", path)
    _check_image_fields(im, path)
    if not allow_outside and not _inside(root, im["file_name"]):
        raise DataError(
            f"{path}: image {im['id']}: file_name {im['file_name']!r} leads outside img_dir "
            f"{root}; refused (set allow_outside_img_dir: true in the dataset to allow it)"
        )
    return RawImage(
        image_id=im["id"],
        file=root / im["file_name"],
        height=int(im["height"]),
        width=int(im["width"]),
        name=str(im["file_name"]),
    )


def _raw_annotation(ann: dict, path: Path) -> RawAnnotation:
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DataError(f"{path}: annotation {ann['id']}: bbox must be [x, y, w, h], got {bbox!r}")
    try:
        x, y, w, h = (float("nan") if v is None else float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"{path}: annotation {ann['id']}: bbox is not numeric: {bbox!r}") from None
    return RawAnnotation(
        ann_id=ann["id"],
        category_id=ann["category_id"],
        bbox=(x, y, x + w, y + h),
        iscrowd=int(ann.get("iscrowd", 0) or 0),
        area=ann.get("area"),
        segmentation=ann.get("segmentation"),
    )


@DATASETS.register(
    "coco",
    examples=({"ann_file": str(SAMPLE_DIR / "coco.json"), "masks": True, "semantic_masks": True},),
)
class CocoDataset(DetectionDataset):
    """COCO JSON detection / instance segmentation dataset (see the module docstring)."""

    @attrs.frozen(kw_only=True)
    class Config:
        ann_file: str
        img_dir: str | None = None  # default: the annotation file's folder
        masks: bool = False
        semantic_masks: bool = False
        policy: Literal["drop", "strict"] = "drop"
        max_bad_samples: int = attrs.field(default=0, validator=attrs.validators.ge(0))
        allow_outside_img_dir: bool = False  # file_name may use ".." or absolute paths

    def __init__(self, cfg: Config) -> None:
        index = load_coco(
            cfg.ann_file,
            cfg.img_dir,
            policy=cfg.policy,
            max_bad_samples=cfg.max_bad_samples,
            allow_outside_img_dir=cfg.allow_outside_img_dir,
        )
        super().__init__(
            index.records,
            index.class_names,
            report=index.report,
            label_to_category=index.label_to_category,
            masks=cfg.masks,
            semantic_masks=cfg.semantic_masks,
            max_bad_samples=cfg.max_bad_samples,
        )
        self.ann_file = cfg.ann_file
