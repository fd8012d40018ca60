"""``image_folder``: an image-classification set in torchvision's ``ImageFolder`` layout.

Layout: ``root/<class>/<image>`` (or ``root/<split>/<class>/<image>`` with ``split``), the
files found by ``torchvision.datasets.folder`` (``find_classes``, ``make_dataset``, its image
extensions). Labels are 1..C in class order: ``classes`` from the spec when given (the
folders must be exactly those), else the sorted folder names, as ``ImageFolder`` (whose
``class_to_idx`` is label - 1).

Sample contract: ``(image, target)`` with image ``tv_tensors.Image`` float32 [3,H,W] in 0..1
and target ``{"label": int64 scalar in 1..C, "image_id": int (1.. in file order),
"orig_size": (H, W)}``; plain tensors pass through every transforms.v2 op unchanged.

Errors (``DataError``, one line naming the folder or file): no class folder, a class folder
without images, spec classes that differ from the folders, and an image that cannot be read.
Every file's header is read when the dataset is built, so a file that is not an image fails
before training; pixels that cannot be decoded fail when the sample is read, unless
``max_bad_samples`` allows skipping that many (the collate drops skipped samples).
"""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from anchorage.core.data.dataset import DECODE_ERRORS, decode_rgb
from anchorage.core.data.validation import ValidationReport, bad_sample
from anchorage.core.errors import DataError
from anchorage.core.registry import DATASETS

LOG = logging.getLogger("anchorage.data")
SAMPLE_FOLDER = Path(__file__).resolve().parent / "sample" / "folder"
"""Two tiny classes (dot, ring; two 32x24 PNGs each) for the kit and the tests."""


def scan_folder(root: Path, classes: tuple[str, ...]) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and ``(path, label 1..C)`` of every image under ``root/<class>/``.

    ``classes``: the expected class folders in label order (empty: the sorted folder names).
    """
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    try:
        found, _ = find_classes(str(root))
    except FileNotFoundError:
        raise DataError(f"{root}: no class folder (expected root/<class>/<image> files)") from None
    names = list(classes) or found
    if classes and sorted(classes) != sorted(found):
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise DataError(
            f"{root}: the class folders ({', '.join(found)}) are not the spec's classes "
            f"({', '.join(classes)}): missing {missing or 'none'}, "
            f"not in the spec {extra or 'none'}"
        )
    index = {name: i for i, name in enumerate(names)}
    samples = make_dataset(str(root), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    counts = dict.fromkeys(range(len(names)), 0)
    for _, i in samples:
        counts[i] += 1
    empty = [names[i] for i, n in counts.items() if n == 0]
    if empty:
        raise DataError(
            f"{root / empty[0]}: class folder without images (extensions "
            f"{', '.join(IMG_EXTENSIONS[:5])}, ...)"
            + (f"; also empty: {', '.join(empty[1:])}" if len(empty) > 1 else "")
        )
    return names, [(path, i + 1) for path, i in samples]


def read_header(path: str) -> tuple[int, int]:
    """``(H, W)`` from an image file's header; DataError naming the file."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    return h, w


@DATASETS.register(
    "image_folder",
    examples=(
        {"root": str(SAMPLE_FOLDER)},
        {"root": str(SAMPLE_FOLDER), "classes": ("ring", "dot")},
    ),
)
class ImageFolderDataset(torch.utils.data.Dataset):
    """Classification images in ``root[/split]/<class>/`` (see the module docstring)."""

    @attrs.frozen(kw_only=True)
    class Config:
        root: str
        split: str | None = None
        classes: tuple[str, ...] = ()
        max_bad_samples: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def __init__(self, cfg: Config) -> None:
        self.root = Path(cfg.root) / cfg.split if cfg.split else Path(cfg.root)
        self.class_names, self.samples = scan_folder(self.root, tuple(cfg.classes))
        for path, _ in self.samples:
            read_header(path)
        self.report = ValidationReport(str(self.root), num_images=len(self.samples))
        self.max_bad_samples = cfg.max_bad_samples
        self.transforms = None
        self.label_to_category = {i + 1: i + 1 for i in range(len(self.class_names))}

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.class_names)

    @property
    def labels(self) -> list[int]:
        """Label (1..C) of every sample, in index order."""
        return [label for _, label in self.samples]

    def set_transforms(self, transforms: object) -> None:
        """Attach the (image, target) transform pipeline applied by ``__getitem__``."""
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, dict] | None:
        path, label = self.samples[index]
        try:
            image = tv_tensors.Image(decode_rgb(path))
        except DECODE_ERRORS as exc:
            message = f"{path}: cannot read image: {exc}"
            bad_sample(self.report, "unreadable_image", path, message, self.max_bad_samples)
            LOG.warning("skipping bad sample %s", message)
            return None
        target = {
            "label": torch.tensor(label, dtype=torch.int64),
            "image_id": index + 1,
            "orig_size": tuple(image.shape[-2:]),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
