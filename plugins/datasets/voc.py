"""``voc`` dataset: Pascal VOC XML annotations with ``ImageSets/Main/{split}.txt`` splits.

Layout under ``root``: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``,
``ImageSets/Main/<split>.txt``. The class list comes from the spec (label i is
``classes[i-1]``); an object of another class is a bad sample (an error unless
``max_bad_samples`` allows skipping it). Boxes keep VOC's pixel coordinates as ``xyxy``
(xmin, ymin, xmax, ymax), so a zero-size box stays degenerate and is caught by validation
(BCCD has two). Objects marked ``difficult`` become ``iscrowd=1``: evaluation ignores them
and matching never assigns them. Image ids are 1.. in split-file order (the same ids
``tools/convert_voc_to_coco.py`` writes).

XML is parsed with ``xml.etree.ElementTree``: adequate for local annotation files one chose
to load (it does not expand external entities; it is not hardened against
billion-laughs style documents, which is acceptable for a local dataset, not for untrusted
uploads).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import attrs
from PIL import Image

from anchorage.core.data import DetectionDataset, RawAnnotation, RawImage, validate_images
from anchorage.core.data.validation import ValidationReport, bad_sample
from anchorage.core.errors import DataError
from anchorage.core.registry import DATASETS

SAMPLE_VOC = Path(__file__).resolve().parent / "sample" / "voc"


def read_split(root: Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt``."""
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    try:
        lines = path.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        found = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise DataError(
            f"{path}: split file not found (splits here: {', '.join(found) or 'none'})"
        ) from None
    return lines


def parse_voc_xml(
    path: Path, image_id: int, image_file: Path, report: ValidationReport, max_bad_samples: int
) -> RawImage | None:
    """One VOC XML file → RawImage (xyxy boxes, ``category_id`` = class name).

    A file that is not valid XML, or lacks boxes' coordinates, is a bad sample: ``DataError``
    naming the file unless ``max_bad_samples`` allows skipping it (then None).
    """
    name = path.stem
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        width = int(float(size.findtext("width", "0"))) if size is not None else 0
        height = int(float(size.findtext("height", "0"))) if size is not None else 0
        anns = []
        for k, obj in enumerate(root.iter("object")):
            box = obj.find("bndbox")
            coords = tuple(float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            anns.append(
                RawAnnotation(
                    ann_id=f"{name}#{k}",
                    category_id=(obj.findtext("name") or "").strip(),
                    bbox=coords,
                    iscrowd=int(obj.findtext("difficult", "0").strip() or 0),
                )
            )
    except FileNotFoundError:
        msg = f"{path}: annotation file not found (image {name})"
        bad_sample(report, "missing_file", name, msg, max_bad_samples)
        return None
    except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        msg = f"{path}: not a valid VOC annotation (image {name}): {type(exc).__name__}: {exc}"
        bad_sample(report, "unreadable_annotation", name, msg, max_bad_samples)
        return None
    if (width <= 0 or height <= 0) and image_file.is_file():
        with Image.open(image_file) as im:  # reads the header only
            width, height = im.size
    return RawImage(image_id, image_file, height, width, image_file.name, anns)


@DATASETS.register(
    "voc",
    examples=({"root": str(SAMPLE_VOC), "split": "test", "classes": ("cell", "dot")},),
)
class VocDataset(DetectionDataset):
    """Pascal VOC XML detection dataset (see the module docstring)."""

    @attrs.frozen(kw_only=True)
    class Config:
        root: str
        split: str = "train"
        classes: tuple[str, ...] = attrs.field(validator=attrs.validators.min_len(1))
        policy: Literal["drop", "strict"] = "drop"
        max_bad_samples: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def __init__(self, cfg: Config) -> None:
        root = Path(cfg.root)
        source = str(root / "ImageSets" / "Main" / f"{cfg.split}.txt")
        report = ValidationReport(source)
        raws = []
        for i, stem in enumerate(read_split(root, cfg.split)):
            raw = parse_voc_xml(
                root / "Annotations" / f"{stem}.xml",
                i + 1,
                root / "JPEGImages" / f"{stem}.jpg",
                report,
                cfg.max_bad_samples,
            )
            if raw is not None:
                raws.append(raw)
        class_to_label = {c: i + 1 for i, c in enumerate(cfg.classes)}
        records, report = validate_images(
            raws,
            class_to_label,
            source=source,
            policy=cfg.policy,
            max_bad_samples=cfg.max_bad_samples,
            report=report,
        )
        super().__init__(
            records,
            cfg.classes,
            report=report,
            label_to_category={i + 1: i + 1 for i in range(len(cfg.classes))},
            max_bad_samples=cfg.max_bad_samples,
        )
        self.root = root
        self.split = cfg.split
