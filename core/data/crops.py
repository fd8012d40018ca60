"""Cropping a detection dataset's boxes into an image-classification set (``ImageFolder``).

``crop_dataset(spec, out_dir)`` reads every split of the spec's ``data`` section (its dataset
without transforms: e.g. BCCD's VOC train/val/test), cuts each ground-truth box out of its
image (enlarged by ``margin`` on every side, clipped to the image) and writes it as
``out_dir/<split>/<class>/<image stem>_<k>.png`` (k: the object's index in the image), the
layout the ``image_folder`` dataset reads. Boxes marked crowd / difficult and boxes whose
shorter side is under ``min_size`` pixels are skipped and counted. The output depends only on
the dataset and the options: file names, pixels and PNG bytes are the same on every run.

``out_dir/summary.json`` records the options and the counts per split and class. A folder that
already holds crops is refused unless ``overwrite`` (which removes only the split folders and
``summary.json``).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomically, write_text_atomically
from ..errors import DataError
from .loader import build_dataset

SUMMARY = "summary.json"


def crop_box(
    image: torch.Tensor, box: Sequence[float], margin: float
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The part of ``image`` [3,H,W] under ``box`` (xyxy pixels) enlarged by ``margin`` × its
    width/height on each side, clipped to the image; and the integer xyxy window used."""
    h, w = image.shape[-2:]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    left, top = max(0, int(round(x1 - mx))), max(0, int(round(y1 - my)))
    right, bottom = min(w, int(round(x2 + mx))), min(h, int(round(y2 + my)))
    return image[:, top:bottom, left:right], (left, top, right, bottom)


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_name(dataset: Any, index: int) -> str:
    records = getattr(dataset, "records", None)
    if records is not None:
        return Path(records[index].name).stem
    return f"{index:06d}"


def _prepare(out: Path, splits: Sequence[str], overwrite: bool) -> None:
    taken = [out / s for s in splits if (out / s).exists()] + (
        [out / SUMMARY] if (out / SUMMARY).exists() else []
    )
    if taken and not overwrite:
        raise DataError(
            f"{out}: already holds crops ({', '.join(p.name for p in taken)}); pass --overwrite "
            "to replace them"
        )
    for path in taken:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def crop_split(
    dataset: Any, folder: Path, *, margin: float, min_size: float, progress: bool = False
) -> dict[str, Any]:
    """Write the crops of one split's ``dataset`` under ``folder/<class>/``; its counts."""
    from tqdm import tqdm

    names = list(dataset.class_names)
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(names, 0)
    skipped = {"crowd": 0, "small": 0}
    for i in tqdm(range(len(dataset)), desc=folder.name, unit="image", disable=not progress):
        sample = dataset[i]
        if sample is None:
            continue
        image, target = sample
        image = image.as_subclass(torch.Tensor)
        boxes = target["boxes"].as_subclass(torch.Tensor).tolist()
        labels = target["labels"].tolist()
        crowd = target.get("iscrowd", torch.zeros(len(labels))).tolist()
        stem = _image_name(dataset, i)
        for k, (box, label, is_crowd) in enumerate(zip(boxes, labels, crowd)):
            if is_crowd:
                skipped["crowd"] += 1
                continue
            if min(box[2] - box[0], box[3] - box[1]) < min_size:
                skipped["small"] += 1
                continue
            crop, _ = crop_box(image, box, margin)
            data = _png(crop)
            name = names[label - 1]
            write_atomically(folder / name / f"{stem}_{k:02d}.png", lambda f, d=data: f.write(d))
            counts[name] += 1
    return {"images": len(dataset), "crops": counts, "skipped": skipped}


def crop_dataset(
    spec: Any,
    out_dir: str | Path,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    margin: float = 0.1,
    min_size: float = 4.0,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Crop every box of ``splits`` of ``spec``'s data into ``out_dir`` (module docstring);
    returns (and writes to ``summary.json``) the options and the counts."""
    if margin < 0 or min_size < 0:
        raise DataError(f"margin and min_size must be >= 0, got {margin}, {min_size}")
    data = spec.get("data")
    present = [s for s in splits if data is not None and getattr(data, s, None) is not None]
    if not present:
        raise DataError(f"{spec.path or 'spec'}: no data split among {', '.join(splits)}")
    out = Path(out_dir)
    _prepare(out, present, overwrite)
    summary: dict[str, Any] = {"margin": margin, "min_size": min_size, "splits": {}}
    for split in present:
        dataset = build_dataset(spec, split, transforms=False)
        if not hasattr(dataset, "class_names"):
            raise DataError(f"data.{split}.dataset has no class_names to name the folders")
        summary["splits"][split] = crop_split(
            dataset, out / split, margin=margin, min_size=min_size, progress=progress
        )
        summary["class_names"] = list(dataset.class_names)
    write_text_atomically(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    """The counts of ``crop_dataset``'s summary as a table: one row per split, a column per
    class, then the skipped boxes."""
    names = summary["class_names"]
    width = max(10, *(len(n) + 1 for n in names))
    head = f"{'split':<8}{'images':>8}" + "".join(f"{n:>{width}}" for n in names)
    lines = [head + f"{'skipped (crowd, small)':>24}"]
    for split, row in summary["splits"].items():
        skipped = row["skipped"]
        cells = "".join(f"{row['crops'][n]:>{width}}" for n in names)
        lines.append(
            f"{split:<8}{row['images']:>8}{cells}{skipped['crowd']:>16}, {skipped['small']}"
        )
    return "\n".join(lines)
